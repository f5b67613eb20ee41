"""The SQL repository: the one API the dataflow, server and CLI use for SQL.

Synchronous SQLAlchemy 2 Core on purpose: Bytewax callbacks are synchronous,
and the server calls these methods in a worker thread. The statements live in
:mod:`~detectflow.store.queue`, :mod:`~detectflow.store.results` and
:mod:`~detectflow.store.providers`; this class owns the engine and the
transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from detectflow.core.camera_sync import SyncPlan
from detectflow.core.cameras import Camera
from detectflow.core.models import (
    Detection,
    DetectionEvent,
    Frame,
    FrameResult,
    ProbeResult,
    ProviderConfig,
    QueueItem,
    utcnow,
)
from detectflow.core.windows import WindowStats
from detectflow.store import cameras, keys, maintenance, providers, queue, rollups, webhooks
from detectflow.store import objects as _objects
from detectflow.store import results as _results
from detectflow.store import stats as _stats
from detectflow.store.crypto import ApiKeyCipher
from detectflow.store.engine import BEGIN_MODE, create_database_engine
from detectflow.store.keys import ApiKey, Scope
from detectflow.store.migrate import upgrade as run_upgrade
from detectflow.store.objects import TrackedObject
from detectflow.store.partitions import DAYS_AHEAD
from detectflow.store.queue import ClaimedRow
from detectflow.store.results import Keyset, Page
from detectflow.store.stats import DetectionStatistics

__all__ = ["UPGRADE_DAYS_AHEAD", "Database"]

UPGRADE_DAYS_AHEAD = 2
"""Day partitions every process makes sure of at start; the maintenance schedule
keeps :data:`~detectflow.store.partitions.DAYS_AHEAD` (a week)."""


def _lease(owner: str, seconds: float, now: datetime) -> queue.Lease:
    return queue.Lease(owner, now + timedelta(seconds=seconds))


class Database:
    """All SQL access. One instance per process, thread-safe (pooled engine)."""

    def __init__(self, url: str, *, secret_key: str) -> None:
        """``secret_key`` is the Fernet key that encrypts provider api keys at rest."""
        self._cipher = ApiKeyCipher(secret_key)
        self._engine = create_database_engine(url)

    @property
    def engine(self) -> Engine:
        """For stores that add their own tables (statistics); prefer the methods here."""
        return self._engine

    @property
    def is_postgres(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def upgrade(self) -> None:
        """Run Alembic migrations to head (idempotent), then make sure the day
        partitions of the next days exist (PostgreSQL)."""
        run_upgrade(self._engine)
        self.ensure_partitions(days_ahead=UPGRADE_DAYS_AHEAD)

    def ensure_partitions(self, *, days_ahead: int = DAYS_AHEAD) -> list[str]:
        """Make the missing day partitions from yesterday to ``days_ahead`` days ahead
        (a no-op on SQLite); returns their names."""
        return maintenance.ensure_partitions(self._engine, utcnow().date(), days_ahead)

    def dispose(self) -> None:
        self._engine.dispose()

    def ping(self) -> bool:
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite ``BEGIN IMMEDIATE`` takes the write lock up
        front, so two writers queue on busy_timeout instead of failing mid-way."""
        with self._engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.execution_options(**{BEGIN_MODE: "IMMEDIATE"})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    # -- processing queue ----------------------------------------------
    def enqueue(self, frame: Frame, *, max_retries: int = 3) -> QueueItem:
        """Insert a pending queue row with id = frame.frame_id (idempotent: existing id kept).

        Raises :class:`~detectflow.store.queue.FrameIdConflictError` when the id is
        already another camera's row."""
        with self._write() as conn:
            return queue.enqueue(conn, frame, max_retries=max_retries, now=utcnow())

    def enqueue_many(
        self, frames: Sequence[Frame], *, max_retries: int = 3
    ) -> list[queue.Queued | queue.FrameIdConflictError]:
        """Queue a batch of frames in one transaction (send-frame's group commit);
        each frame's row, or the conflict that kept it out, in order."""
        with self._write() as conn:
            return queue.enqueue_many(conn, frames, max_retries=max_retries, now=utcnow())

    def claim(
        self, limit: int, *, owner: str = "manual", lease_seconds: float = 30.0
    ) -> list[QueueItem]:
        """Lease up to ``limit`` pending rows to ``owner`` and return them: highest
        priority first, then oldest. On PostgreSQL with FOR UPDATE SKIP LOCKED."""
        now = utcnow()
        with self._claiming() as conn:
            return queue.claim(conn, limit, now=now, lease=_lease(owner, lease_seconds, now))

    def claim_rows(
        self, limit: int, *, owner: str, lease_seconds: float, suspects: bool = False
    ) -> list[ClaimedRow]:
        """:meth:`claim` for the dataflow: the same rows, as light tuples (no QueueItem).
        ``suspects`` claims among rows that already lost two holders instead."""
        now = utcnow()
        lease = _lease(owner, lease_seconds, now)
        with self._claiming() as conn:
            return queue.claim_rows(conn, limit, now=now, lease=lease, suspects=suspects)

    @contextmanager
    def _claiming(self) -> Iterator[Connection]:
        """A claim is one UPDATE, atomic alone: on PostgreSQL it runs in autocommit,
        which saves the BEGIN and COMMIT round trips; SQLite needs its write lock."""
        if not self.is_postgres:
            with self._write() as conn:
                yield conn
            return
        with self._engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def renew_leases(self, owner: str, lease_seconds: float) -> int:
        """Extend every lease ``owner`` holds to ``lease_seconds`` from now (one statement)."""
        with self._claiming() as conn:
            return queue.renew_leases(conn, _lease(owner, lease_seconds, utcnow()))

    def expire_leases(self, *, unleased_after: timedelta) -> list[queue.ExpiredLeases]:
        """Put rows whose lease expired back to pending, with an event per holder and camera."""
        with self._write() as conn:
            return queue.expire_leases(conn, now=utcnow(), unleased_after=unleased_after)

    def adopt(
        self, ids: Collection[str], *, owner: str, lease_seconds: float, previous: Collection[str]
    ) -> queue.Adoption:
        """Lease the rows of frames resumed from a snapshot (see :func:`queue.adopt`)."""
        now = utcnow()
        with self._write() as conn:
            return queue.adopt(
                conn,
                ids,
                lease=_lease(owner, lease_seconds, now),
                previous_owners=previous,
                now=now,
            )

    def has_suspects(self) -> bool:
        """Does a pending row wait that already lost two holders (claimed alone)?"""
        with self._read() as conn:
            return queue.has_suspects(conn)

    def held_by(self, owner: str) -> int:
        with self._read() as conn:
            return queue.held_by(conn, owner)

    def unfinished(self) -> dict[str, int]:
        """{"pending", "processing"}: queue rows without their outcome yet."""
        with self._read() as conn:
            return queue.unfinished(conn)

    def queue_stats(self) -> dict[str, int]:
        """{"pending", "processing", "completed", "failed", "skipped", "total"}."""
        with self._read() as conn:
            return queue.stats(conn)

    def get_queue_item(self, item_id: str) -> QueueItem | None:
        with self._read() as conn:
            return queue.get_item(conn, item_id)

    # -- results --------------------------------------------------------
    def record_results(self, results: Sequence[FrameResult]) -> None:
        """In one transaction: insert detections and events (existing ids are left
        alone, so a replay writes nothing new) and set each frame's queue row to
        completed/failed with detections_count, processing_time_ms, error_message
        and retry_count = attempts - 1."""
        if not results:
            return
        with self._write() as conn:
            _results.record_results(conn, results, now=utcnow())

    def record_events(self, events: Sequence[DetectionEvent]) -> None:
        """Insert events that belong to no frame (existing ids are left alone)."""
        if not events:
            return
        with self._write() as conn:
            _results.record_events(conn, events)

    def get_detection(self, detection_id: str) -> Detection | None:
        with self._read() as conn:
            return _results.get_detection(conn, detection_id)

    def list_detections(
        self,
        *,
        camera_id: str | None = None,
        detection_type: str | None = None,
        min_confidence: float = 0.0,
        person_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Detection], int]:
        """Newest first, and the exact count matching the filters (see :meth:`page_detections`)."""
        page = self.page_detections(
            camera_id=camera_id,
            detection_type=detection_type,
            min_confidence=min_confidence,
            person_id=person_id,
            since=since,
            limit=limit,
            offset=offset,
            exact_total=True,
        )
        return page.items, page.total

    def page_detections(
        self,
        *,
        camera_id: str | None = None,
        detection_type: str | None = None,
        min_confidence: float = 0.0,
        person_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        after: Keyset | None = None,
        exact_total: bool = False,
    ) -> Page[Detection]:
        """A page newest first, older than ``after`` (a keyset) when given; the total is
        exact when cheap, else PostgreSQL's estimate (``Page.total_is_estimate``)."""
        with self._read() as conn:
            return _results.list_detections(
                conn,
                camera_id=camera_id,
                detection_type=detection_type,
                min_confidence=min_confidence,
                person_id=person_id,
                since=since,
                limit=limit,
                offset=offset,
                after=after,
                exact_total=exact_total,
            )

    def list_events(
        self,
        *,
        camera_id: str | None = None,
        event_type: str | None = None,
        severity: str | None = None,
        person_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[DetectionEvent], int]:
        """Newest first, and the exact count matching the filters (see :meth:`page_events`)."""
        page = self.page_events(
            camera_id=camera_id,
            event_type=event_type,
            severity=severity,
            person_id=person_id,
            limit=limit,
            offset=offset,
            exact_total=True,
        )
        return page.items, page.total

    def page_events(
        self,
        *,
        camera_id: str | None = None,
        event_type: str | None = None,
        severity: str | None = None,
        person_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
        after: Keyset | None = None,
        exact_total: bool = False,
    ) -> Page[DetectionEvent]:
        """:meth:`page_detections` for events."""
        with self._read() as conn:
            return _results.list_events(
                conn,
                camera_id=camera_id,
                event_type=event_type,
                severity=severity,
                person_id=person_id,
                limit=limit,
                offset=offset,
                after=after,
                exact_total=exact_total,
            )

    # -- tracked objects -------------------------------------------------

    def page_objects(
        self,
        *,
        camera_id: str | None = None,
        label: str | None = None,
        zone: str | None = None,
        in_progress: bool | None = None,
        after_time: datetime | None = None,
        before_time: datetime | None = None,
        min_score: float = 0.0,
        limit: int = 100,
        offset: int = 0,
        after: Keyset | None = None,
    ) -> Page[TrackedObject]:
        """Tracked objects newest first by start time (see :mod:`detectflow.store.objects`)."""
        with self._read() as conn:
            return _objects.list_objects(
                conn,
                camera_id=camera_id,
                label=label,
                zone=zone,
                in_progress=in_progress,
                after_time=after_time,
                before_time=before_time,
                min_score=min_score,
                limit=limit,
                offset=offset,
                after=after,
            )

    def get_object(self, object_id: str) -> TrackedObject | None:
        with self._read() as conn:
            return _objects.get_object(conn, object_id)

    def delete_ended_objects(self, older_than: timedelta) -> list[str]:
        """Delete objects that ended more than ``older_than`` ago; their snapshot keys."""
        with self._write() as conn:
            return _objects.delete_ended_before(conn, utcnow() - older_than)

    def cleanup(
        self,
        older_than: timedelta,
        *,
        batch_size: int = maintenance.DEFAULT_BATCH_SIZE,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> maintenance.CleanupReport:
        """The guide's retention job: drop detections, events, window statistics and
        finished queue rows older than ``older_than`` (see :mod:`detectflow.store.maintenance`:
        by day partition on PostgreSQL, in batches elsewhere)."""
        return maintenance.cleanup(
            self._engine, utcnow() - older_than, batch_size=batch_size, on_batch=on_batch
        )

    def roll_up_windows(self) -> list[date]:
        """Sum closed days and hours of window statistics into day and hour rows
        (:mod:`detectflow.store.rollups`); returns the days written."""
        with self._write() as conn:
            return rollups.roll_up(conn, now=utcnow())

    def detection_totals(self, *, camera_id: str | None = None) -> rollups.DetectionTotals:
        """All detections kept and those of the last hour, from the window statistics."""
        with self._read() as conn:
            return rollups.detection_totals(conn, now=utcnow(), camera_id=camera_id)

    # -- provider configs -----------------------------------------------
    def create_provider(self, config: ProviderConfig) -> ProviderConfig:
        """Insert; if config.is_active, deactivate all others in the same transaction."""
        try:
            with self._write() as conn:
                return providers.create(conn, config, self._cipher)
        except IntegrityError:
            raise ValueError(f"a provider with id {config.id!r} already exists") from None

    def update_provider(self, provider_id: str, changes: Mapping[str, Any]) -> ProviderConfig:
        """Update the named fields (KeyError if no such provider; ValueError for a field
        that cannot be changed). ``api_key`` is re-encrypted; ``is_active=True``
        deactivates the others."""
        with self._write() as conn:
            return providers.update_fields(conn, provider_id, changes, self._cipher, now=utcnow())

    def delete_provider(self, provider_id: str) -> bool:
        with self._write() as conn:
            return providers.remove(conn, provider_id)

    def get_provider(self, provider_id: str) -> ProviderConfig | None:
        with self._read() as conn:
            return providers.get(conn, provider_id, self._cipher)

    def active_provider(self) -> ProviderConfig | None:
        with self._read() as conn:
            return providers.active(conn, self._cipher)

    def list_providers(self) -> list[ProviderConfig]:
        with self._read() as conn:
            return providers.list_all(conn, self._cipher)

    def record_provider_test(self, provider_id: str, result: ProbeResult) -> ProviderConfig:
        """Set test_status, last_tested and last_error (KeyError if no such provider)."""
        with self._write() as conn:
            return providers.record_test(conn, provider_id, result, self._cipher, now=utcnow())

    # -- cameras (configuration; see detectflow.store.cameras) ------------
    def create_camera(self, camera: Camera) -> Camera:
        """Insert; :class:`~detectflow.store.cameras.CameraExistsError` if the id is taken."""
        try:
            with self._write() as conn:
                return cameras.create(conn, camera, self._cipher)
        except IntegrityError:
            raise cameras.CameraExistsError(
                f"a camera with id {camera.id!r} already exists"
            ) from None

    def get_camera(self, camera_id: str) -> Camera | None:
        with self._read() as conn:
            return cameras.get(conn, camera_id, self._cipher)

    def page_cameras(
        self, *, limit: int = 100, offset: int = 0, enabled: bool | None = None
    ) -> tuple[list[Camera], int]:
        """A page of cameras by id, and the count matching ``enabled`` (None: all)."""
        with self._read() as conn:
            return cameras.page(conn, self._cipher, limit=limit, offset=offset, enabled=enabled)

    def list_cameras(self) -> list[Camera]:
        """Every camera, by id."""
        with self._read() as conn:
            return cameras.list_all(conn, self._cipher)

    def list_enabled_cameras(self) -> list[Camera]:
        """The cameras a video source reads, by id."""
        with self._read() as conn:
            return cameras.list_all(conn, self._cipher, enabled_only=True)

    def update_camera(self, camera_id: str, changes: Mapping[str, Any]) -> Camera:
        """Change the named configuration fields (KeyError if no such camera,
        ValueError for a field that is not configuration); ``url`` is re-encrypted."""
        with self._write() as conn:
            return cameras.update_fields(conn, camera_id, changes, self._cipher, now=utcnow())

    def set_camera_enabled(self, camera_id: str, enabled: bool) -> Camera:
        """Enable or disable (KeyError if no such camera)."""
        return self.update_camera(camera_id, {"enabled": enabled})

    def set_camera_last_error(self, camera_id: str, error: str | None) -> bool:
        """Why the camera cannot be read (None: it can again); redacted, and not a
        configuration change (``updated_at`` and :meth:`cameras_version` stay)."""
        with self._write() as conn:
            return cameras.set_last_error(conn, camera_id, error)

    def delete_camera(self, camera_id: str) -> bool:
        with self._write() as conn:
            return cameras.remove(conn, camera_id)

    def cameras_version(self) -> str:
        """A token that changes whenever a camera is added, removed or changed."""
        with self._read() as conn:
            return cameras.version(conn)

    def cameras_changed_since(self, version: str | None) -> tuple[str, list[Camera]] | None:
        """None while :meth:`cameras_version` is still ``version``; else the new
        version and the enabled cameras, read in one transaction. A reader polls
        this every few seconds (None to start)."""
        with self._read() as conn, conn.begin():
            now = cameras.version(conn)
            if now == version:
                return None
            return now, cameras.list_all(conn, self._cipher, enabled_only=True)

    def sync_cameras(self, plan: SyncPlan) -> None:
        """Apply an import's plan in one transaction: all of it or nothing."""
        with self._write() as conn:
            cameras.apply_plan(conn, plan, self._cipher, now=utcnow())

    # -- api keys (the server's own; see detectflow.store.keys) ----------
    def create_api_key(
        self,
        scope: Scope | str,
        name: str | None = None,
        *,
        replace: bool = False,
        camera_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its plaintext, which is shown this once and never stored.

        ValueError for an unknown scope, a bad name or camera id. ``replace=True``
        revokes the live keys with the same name in the same transaction.
        ``camera_id`` is the camera its clients send for when they name none.
        """
        with self._write() as conn:
            return keys.create(
                conn, scope, name, now=utcnow(), replace=replace, camera_id=camera_id
            )

    def list_api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self._read() as conn:
            return keys.list_all(conn)

    def get_api_key(self, key_id: str) -> ApiKey | None:
        with self._read() as conn:
            return keys.get(conn, key_id)

    def revoke_api_key(self, key_id: str) -> ApiKey | None:
        """Revoke now (idempotent); None if there is no such key."""
        with self._write() as conn:
            return keys.revoke(conn, key_id, now=utcnow())

    def verify_api_key(self, key: str) -> ApiKey | None:
        """The live key that ``key`` is, or None (malformed, unknown, revoked)."""
        with self._read() as conn:
            return keys.verify(conn, key)

    # -- window statistics (tallied by record_results; see detectflow.store.stats) --
    def list_window_stats(
        self,
        *,
        camera_id: str | None = None,
        detection_type: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[tuple[str, WindowStats]], int]:
        """(kind, window) pairs, newest window first, and the total matching the filters."""
        with self._read() as conn:
            return _stats.list_windows(
                conn,
                camera_id=camera_id,
                detection_type=detection_type,
                kind=kind,
                since=since,
                limit=limit,
                offset=offset,
                now=utcnow(),
            )

    def detection_statistics(
        self, camera_id: str | None = None, *, now: datetime | None = None
    ) -> DetectionStatistics:
        """The guide's statistics for one camera or all, as of ``now`` (default: now)."""
        with self._read() as conn:
            return _stats.detection_statistics(conn, camera_id=camera_id, now=now or utcnow())

    # -- webhooks ----------------------------------------------------------
    def create_webhook(self, webhook: webhooks.Webhook) -> webhooks.Webhook:
        with self._write() as conn:
            return webhooks.create(conn, webhook, self._cipher)

    def update_webhook(self, webhook_id: str, changes: Mapping[str, Any]) -> webhooks.Webhook:
        """Raises KeyError when there is no such webhook."""
        with self._write() as conn:
            return webhooks.update_fields(conn, webhook_id, changes, self._cipher, now=utcnow())

    def delete_webhook(self, webhook_id: str) -> bool:
        with self._write() as conn:
            return webhooks.remove(conn, webhook_id)

    def get_webhook(self, webhook_id: str) -> webhooks.Webhook | None:
        with self._read() as conn:
            return webhooks.get(conn, webhook_id, self._cipher)

    def list_webhooks(self) -> list[webhooks.Webhook]:
        with self._read() as conn:
            return webhooks.list_all(conn, self._cipher)

    def save_webhook_deliveries(self, records: Sequence[webhooks.Delivery]) -> int:
        with self._write() as conn:
            return webhooks.save_deliveries(conn, records)

    def list_webhook_deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[webhooks.Delivery], int]:
        with self._read() as conn:
            return webhooks.list_deliveries(
                conn, webhook_id, status=status, limit=limit, offset=offset
            )
