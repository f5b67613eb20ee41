"""Retention: the guide's daily cleanup jobs, as one statement per table.

Queue rows are deleted only once finished (completed, failed, skipped), so a
cleanup never takes a frame away from a worker.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete

from detectflow.core.models import QueueStatus
from detectflow.store.tables import detection_event_logs as events
from detectflow.store.tables import detection_processing_queue as queue
from detectflow.store.tables import detections

__all__ = ["FINISHED", "delete_before"]

FINISHED = (QueueStatus.COMPLETED.value, QueueStatus.FAILED.value, QueueStatus.SKIPPED.value)


def delete_before(conn: Connection, cutoff: datetime) -> dict[str, int]:
    """Delete rows created before ``cutoff``; returns how many per table."""
    return {
        "detections": conn.execute(
            delete(detections).where(detections.c.created_at < cutoff)
        ).rowcount,
        "events": conn.execute(delete(events).where(events.c.created_at < cutoff)).rowcount,
        "queue": conn.execute(
            delete(queue).where(queue.c.status.in_(FINISHED)).where(queue.c.updated_at < cutoff)
        ).rowcount,
    }
