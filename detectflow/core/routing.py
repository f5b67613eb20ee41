"""Which provider configs serve a camera, and in what order a frame tries them.

Assignments live in each provider config's ``options`` (no schema change):

``options["cameras"]``: list of camera ids
    The config serves exactly these cameras, whether or not it is the active
    one. A camera named by several configs gets all of them, ordered by
    ``priority``. An empty list parks a config: it serves no camera.
``options["priority"]``: integer 0-1000, default 100
    Lower goes first. Ties: the active config first, then the oldest.
``options["breaker_failures"]``: integer 1-1000, default 5
    Consecutive transient failures that open this provider's circuit breaker.
``options["breaker_cooldown_seconds"]``: number 0-86400, default 30
    How long an open breaker refuses calls before it lets one probe through.

A camera that no config names is served by the *active* config (if it has no
``cameras`` of its own), followed by every other config without ``cameras``
in priority order: keeping a second config beside the active one is all it
takes to get failover. With no such active config those cameras have no
provider, and their frames wait (the SQL source does not claim) or fail with
the reason "no active provider configured".

A camera with one provider behaves as before (retries, no breaker); with two
or more, each provider gets a breaker (:mod:`detectflow.core.breaker`) and a
frame goes to the first provider whose breaker lets it through, then the
next on a transient failure.

Pure functions over configs; the breakers' states come in as a predicate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from detectflow.core.breaker import (
    DEFAULT_COOLDOWN_SECONDS,
    DEFAULT_FAILURE_THRESHOLD,
    BreakerPolicy,
)
from detectflow.core.frames import CAMERA_ID_PATTERN
from detectflow.core.models import ProviderConfig

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_ASSIGNED_CAMERAS",
    "Assignment",
    "RouteTable",
    "assignment_errors",
    "parse_assignment",
    "route",
]

DEFAULT_PRIORITY = 100
MAX_PRIORITY = 1000
MAX_ASSIGNED_CAMERAS = 1000
MAX_COOLDOWN_SECONDS = 86400.0
MAX_BREAKER_FAILURES = 1000


@dataclass(frozen=True, slots=True)
class Assignment:
    """A config's routing options, validated."""

    cameras: frozenset[str] | None = None
    """None: serves unassigned cameras; a set (maybe empty): exactly these."""
    priority: int = DEFAULT_PRIORITY
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def assignment_errors(options: Mapping[str, Any]) -> list[str]:
    """What is wrong with the routing options in ``options`` (empty when fine)."""
    errors: list[str] = []
    cameras = options.get("cameras")
    if "cameras" in options:
        if not isinstance(cameras, list):
            errors.append("options.cameras must be a list of camera ids")
        elif len(cameras) > MAX_ASSIGNED_CAMERAS:
            errors.append(f"options.cameras may name at most {MAX_ASSIGNED_CAMERAS} cameras")
        else:
            bad = [
                c for c in cameras if not isinstance(c, str) or not CAMERA_ID_PATTERN.fullmatch(c)
            ]
            if bad:
                errors.append(
                    "options.cameras entries must be camera ids (1-128 of [A-Za-z0-9_.:-]); "
                    f"got {bad[0]!r}"
                )
            elif len(set(cameras)) != len(cameras):
                errors.append("options.cameras must not repeat a camera id")
    if "priority" in options:
        priority = options["priority"]
        if not _is_int(priority) or not 0 <= priority <= MAX_PRIORITY:
            errors.append(f"options.priority must be an integer from 0 to {MAX_PRIORITY}")
    if "breaker_failures" in options:
        failures = options["breaker_failures"]
        if not _is_int(failures) or not 1 <= failures <= MAX_BREAKER_FAILURES:
            errors.append(
                f"options.breaker_failures must be an integer from 1 to {MAX_BREAKER_FAILURES}"
            )
    if "breaker_cooldown_seconds" in options:
        cooldown = options["breaker_cooldown_seconds"]
        if (
            not isinstance(cooldown, int | float)
            or isinstance(cooldown, bool)
            or not math.isfinite(cooldown)
            or not 0.0 <= cooldown <= MAX_COOLDOWN_SECONDS
        ):
            errors.append(
                "options.breaker_cooldown_seconds must be a number from 0 to "
                f"{MAX_COOLDOWN_SECONDS:g}"
            )
    return errors


