"""The SQL processing-queue source (``--source sql``).

Each Bytewax worker claims batches of pending rows (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so workers and processes never claim the same row),
turns them into frames, and hands them on. A row whose bytes or camera id
are invalid becomes a failed result with the reason right here and goes
straight to the sinks. The reader is a
:class:`~detectflow.flows.source_common.SourceReader`: it claims no more
than the detect engine has room for, and nothing while no provider is
active (rows then stay ``pending`` rather than fail).

Claims are leases (:mod:`detectflow.store.queue`). One :class:`QueueLeases`
per flow run names the run (host, pid and a random part), renews every
lease the run holds with one statement every quarter lease, and puts rows
whose lease expired, whoever held them, back to pending every tenth of a
lease. So the frames of a crashed run are picked up within
``lease_seconds`` by any running flow, restarted or not. A frame delivered
more than ``max_deliveries`` times (it kills the worker that takes it) is
failed with the reason instead of detected again; a row that already lost
two holders is claimed alone, with nothing else of this process in flight,
so a poison frame cannot take its neighbours down with it once more.

Frames resumed from a recovery snapshot are checked against their rows
(:meth:`QueueLeases.resume`): a row already completed, failed or skipped is
not detected again, and the others are leased to this run first.

``--until-empty`` ends only when no row is pending or processing (any
holder's: a crashed run's rows are waited for until their leases expire)
and this run has nothing in flight; if the run has to end with rows
unfinished (no active provider) the flow reports how many and why.

The source is registered through the plugin hook, as a vendor's would be.
URL options: ``sql://?batch_size=256&lease_seconds=30&max_deliveries=5``
(defaults from ``DETECTFLOW_BATCH_SIZE``, ``DETECTFLOW_QUEUE_LEASE_SECONDS``
and ``DETECTFLOW_QUEUE_MAX_DELIVERIES``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, FrameResult, strip_image
from detectflow.core.pipeline import failed_result
from detectflow.core.settings import Settings
from detectflow.flows.source_common import Batch, SourceOptions, SourceReader, SourceURLError
from detectflow.flows.steps import QueuedFrame, queue_item_to_frame, unvalidated_frame
from detectflow.store.queue import LEASE_ATTR, Adoption, ExpiredLeases

if TYPE_CHECKING:
    from detectflow.flows.dataflow import ReaderSource
    from detectflow.flows.engine import DetectEngine

__all__ = [
    "LEASE_ATTR",
    "QueueLeases",
    "QueueStore",
    "SqlQueueReader",
    "SqlSourceOptions",
    "detectflow_frame_sources",
    "parse_sql_source_url",
    "run_owner",
    "sql_source_factory",
]

log = logging.getLogger(__name__)

"""The frame attribute naming the run that holds the frame's queue row."""

_OPTIONS = {"batch_size", "lease_seconds", "max_deliveries"}


class QueueRow(QueuedFrame, Protocol):
    """A claimed row: the frame, and how often it was handed out (this claim included)."""

    @property
    def deliveries(self) -> int: ...


