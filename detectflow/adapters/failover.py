"""Failover across a camera's providers: breakers per provider, one adapter over many.

:class:`FailoverAdapter` implements :class:`~detectflow.core.adapter.ProviderAdapter`
over a camera's ordered provider group (see :mod:`detectflow.core.routing`),
so :func:`~detectflow.core.pipeline.run_frame` stays unchanged: one
``detect`` call tries each provider whose breaker lets it through, in
order, and moves to the next on a transient failure. Only when every one of
them failed (or every breaker is open) does it raise a transient error, and
``run_frame``'s retry backoff then gives the whole group another round.

:class:`BreakerBoard` holds one :class:`~detectflow.core.breaker.CircuitBreaker`
per provider id for a whole process (the dataflow's engine, or the server
for inline ``send-frame``): a provider that is down is down for every
camera. It is thread-safe, does no I/O, and queues what changed
(:class:`~detectflow.core.breaker.BreakerChange`, with a
``provider_circuit_opened`` / ``provider_circuit_closed`` event for
transitions) for its owner to record with :meth:`BreakerBoard.take_changes`
(see :class:`detectflow.store.breakers.BreakerRecorder`).

Each provider answers with its own ``confidence_threshold``: the adapter drops
boxes below the threshold of the provider that answered, and its own config
carries the group's lowest threshold so normalization drops nothing more.
The adapters it wraps belong to the caller, who closes them; ``aclose`` here
does nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from detectflow.core.adapter import ProviderAdapter
from detectflow.core.breaker import (
    CIRCUIT_CLOSED,
    CIRCUIT_OPENED,
    BreakerChange,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    Clock,
    Transition,
)
from detectflow.core.errors import PermanentProviderError, ProviderError, TransientProviderError
from detectflow.core.ids import new_id
from detectflow.core.models import (
    DetectionEvent,
    Frame,
    ProviderConfig,
    RawDetection,
    Severity,
    utcnow,
)
from detectflow.core.routing import route

__all__ = ["BreakerBoard", "FailoverAdapter"]


@dataclass(eq=False)
class _Entry:
    breaker: CircuitBreaker
    name: str
    opened_at: datetime | None = None


class BreakerBoard:
    """Every provider's breaker in this process; safe to share between threads."""

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
        source_system: str = "detectflow",
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._source = source_system
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._changes: list[BreakerChange] = []

    # -- what callers ask before and after a call --------------------------

    def routable(self, provider_id: str) -> bool:
        with self._lock:
            entry = self._entries.get(provider_id)
            return entry is None or entry.breaker.routable()

    def allow(self, config: ProviderConfig, policy: BreakerPolicy) -> bool:
        """May a call go to ``config``'s provider now (reserves a half-open probe)?"""
        with self._lock:
            entry = self._entry(config, policy)
            allowed, transition = entry.breaker.allow()
            if transition is not None:
                self._note(config.id, entry, transition, None, "")
            return allowed

    def success(self, config: ProviderConfig, camera_id: str) -> None:
        with self._lock:
            entry = self._entries.get(config.id)
            if entry is None:
                return
            before = entry.breaker.failures
            transition = entry.breaker.record_success()
            if transition is not None or before:
                self._note(config.id, entry, transition, camera_id, "")

    def failure(self, config: ProviderConfig, camera_id: str, error: str) -> None:
        with self._lock:
            entry = self._entries.get(config.id)
            if entry is None:
                return
            before = entry.breaker.failures
            transition = entry.breaker.record_failure()
            if transition is not None or entry.breaker.failures != before:
                self._note(config.id, entry, transition, camera_id, error)

    def release(self, config: ProviderConfig) -> None:
        with self._lock:
            entry = self._entries.get(config.id)
            if entry is not None:
                entry.breaker.release()

    # -- what owners read --------------------------------------------------

    def snapshot(self) -> list[BreakerSnapshot]:
        with self._lock:
            return [self._snapshot(pid, e) for pid, e in sorted(self._entries.items())]

    def get(self, provider_id: str) -> BreakerSnapshot | None:
        with self._lock:
            entry = self._entries.get(provider_id)
            return None if entry is None else self._snapshot(provider_id, entry)

    def take_changes(self) -> list[BreakerChange]:
        """What changed since the last call, oldest first (to record and publish)."""
        with self._lock:
            changes, self._changes = self._changes, []
            return changes

    def forget(self, keep: set[str]) -> None:
        """Drop the breakers of providers that no longer exist."""
        with self._lock:
            for provider_id in set(self._entries) - keep:
                del self._entries[provider_id]

    # -- internals -----------------------------------------------------------

    def _entry(self, config: ProviderConfig, policy: BreakerPolicy) -> _Entry:
        entry = self._entries.get(config.id)
        if entry is None:
            entry = _Entry(CircuitBreaker(policy, clock=self._clock), config.provider_name)
            self._entries[config.id] = entry
        else:
            entry.breaker.policy = policy  # an edited config takes effect at once
            entry.name = config.provider_name
        return entry

    def _snapshot(self, provider_id: str, entry: _Entry) -> BreakerSnapshot:
        breaker = entry.breaker
        opened_at = None if breaker.state is BreakerState.CLOSED else entry.opened_at
        return BreakerSnapshot(provider_id, entry.name, breaker.state, breaker.failures, opened_at)

    def _note(
        self,
        provider_id: str,
        entry: _Entry,
        transition: Transition | None,
        camera_id: str | None,
        error: str,
    ) -> None:
        event = None
        if transition is not None and transition.after is BreakerState.OPEN:
            entry.opened_at = self._wall()
            if transition.before is BreakerState.CLOSED and camera_id is not None:
                event = self._event(
                    CIRCUIT_OPENED,
                    Severity.WARNING,
                    camera_id,
                    f"Provider {entry.name!r} circuit opened after {transition.failures} "
                    f"consecutive transient failure(s) (last: {error}); its frames go to "
                    f"the next provider for {entry.breaker.policy.cooldown_seconds:g} s",
                    "failover",
                )
        elif transition is not None and transition.after is BreakerState.CLOSED:
            entry.opened_at = None
            if camera_id is not None:
                event = self._event(
                    CIRCUIT_CLOSED,
                    Severity.INFO,
                    camera_id,
                    f"Provider {entry.name!r} circuit closed: a probe succeeded; "
                    "frames go to it again",
                    "restored",
                )
        self._changes.append(BreakerChange(self._snapshot(provider_id, entry), event))

    def _event(
        self, event_type: str, severity: Severity, camera_id: str, message: str, action: str
    ) -> DetectionEvent:
        now = self._wall()
        return DetectionEvent(
            id=new_id(),
            camera_id=camera_id,
            event_type=event_type,
            severity=severity,
            message=message,
            action_taken=action,
            source_system=self._source,
            created_at=now,
            updated_at=now,
        )