def parse_assignment(options: Mapping[str, Any]) -> Assignment:
    """The routing options of a config; ValueError naming every bad one."""
    errors = assignment_errors(options)
    if errors:
        raise ValueError("; ".join(errors))
    cameras = options.get("cameras")
    return Assignment(
        cameras=None if cameras is None else frozenset(cameras),
        priority=options.get("priority", DEFAULT_PRIORITY),
        breaker=BreakerPolicy(
            failure_threshold=options.get("breaker_failures", DEFAULT_FAILURE_THRESHOLD),
            cooldown_seconds=float(
                options.get("breaker_cooldown_seconds", DEFAULT_COOLDOWN_SECONDS)
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Every camera's ordered provider group, built once per config refresh."""

    assigned: Mapping[str, tuple[ProviderConfig, ...]]
    default: tuple[ProviderConfig, ...]
    assignments: Mapping[str, Assignment]
    invalid: tuple[tuple[ProviderConfig, str], ...] = ()
    """Configs left out because their options are invalid, with the reason."""

    @classmethod
    def build(cls, configs: Iterable[ProviderConfig]) -> RouteTable:
        valid: list[tuple[ProviderConfig, Assignment]] = []
        invalid: list[tuple[ProviderConfig, str]] = []
        for config in configs:
            try:
                valid.append((config, parse_assignment(config.options)))
            except ValueError as exc:
                invalid.append((config, str(exc)))

        def order(item: tuple[ProviderConfig, Assignment]) -> tuple[int, bool, float, str]:
            config, assignment = item
            return (
                assignment.priority,
                not config.is_active,
                config.created_at.timestamp(),
                config.id,
            )

        valid.sort(key=order)
        by_camera: dict[str, list[ProviderConfig]] = {}
        for config, assignment in valid:
            for camera in assignment.cameras or ():
                by_camera.setdefault(camera, []).append(config)
        unassigned = [c for c, a in valid if a.cameras is None]
        leaders = [c for c in unassigned if c.is_active]
        default: tuple[ProviderConfig, ...] = ()
        if leaders:
            # Several active configs cannot be stored, but if read mid-change the newest leads.
            leader = max(leaders, key=lambda c: c.updated_at)
            default = (leader, *(c for c in unassigned if c is not leader))
        return cls(
            assigned={camera: tuple(group) for camera, group in by_camera.items()},
            default=default,
            assignments={c.id: a for c, a in valid},
            invalid=tuple(invalid),
        )

    @classmethod
    def single(cls, config: ProviderConfig | None) -> RouteTable:
        """One config for every camera, whatever its options and ``is_active`` say
        (an engine given one provider lookup, as before assignments existed)."""
        if config is None:
            return cls(assigned={}, default=(), assignments={})
        try:
            assignment = parse_assignment(config.options)
        except ValueError:
            assignment = Assignment()
        return cls(assigned={}, default=(config,), assignments={config.id: assignment})

    def for_camera(self, camera_id: str) -> tuple[ProviderConfig, ...]:
        """The camera's providers, best first; empty when none serves it."""
        return self.assigned.get(camera_id, self.default)

    @property
    def serves_any(self) -> bool:
        """Does any camera have a provider? (The SQL source claims only then.)"""
        return bool(self.default) or any(self.assigned.values())

    def policy(self, provider_id: str) -> BreakerPolicy:
        assignment = self.assignments.get(provider_id)
        return assignment.breaker if assignment else BreakerPolicy()


def route(
    group: Sequence[ProviderConfig], routable: Callable[[str], bool]
) -> tuple[ProviderConfig, ...]:
    """The providers a frame tries, in order: the group's order, minus those whose
    breaker refuses calls now (open and cooling down, or probing already).

    A closed breaker is always routable, so a frame never goes to an open one
    while a closed one exists that it would not also reach first.
    """
    return tuple(config for config in group if routable(config.id))
