"""The SQL schema: the guide's four tables, their indexes and the ones our queries need.

This module is the source of truth that ``migrations/versions`` must match;
``tests/store/test_migrations.py`` compares the two on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from detectflow.store.types import UTCDateTime

__all__ = [
    "FRAME_ID_LENGTH",
    "ID_LENGTH",
    "NAMING_CONVENTION",
    "api_keys",
    "cameras",
    "detection_event_logs",
    "detection_person_days",
    "detection_processing_queue",
    "detection_provider_configs",
    "detection_window_stats",
    "detections",
    "metadata",
    "tracked_objects",
    "webhook_deliveries",
    "webhooks",
]

ID_LENGTH = 36
"""Ids we create are uuids (random for configs, UUIDv5 for detections and events)."""

FRAME_ID_LENGTH = 128
"""Frame ids may come from a source (a Redis stream, MQTT, REST), so allow more than a uuid."""

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

_NOW = text("CURRENT_TIMESTAMP")


def _timestamps() -> tuple[Column[datetime], Column[datetime]]:
    return (
        Column("created_at", UTCDateTime(), nullable=False, server_default=_NOW),
        Column("updated_at", UTCDateTime(), nullable=False, server_default=_NOW),
    )


detection_provider_configs = Table(
    "detection_provider_configs",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("provider_name", String(255), nullable=False),
    Column("provider_type", String(64), nullable=False),
    Column("endpoint_url", Text, nullable=False),
    Column("api_key_encrypted", Text, nullable=True),
    Column("timeout_seconds", Float, nullable=False, server_default=text("30")),
    Column("confidence_threshold", Float, nullable=False, server_default=text("0.5")),
    Column("max_retries", Integer, nullable=False, server_default=text("3")),
    Column("max_faces_per_frame", Integer, nullable=False, server_default=text("10")),
    Column("enable_person_detection", Boolean, nullable=False, server_default=text("true")),
    Column("enable_face_detection", Boolean, nullable=False, server_default=text("true")),
    Column("enable_face_encoding", Boolean, nullable=False, server_default=text("true")),
    Column("is_active", Boolean, nullable=False, server_default=text("false")),
    Column("test_status", String(16), nullable=False, server_default=text("'untested'")),
    Column("last_tested", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("options", JSON, nullable=False),
    *_timestamps(),
)

# detections, events and window statistics are partitioned by day on PostgreSQL
# (detectflow.store.partitions). A unique key of a partitioned table must hold
# its partition key, so theirs is (id, created_at): the writer's replays still
# conflict because a row's created_at is a function of its frame, like its id.
# Composite indexes serve "newest first" under each filter (keyset pages walk
# (created_at, id) backwards within one camera, event type or person).
_BY_DAY = "RANGE (created_at)"

detections = Table(
    "detections",
    metadata,
    Column("id", String(ID_LENGTH), nullable=False),
    Column("camera_id", String(128), nullable=False),
    Column("frame_id", String(FRAME_ID_LENGTH), nullable=False),
    Column("detection_type", String(64), nullable=False),
    Column("label", String(128), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("bbox_x", Float, nullable=False),
    Column("bbox_y", Float, nullable=False),
    Column("bbox_width", Float, nullable=False),
    Column("bbox_height", Float, nullable=False),
    Column("person_name", String(255), nullable=True),
    Column("person_id", String(128), nullable=True),
    Column("face_encoding", Text, nullable=True),
    Column("is_processed", Boolean, nullable=False, server_default=text("true")),
    Column("processing_status", String(32), nullable=False, server_default=text("'completed'")),
    Column("frame_number", BigInteger, nullable=True),
    Column("frame_timestamp", UTCDateTime(), nullable=True),
    *_timestamps(),
    Column("track_id", String(ID_LENGTH), nullable=True),  # the tracked object (0007)
    PrimaryKeyConstraint("id", "created_at"),
    Index(None, "camera_id", "created_at"),
    Index(None, "created_at"),
    Index(None, "is_processed"),
    Index(None, "frame_id"),
    Index(None, "person_id", "created_at"),
    postgresql_partition_by=_BY_DAY,
)

detection_event_logs = Table(
    "detection_event_logs",
    metadata,
    Column("id", String(ID_LENGTH), nullable=False),
    Column("detection_id", String(ID_LENGTH), nullable=True),
    Column("camera_id", String(128), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("severity", String(16), nullable=False, server_default=text("'info'")),
    Column("message", Text, nullable=False),
    Column("person_id", String(128), nullable=True),
    Column("person_name", String(255), nullable=True),
    Column("confidence_score", Float, nullable=True),
    Column("action_taken", Text, nullable=True),
    Column("source_system", String(64), nullable=False, server_default=text("'detectflow'")),
    *_timestamps(),
    PrimaryKeyConstraint("id", "created_at"),
    Index(None, "camera_id", "created_at"),
    Index(None, "created_at"),
    Index(None, "event_type", "created_at"),
    Index(None, "person_id", "created_at"),
    Index(None, "severity", "created_at"),
    postgresql_partition_by=_BY_DAY,
)

detection_processing_queue = Table(
    "detection_processing_queue",
    metadata,
    Column("id", String(FRAME_ID_LENGTH), primary_key=True),
    Column("camera_id", String(128), nullable=False),
    Column("frame_data", LargeBinary, nullable=False),
    Column("priority", Integer, nullable=False, server_default=text("5")),
    # pending, processing, completed, failed, skipped (core.models.QueueStatus)
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("frame_number", BigInteger, nullable=True),
    Column("frame_timestamp", UTCDateTime(), nullable=False, server_default=_NOW),
    Column("retry_count", Integer, nullable=False, server_default=text("0")),
    Column("max_retries", Integer, nullable=False, server_default=text("3")),
    Column("detections_count", Integer, nullable=False, server_default=text("0")),
    Column("processing_time_ms", Integer, nullable=True),
    Column("error_message", Text, nullable=True),
    *_timestamps(),
    # Claims are leases (store.queue): who holds a processing row, until when,
    # and how often it was handed out (a frame that kills its worker is failed
    # after max_deliveries).
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("deliveries", Integer, nullable=False, server_default=text("0")),
)

# Claiming reads pending rows by priority (10 first), then oldest.
Index(
    "ix_detection_processing_queue_claim",
    detection_processing_queue.c.status,
    detection_processing_queue.c.priority.desc(),
    detection_processing_queue.c.created_at,
)

# Rows that lost two holders are claimed alone, so finding them must not scan
# the pending rows: a partial index holds only them (usually none).
Index(
    "ix_detection_processing_queue_suspects",
    detection_processing_queue.c.priority.desc(),
    detection_processing_queue.c.created_at,
    postgresql_where=text("status = 'pending' AND deliveries >= 2"),
    sqlite_where=text("status = 'pending' AND deliveries >= 2"),
)

# API keys for the server (detectflow.store.keys): only a SHA-256 of each key is kept.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(255), nullable=True),
    Column("scope", String(16), nullable=False),
    Column("key_sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, server_default=_NOW),
    Column("revoked_at", UTCDateTime(), nullable=True),
    # the camera a client of this key sends for when it names none (NVRs through
    # the DeepStack gateway send only the picture)
    Column("camera_id", String(128), nullable=True),
)

# Event-time window totals written by the dataflow (detectflow.store.stats).
# The key includes the kind and the end, so tumbling and sliding rows of the
# same start never collide; a row is replaced only by a higher revision.
detection_window_stats = Table(
    "detection_window_stats",
    metadata,
    Column("camera_id", String(128), primary_key=True),
    Column("detection_type", String(64), primary_key=True),
    Column("window_kind", String(16), primary_key=True),
    Column("window_start", UTCDateTime(), primary_key=True),
    Column("window_end", UTCDateTime(), primary_key=True),
    Column("detection_count", Integer, nullable=False),
    Column("confidence_sum", Float, nullable=False),
    Column("max_confidence", Float, nullable=False),
    Column("distinct_persons", Integer, nullable=False),
    Column("late_count", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("is_final", Boolean, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False, server_default=_NOW),
    postgresql_partition_by="RANGE (window_start)",
)

# Time-range reads (today, this hour, active cameras) over every camera.
Index(
    "ix_detection_window_stats_kind_start",
    detection_window_stats.c.window_kind,
    detection_window_stats.c.window_start,
)

# The same for one camera (/statistics?camera_id=, /summary's totals): the minutes
# since the last rollup, of that camera only, whatever the fleet writes per minute.
Index(
    "ix_detection_window_stats_camera_kind_start",
    detection_window_stats.c.camera_id,
    detection_window_stats.c.window_kind,
    detection_window_stats.c.window_start,
)

# Detections per recognised person, camera and UTC day (detectflow.store.stats):
# what ``most_detected_person`` sums, instead of grouping every detection row.
detection_person_days = Table(
    "detection_person_days",
    metadata,
    Column("camera_id", String(128), primary_key=True),
    Column("person_id", String(128), primary_key=True),
    Column("day", UTCDateTime(), primary_key=True),
    Column("detection_count", BigInteger, nullable=False),
)

# Retention deletes whole days.
Index("ix_detection_person_days_day", detection_person_days.c.day)

# Webhook subscriptions (detectflow.store.webhooks): the secret is encrypted like
# provider api keys; event_types and cameras are JSON lists (empty cameras: all).
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("url", Text, nullable=False),
    Column("event_types", JSON, nullable=False),
    Column("cameras", JSON, nullable=False),
    Column("secret_encrypted", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    *_timestamps(),
)

# One row per (subscription, event) handed to the delivery worker, with its outcome.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column(
        "webhook_id",
        String(ID_LENGTH),
        ForeignKey("webhooks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", String(FRAME_ID_LENGTH), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    Column("response_code", Integer, nullable=True),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("delivered_at", UTCDateTime(), nullable=True),
    *_timestamps(),
)

# A subscription's deliveries, newest first.
Index(
    "ix_webhook_deliveries_webhook_id_created_at",
    webhook_deliveries.c.webhook_id,
    webhook_deliveries.c.created_at,
)

# Tracked objects (detectflow.store.objects): one row per object, upserted from
# its started/updated/ended events. Small next to detections (one row per object,
# not per box), so not partitioned. Lists go newest first by start_time under
# each filter; in-progress objects (end_time NULL) are found by a partial index.
tracked_objects = Table(
    "tracked_objects",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("camera_id", String(128), nullable=False),
    Column("label", String(128), nullable=False),
    Column("detection_type", String(64), nullable=False),
    Column("start_time", UTCDateTime(), nullable=False),
    Column("end_time", UTCDateTime(), nullable=True),
    Column("frames", Integer, nullable=False),
    Column("top_score", Float, nullable=False),
    Column("score", Float, nullable=False),
    Column("box", JSON, nullable=False),
    Column("best_box", JSON, nullable=True),
    Column("best_frame_id", String(FRAME_ID_LENGTH), nullable=True),
    Column("best_score", Float, nullable=True),
    Column("best_time", UTCDateTime(), nullable=True),
    Column("zones", JSON, nullable=False),
    Column("current_zones", JSON, nullable=False),
    Column("path", JSON, nullable=False),
    Column("sub_label", String(255), nullable=True),
    Column("person_id", String(128), nullable=True),
    Column("person_name", String(255), nullable=True),
    Column("snapshot_path", Text, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False, server_default=_NOW),
    Index(None, "camera_id", "start_time"),
    Index(None, "start_time"),
    Index(None, "label", "start_time"),
    Index(None, "end_time"),
)
# In progress: few rows, read on every list with in_progress=true.
Index(
    "ix_tracked_objects_in_progress",
    tracked_objects.c.start_time,
    postgresql_where=text("end_time IS NULL"),
    sqlite_where=text("end_time IS NULL"),
)

# Cameras as configuration (detectflow.store.cameras); the URL is encrypted at rest.
cameras = Table(
    "cameras",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(255), nullable=False, server_default=text("''")),
    Column("url_encrypted", Text, nullable=True),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("fps", Float, nullable=False, server_default=text("5")),
    Column("provider", String(64), nullable=True),
    Column("options", JSON, nullable=False),
    Column("last_error", Text, nullable=True),
    *_timestamps(),
)
