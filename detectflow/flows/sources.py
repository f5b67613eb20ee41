"""The SQL processing-queue source (``--source sql``).

Each Bytewax worker claims batches of pending rows with
:meth:`~detectflow.store.Database.claim_rows` (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so workers and processes never claim the same row), turns them
into frames, and hands them on. A row whose bytes or camera id are invalid
becomes a failed result with the reason right here and goes straight to the
sinks. The reader claims no more than the detect engine has room for
(:meth:`~detectflow.flows.engine.DetectEngine.acquire`), and nothing while
no provider is active: rows then stay ``pending`` rather than fail.

Rows left in ``processing`` by a crashed run are put back to ``pending`` at
start (older than ``stale_after``, default 5 minutes, so a live worker's
rows in another process are not touched).

The source is registered through the plugin hook, as a vendor's would be.
URL options: ``sql://?batch_size=64&stale_after=300``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, FrameResult
from detectflow.core.settings import Settings
from detectflow.flows.steps import QueuedFrame, queue_item_to_frame

if TYPE_CHECKING:
    from detectflow.flows.engine import DetectEngine

__all__ = [
    "QueueStore",
    "SourceURLError",
    "SqlQueueReader",
    "SqlSourceOptions",
    "detectflow_frame_sources",
    "parse_sql_source_url",
    "sql_source_factory",
]

log = logging.getLogger(__name__)


class SourceURLError(ValueError):
    """A ``--source`` URL that cannot be used; the message says why."""


class QueueStore(Protocol):
    """The part of :class:`detectflow.store.Database` the source needs."""

    def claim_rows(self, limit: int) -> Sequence[QueuedFrame]: ...

    def release_stale(self, older_than: timedelta) -> int: ...


_LIMITS = {"batch_size": (1, 100_000), "stale_after": (0, 365 * 86_400)}


@dataclass(frozen=True, slots=True)
class SqlSourceOptions:
    batch_size: int
    stale_after: timedelta


def parse_sql_source_url(url: str, settings: Settings) -> SqlSourceOptions:
    """``sql`` or ``sql://?batch_size=N&stale_after=SECONDS``."""
    parts = urlsplit(url if "://" in url or ":" in url else f"{url}:")
    if parts.scheme != "sql":
        raise SourceURLError(f"not an sql source URL: {url!r}")
    if parts.netloc or parts.path.strip("/"):
        raise SourceURLError(f"the sql source takes no host or path: {url!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"batch_size", "stale_after"})
    if unknown:
        raise SourceURLError(f"unknown sql source option(s): {', '.join(unknown)}")

    def number(name: str, default: float, kind: Callable[[str], float]) -> float:
        values = query.get(name)
        if not values:
            return default
        try:
            value = kind(values[-1])
        except ValueError:
            raise SourceURLError(
                f"sql source option {name} is not a number: {values[-1]!r}"
            ) from None
        low, high = _LIMITS[name]
        if not math.isfinite(value) or not low <= value <= high:
            raise SourceURLError(f"sql source option {name} is out of range: {values[-1]!r}")
        return value

    return SqlSourceOptions(
        batch_size=int(number("batch_size", settings.batch_size, int)),
        stale_after=timedelta(seconds=number("stale_after", 300.0, float)),
    )


class SqlQueueReader:
    """One worker's share of the queue; never blocks the worker.

    ``next_batch`` returns what is ready now (possibly nothing) and
    ``next_awake`` says when to ask again: right away while rows keep
    coming, after the engine's wake interval when it is full, after
    ``poll_interval_seconds`` when the queue is empty. In finite mode
    (``until_empty``) it ends once nothing is pending and every frame it
    handed on has come back from the engine, because Bytewax stops a flow
    as soon as its inputs end.
    """

    def __init__(
        self,
        store: QueueStore,
        engine: DetectEngine,
        settings: Settings,
        *,
        options: SqlSourceOptions,
        worker_index: int = 0,
        until_empty: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.settings = settings
        self.options = options
        self.worker_index = worker_index
        self.until_empty = until_empty
        self.stop = stop
        self._started = False
        self._draining = False
        self._awake: datetime | None = None

    def next_batch(self) -> list[Frame | FrameResult]:
        if not self._started:
            self._start()
        if self._draining or (self.stop is not None and self.stop.is_set()):
            return self._drain()
        if not self.engine.has_provider:
            if self.until_empty:
                log.warning("no active provider configured: stopping; pending frames stay queued")
                self._draining = True
                return self._drain()
            self._sleep(self.settings.poll_interval_seconds)
            return []
        return self._claim()

    def next_awake(self) -> datetime | None:
        return self._awake

    def close(self) -> None:
        """Nothing to release: the database and engine belong to the flow."""

    def _start(self) -> None:
        self._started = True
        if self.worker_index == 0:
            released = self.store.release_stale(self.options.stale_after)
            if released:
                log.warning("put %d stale processing row(s) back to pending", released)

    def _claim(self) -> list[Frame | FrameResult]:
        batch = self._take()
        if batch is not None:
            return batch
        if self.until_empty:
            self._draining = True
            return self._drain()
        self._sleep(self.settings.poll_interval_seconds)
        return []

    def _take(self) -> list[Frame | FrameResult] | None:
        """Claim what the engine has room for; None when nothing is pending."""
        # Claim at least half a batch (of what the engine can queue beyond its
        # calls): what it still holds keeps the provider busy meanwhile, and
        # bigger batches cost less per frame in every step after the claim
        # (bench/flow_throughput.py: claims of 16-64 rows ran ~4,300 frames/s,
        # of 128-256 rows ~5,100-5,900).
        queue_room = self.engine.capacity - self.engine.max_in_flight
        minimum = max(1, min(self.options.batch_size, queue_room) // 2)
        granted = self.engine.acquire(self.options.batch_size, minimum)
        if granted == 0:
            self._sleep(self.engine.wake_interval)
            return []
        try:
            items = self.store.claim_rows(granted)
        except Exception:
            self.engine.release(granted)
            log.exception("claiming queue rows failed; retrying")
            self._sleep(max(1.0, self.settings.poll_interval_seconds))
            return []
        self.engine.release(granted - len(items))
        if not items:
            return None
        max_bytes = self.settings.max_frame_bytes
        batch = [queue_item_to_frame(item, max_bytes=max_bytes) for item in items]
        invalid = sum(isinstance(item, FrameResult) for item in batch)
        if invalid:
            self.engine.release(invalid)
        # A full batch means more may be waiting: ask again at once.
        self._awake = None if len(items) == granted else self._soon(self.engine.wake_interval)
        return batch

    def _drain(self) -> list[Frame | FrameResult]:
        """Wait for frames already handed on to come back, then end."""
        if self.engine.outstanding > 0:
            self._sleep(self.engine.wake_interval)
            return []
        stopping = self.stop is not None and self.stop.is_set()
        if self.until_empty and not stopping and self.engine.has_provider:
            # Rows may have arrived while draining: take them before ending.
            batch = self._take()
            if batch is not None:
                self._draining = not batch
                return batch
        raise StopIteration

    def _sleep(self, seconds: float) -> None:
        self._awake = self._soon(seconds)

    @staticmethod
    def _soon(seconds: float) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=seconds)


def sql_source_factory(
    url: str,
    settings: Settings,
    *,
    database: QueueStore,
    engine: DetectEngine,
    until_empty: bool = False,
    stop: threading.Event | None = None,
) -> Any:
    """Build the Bytewax source for ``url`` (``sql`` or ``sql://?...``)."""
    from detectflow.flows.dataflow import ReaderSource

    options = parse_sql_source_url(url, settings)

    def build(worker_index: int, worker_count: int) -> SqlQueueReader:
        return SqlQueueReader(
            database,
            engine,
            settings,
            options=options,
            worker_index=worker_index,
            until_empty=until_empty,
            stop=stop,
        )

    return ReaderSource(build)


@hookimpl
def detectflow_frame_sources() -> dict[str, Callable[..., Any]]:
    return {"sql": sql_source_factory}
