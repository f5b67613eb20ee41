"""SKELETON (being implemented by the store helper): the SQL repository API.

Synchronous SQLAlchemy 2 Core on purpose: Bytewax callbacks are synchronous,
and the server calls these methods in a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from detectflow.core.models import (
    Detection,
    DetectionEvent,
    Frame,
    FrameResult,
    ProbeResult,
    ProviderConfig,
    QueueItem,
)

__all__ = ["Database"]


class Database:
    """All SQL access. One instance per process, thread-safe (pooled engine)."""

    def __init__(self, url: str, *, secret_key: str) -> None:
        """``secret_key`` is the Fernet key that encrypts provider api keys at rest."""
        raise NotImplementedError

    @property
    def is_postgres(self) -> bool:
        raise NotImplementedError

    def upgrade(self) -> None:
        """Run Alembic migrations to head (idempotent)."""
        raise NotImplementedError

    def dispose(self) -> None:
        raise NotImplementedError

    def ping(self) -> bool:
        raise NotImplementedError

    # -- processing queue ----------------------------------------------
    def enqueue(self, frame: Frame, *, max_retries: int = 3) -> QueueItem:
        """Insert a pending queue row with id = frame.frame_id (idempotent: existing id kept)."""
        raise NotImplementedError

    def claim(self, limit: int) -> list[QueueItem]:
        """Mark up to ``limit`` pending rows processing and return them: highest priority
        first, then oldest. On PostgreSQL with FOR UPDATE SKIP LOCKED."""
        raise NotImplementedError

    def release_stale(self, older_than: timedelta) -> int:
        """Put rows stuck in processing (a crashed worker) back to pending."""
        raise NotImplementedError

    def queue_stats(self) -> dict[str, int]:
        """{"pending", "processing", "completed", "failed", "skipped", "total"}."""
        raise NotImplementedError

    def get_queue_item(self, item_id: str) -> QueueItem | None:
        raise NotImplementedError

    # -- results --------------------------------------------------------
    def record_results(self, results: Sequence[FrameResult]) -> None:
        """In one transaction: insert detections and events (existing ids are left
        alone, so a replay writes nothing new) and set each frame's queue row to
        completed/failed with detections_count, processing_time_ms, error_message
        and retry_count = attempts - 1."""
        raise NotImplementedError

    def get_detection(self, detection_id: str) -> Detection | None:
        raise NotImplementedError

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
        """Newest first, and the total count matching the filters."""
        raise NotImplementedError

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
        """Newest first, and the total count matching the filters."""
        raise NotImplementedError

    # -- provider configs -----------------------------------------------
    def create_provider(self, config: ProviderConfig) -> ProviderConfig:
        """Insert; if config.is_active, deactivate all others in the same transaction."""
        raise NotImplementedError

    def update_provider(self, provider_id: str, changes: Mapping[str, Any]) -> ProviderConfig:
        """Update the named fields (KeyError if no such provider)."""
        raise NotImplementedError

    def delete_provider(self, provider_id: str) -> bool:
        raise NotImplementedError

    def get_provider(self, provider_id: str) -> ProviderConfig | None:
        raise NotImplementedError

    def active_provider(self) -> ProviderConfig | None:
        raise NotImplementedError

    def list_providers(self) -> list[ProviderConfig]:
        raise NotImplementedError

    def record_provider_test(self, provider_id: str, result: ProbeResult) -> ProviderConfig:
        raise NotImplementedError