class QueueStore(Protocol):
    """The part of :class:`detectflow.store.Database` the source needs."""

    def claim_rows(
        self, limit: int, *, owner: str, lease_seconds: float, suspects: bool = False
    ) -> Sequence[QueueRow]: ...

    def renew_leases(self, owner: str, lease_seconds: float) -> int: ...

    def expire_leases(self, *, unleased_after: timedelta) -> Sequence[ExpiredLeases]: ...

    def adopt(
        self, ids: Collection[str], *, owner: str, lease_seconds: float, previous: Collection[str]
    ) -> Adoption: ...

    def has_suspects(self) -> bool: ...

    def held_by(self, owner: str) -> int: ...

    def unfinished(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class SqlSourceOptions:
    batch_size: int
    lease_seconds: float
    max_deliveries: int


def parse_sql_source_url(url: str, settings: Settings) -> SqlSourceOptions:
    """``sql`` or ``sql://?batch_size=N&lease_seconds=S&max_deliveries=N``."""
    parts = urlsplit(url if "://" in url or ":" in url else f"{url}:")
    if parts.scheme != "sql":
        raise SourceURLError(f"not an sql source URL: {url!r}")
    if parts.netloc or parts.path.strip("/"):
        raise SourceURLError(f"the sql source takes no host or path: {url!r}")
    if "stale_after=" in parts.query:
        raise SourceURLError(
            "sql source option stale_after is gone: claims are leases now "
            "(lease_seconds, default DETECTFLOW_QUEUE_LEASE_SECONDS)"
        )
    options = SourceOptions("sql", parts.query, _OPTIONS)
    return SqlSourceOptions(
        batch_size=options.number("batch_size", settings.batch_size, int, 1, 100_000),
        lease_seconds=options.number(
            "lease_seconds", settings.queue_lease_seconds, float, 0.2, 86_400
        ),
        max_deliveries=options.number(
            "max_deliveries", settings.queue_max_deliveries, int, 1, 1_000_000
        ),
    )


def run_owner() -> str:
    """A name for this flow run that no other run shares (at most 64 characters)."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _abandoned(deliveries: int, limit: int) -> str:
    return (
        f"abandoned after {deliveries - 1} deliveries: every worker that took this frame "
        f"stopped before storing a result (max_deliveries={limit})"
    )


class QueueLeases:
    """One flow run's hold on the queue, shared by its workers (thread-safe).

    :meth:`tick` is called by every reader on every wake-up and does the
    timed work at most once per period for the whole process: renew this
    run's leases (every quarter lease), expire lapsed ones (every tenth of a
    lease, at most every 5 s) and look for suspect rows (rows that lost two
    holders) waiting to be claimed alone.
    """

    def __init__(
        self,
        store: QueueStore,
        *,
        lease_seconds: float,
        max_deliveries: int,
        owner: str | None = None,
        max_bytes: int = 10 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.owner = owner or run_owner()
        self._attributes = {LEASE_ATTR: self.owner}  # copied into each frame
        self.lease_seconds = lease_seconds
        self.max_deliveries = max_deliveries
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._renew_every = lease_seconds / 4
        self._sweep_every = min(max(lease_seconds / 10, 0.05), 5.0)
        now = clock()
        self._next_renew = now + self._renew_every
        self._next_sweep = now  # the first wake-up sweeps: a crashed run may have left rows
        self.suspects_waiting = False
        self._suspect_lock = threading.Lock()
        self.expired = 0
        self.abandoned = 0

    def tick(self) -> None:
        """Renew and sweep when due; a database error is logged and tried again later."""
        now = self._clock()
        if now < self._next_renew and now < self._next_sweep:
            return
        with self._lock:
            if now >= self._next_renew:
                self._next_renew = now + self._renew_every
                self._guard("renewing leases", self._renew)
            if now >= self._next_sweep:
                self._next_sweep = now + self._sweep_every
                self._guard("expiring lapsed leases", self._sweep)

    def _guard(self, what: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:
            log.exception("%s failed; trying again later", what)

    def _renew(self) -> None:
        self.store.renew_leases(self.owner, self.lease_seconds)

    def _sweep(self) -> None:
        expired = self.store.expire_leases(unleased_after=timedelta(seconds=self.lease_seconds))
        by_owner: dict[str | None, int] = {}
        for item in expired:
            by_owner[item.owner] = by_owner.get(item.owner, 0) + item.count
        for owner, count in by_owner.items():
            self.expired += count
            log.warning(
                "put %d frame(s) back to pending: the lease of %s expired",
                count,
                owner or "a run from before leases",
            )
        self.suspects_waiting = self.store.has_suspects()

    # -- claiming ---------------------------------------------------------

    def claim(self, limit: int) -> Batch:
        """Up to ``limit`` rows leased to this run, as frames (or failed results)."""
        rows = self.store.claim_rows(limit, owner=self.owner, lease_seconds=self.lease_seconds)
        return [self._item(row) for row in rows]

    def holding(self) -> bool:
        """Does this run hold rows without their outcome stored yet?"""
        return self.store.held_by(self.owner) > 0

    def claim_suspect(self) -> Batch | None:
        """One row that already lost two holders, or None when none waits.

        Only one thread at a time: the caller made sure nothing else of this
        process is in flight, so the suspect is alone if it kills the process.
        """
        if not self._suspect_lock.acquire(blocking=False):
            return []
        try:
            rows = self.store.claim_rows(
                1, owner=self.owner, lease_seconds=self.lease_seconds, suspects=True
            )
        finally:
            self._suspect_lock.release()
        if not rows:
            self.suspects_waiting = False
            return None
        log.info("claimed frame %s alone: it lost %d holder(s)", rows[0].id, rows[0].deliveries - 1)
        return [self._item(row) for row in rows]

    def _item(self, row: QueueRow) -> Frame | FrameResult:
        if row.deliveries > self.max_deliveries:
            self.abandoned += 1
            reason = _abandoned(row.deliveries, self.max_deliveries)
            log.warning("frame %s failed: %s", row.id, reason)
            return failed_result(unvalidated_frame(row, self._attributes), reason)
        return queue_item_to_frame(row, max_bytes=self.max_bytes, attributes=self._attributes)

    # -- resuming from a snapshot -----------------------------------------

    def resume(self, frames: Sequence[Frame]) -> tuple[list[Frame], list[FrameResult]]:
        """Which resumed frames to detect again, and which to fail at once.

        A frame whose row is final (or gone) is dropped: its outcome is
        recorded. One whose row another live run holds is left to it. The
        rest are leased to this run (a delivery each) and resubmitted.
        """
        if not frames:
            return [], []
        previous = {f.attributes[LEASE_ATTR] for f in frames if LEASE_ATTR in f.attributes}
        adoption = self.store.adopt(
            [f.frame_id for f in frames],
            owner=self.owner,
            lease_seconds=self.lease_seconds,
            previous=previous,
        )
        submit: list[Frame] = []
        failed: list[FrameResult] = []
        for frame in frames:
            deliveries = adoption.adopted.get(frame.frame_id)
            if deliveries is None:
                continue
            if deliveries > self.max_deliveries:
                self.abandoned += 1
                reason = _abandoned(deliveries, self.max_deliveries)
                failed.append(strip_image(failed_result(frame, reason)))
                continue
            attributes = {**frame.attributes, LEASE_ATTR: self.owner}
            submit.append(dataclasses.replace(frame, attributes=attributes))
        skipped = len(frames) - len(submit) - len(failed)
        if skipped:
            log.info(
                "resumed %d frame(s) from the snapshot; %d not again (%d already final, "
                "%d held by another run)",
                len(frames),
                skipped,
                len(adoption.final),
                len(adoption.elsewhere),
            )
        return submit, failed


class SqlQueueReader(SourceReader):
    """One worker's share of the queue; never blocks the worker.

    In finite mode (``until_empty``) it ends once no row is pending or
    processing and every frame it handed on has come back from the engine,
    because Bytewax stops a flow as soon as its inputs end.
    """

    source_name = "sql"

    def __init__(
        self,
        leases: QueueLeases,
        engine: DetectEngine,
        settings: Settings,
        *,
        options: SqlSourceOptions,
        until_empty: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(
            engine, settings, batch_size=options.batch_size, until_empty=until_empty, stop=stop
        )
        self.leases = leases
        self.options = options

    def next_batch(self) -> Batch:
        self.leases.tick()
        return super().next_batch()

    def _minimum_grant(self) -> int:
        # Claim at least half a batch (of what the engine can queue beyond its
        # calls): what it still holds keeps the provider busy meanwhile, and
        # bigger batches cost less per frame in every step after the claim
        # (bench/flow_throughput.py: claims of 16-64 rows ran ~4,300 frames/s,
        # of 128-256 rows ~5,100-5,900).
        queue_room = self.engine.capacity - self.engine.max_in_flight
        return max(1, min(self.batch_size, queue_room) // 2)

    def _take(self, granted: int) -> Batch | None:
        if self.leases.suspects_waiting:
            suspect = self._take_suspect(granted)
            if suspect is not None:
                return suspect
        batch = self.leases.claim(granted)
        if batch:
            return batch
        if not self.until_empty:
            return None
        counts = self.store_unfinished()
        if counts["pending"] + counts["processing"] == 0:
            return None
        # Rows pending behind a suspect, or held elsewhere (a crashed run's
        # rows come back when their leases expire): wait for them.
        return []

    def _take_suspect(self, granted: int) -> Batch | None:
        """Claim a suspect row once this run holds nothing: every frame it took is
        back from the engine and its outcome stored, so only the suspect dies with it."""
        if self.engine.outstanding > granted or self.leases.holding():
            return []
        return self.leases.claim_suspect()

    def store_unfinished(self) -> dict[str, int]:
        return self.leases.store.unfinished()


def sql_source_factory(
    url: str,
    settings: Settings,
    *,
    database: QueueStore,
    engine: DetectEngine,
    until_empty: bool = False,
    stop: threading.Event | None = None,
) -> ReaderSource[Frame | FrameResult]:
    """Build the Bytewax source for ``url`` (``sql`` or ``sql://?...``)."""
    from detectflow.flows.dataflow import ReaderSource

    options = parse_sql_source_url(url, settings)
    leases = QueueLeases(
        database,
        lease_seconds=options.lease_seconds,
        max_deliveries=options.max_deliveries,
        max_bytes=settings.max_frame_bytes,
    )
    log.info("sql source: this run holds its queue rows as %s", leases.owner)

    def build(worker_index: int, worker_count: int) -> SqlQueueReader:
        return SqlQueueReader(
            leases, engine, settings, options=options, until_empty=until_empty, stop=stop
        )

    def unfinished() -> str | None:
        counts = database.unfinished()
        left = counts["pending"] + counts["processing"]
        if not left:
            return None
        why = (
            "no active provider configured"
            if not engine.has_provider
            else "the flow ended before they were done"
        )
        return (
            f"{left} queued frame(s) left unfinished ({counts['pending']} pending, "
            f"{counts['processing']} processing): {why}"
        )

    return ReaderSource(build, resume=leases.resume, unfinished=unfinished)


@hookimpl
def detectflow_frame_sources() -> dict[str, Callable[..., ReaderSource[Frame | FrameResult]]]:
    return {"sql": sql_source_factory}