class FailoverAdapter(ProviderAdapter):
    """One camera's provider group as a single adapter (see the module docstring)."""

    provider_type = "failover"

    def __init__(
        self,
        group: Sequence[tuple[ProviderConfig, ProviderAdapter]],
        board: BreakerBoard,
        policy: Callable[[str], BreakerPolicy],
    ) -> None:
        if not group:
            raise ValueError("a failover group needs at least one provider")
        lowest = min(config.confidence_threshold for config, _ in group)
        super().__init__(replace(group[0][0], confidence_threshold=lowest))
        self._group = list(group)
        self._adapters = {config.id: adapter for config, adapter in group}
        self._board = board
        self._policy = policy

    @property
    def configs(self) -> list[ProviderConfig]:
        return [config for config, _ in self._group]

    async def detect(self, frame: Frame) -> list[RawDetection]:
        camera = frame.camera_id
        failures: list[str] = []
        for config in route(self.configs, self._board.routable):
            if not self._board.allow(config, self._policy(config.id)):
                continue  # another frame took the half-open probe meanwhile
            try:
                raws = await self._adapters[config.id].detect(frame)
            except ProviderError as exc:
                if not exc.transient:
                    self._board.success(config, camera)  # it answered: it is up
                    raise PermanentProviderError(
                        f"{config.provider_name}: {exc.message}", status=exc.status
                    ) from exc
                self._board.failure(config, camera, exc.message)
                failures.append(f"{config.provider_name}: {exc.message}")
                continue
            except BaseException:
                self._board.release(config)
                raise
            self._board.success(config, camera)
            threshold = config.confidence_threshold
            # ``not <`` keeps NaN, so normalization rejects it loudly instead.
            return [r for r in raws if not r.confidence < threshold]
        if failures:
            raise TransientProviderError(
                f"all {len(failures)} provider(s) for camera {camera} failed: "
                + "; ".join(failures)
            )
        names = ", ".join(repr(c.provider_name) for c in self.configs)
        raise TransientProviderError(
            f"every provider for camera {camera} ({names}) has an open circuit breaker"
        )
