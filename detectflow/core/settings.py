"""Settings from ``DETECTFLOW_*`` environment variables.

With nothing set, everything runs embedded: a SQLite file and the in-process
cache and bus under ``./.detectflow``. Reading is a pure function of the
mapping it is given, so tests pass a dict instead of touching ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["Settings", "SettingsError"]

ENV_PREFIX = "DETECTFLOW_"
AUTH_MODES = ("reads-open", "required")


class SettingsError(ValueError):
    """An environment variable has a value of the wrong kind."""


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path(".detectflow")
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "detectflow:"
    """Namespaces every Redis key and channel, so deployments can share one Redis."""
    mqtt_url: str | None = None
    secret_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_frame_bytes: int = 10 * 1024 * 1024
    max_in_flight: int = 32
    retry_base_seconds: float = 0.2
    retry_max_seconds: float = 10.0
    batch_size: int = 256
    poll_interval_seconds: float = 0.05
    disable_plugin_autoload: bool = False
    blocked_plugins: tuple[str, ...] = field(default_factory=tuple)
    latest_frame_wins: bool = False
    """Backpressure policy: past ``frame_backlog`` frames waiting for one
    camera, its oldest waiting frames are skipped (recorded, never dropped)."""
    frame_backlog: int = 4
    recovery_dir: Path | None = None
    """Bytewax recovery store: a restarted flow resumes its frames in flight."""
    snapshot_interval_seconds: float = 10.0
    queue_lease_seconds: float = 30.0
    """A claimed queue row stays its holder's this long unless renewed: a crashed
    run's frames go back to pending at most this long after it died."""
    queue_max_deliveries: int = 5
    """A queue frame handed out more often than this (it kills the worker that
    takes it) is failed with the reason instead of being detected again."""
    store_retry_seconds: float = 300.0
    """How long the sinks retry a lost database connection before the flow stops."""
    auth_mode: str = "reads-open"
    allow_link_local_provider_urls: bool = False
    """API keys: "reads-open" (GET and the WebSocket need no key; writes and
    provider config do) or "required" (every /api/v1 route but health needs one)."""
    deepstack_api: bool = False
    """Serve the DeepStack / CodeProject.AI detection API at the root
    (``POST /v1/vision/detection``), for NVRs that speak only that."""
    deepstack_port: int | None = None
    """A second port serving the same app (DeepStack's usual is 5000), since
    NVRs expect the detection API at the root of a port of its own."""
    deepstack_store: bool = True
    """Record what the DeepStack API detects; off, it only detects (as ``?store=0``)."""
    publish_mqtt_url: str | None = None
    """``mqtt://host:1883/<prefix>``: publish object events and counts in Frigate's
    topic layout under ``<prefix>`` (default ``detectflow``); see docs/mqtt.md."""
    publish_mqtt_discovery: bool = False
    """Also publish Home Assistant discovery configs for each camera/label count."""
    publish_queue_size: int = 10_000
    """Events each publisher holds for its worker; past it new ones are dropped and
    counted, so a slow broker or receiver never slows the flow."""
    webhooks: bool = True
    """Deliver events to the subscriptions of ``/api/v1/webhooks`` from the flow."""
    webhook_retry_seconds: tuple[float, ...] = (15.0, 45.0, 120.0, 420.0)
    """Waits between a webhook's tries: one try more than waits (5 over 10 minutes)."""
    webhook_timeout_seconds: float = 10.0
    webhook_refresh_seconds: float = 5.0
    """How soon a running flow sees a subscription created, changed or removed."""

    def __post_init__(self) -> None:
        if self.auth_mode not in AUTH_MODES:
            raise SettingsError(
                f"{ENV_PREFIX}AUTH_MODE: must be one of {', '.join(AUTH_MODES)}, "
                f"got {self.auth_mode!r}"
            )
        if any(not seconds >= 0 for seconds in self.webhook_retry_seconds):
            raise SettingsError(
                f"{ENV_PREFIX}WEBHOOK_RETRY_SECONDS: waits must be >= 0 seconds, "
                f"got {self.webhook_retry_seconds!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                values[f.name] = _convert(f.type, raw)
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}{f.name.upper()}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def sql_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'detectflow.db').resolve()}"

    @property
    def embedded(self) -> bool:
        return self.database_url is None and self.redis_url is None

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _convert(annotation: object, raw: str) -> Any:
    kind = str(annotation)
    if "Path" in kind:
        return Path(raw)
    if kind == "bool":
        return _bool(raw)
    if kind == "int":
        return int(raw)
    if kind == "int | None":
        return int(raw) if raw.strip() else None
    if kind == "float":
        return float(raw)
    if "tuple[float" in kind:
        return tuple(float(part) for part in _list(raw))
    if "tuple" in kind:
        return _list(raw)
    return raw or None if "None" in kind else raw
