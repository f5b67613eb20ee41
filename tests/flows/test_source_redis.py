"""The Redis Streams source against a real Redis (db 15, fresh keys per test)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from detectflow import Frame, FrameResult, Settings
from detectflow.core.models import EventType
from detectflow.core.plugins import PluginRegistry
from detectflow.flows import FlowError, FlowMetrics, FlowOptions, run_flow, source_redis
from detectflow.flows.source_common import SourceURLError
from detectflow.flows.source_redis import entry_to_frame, parse_redis_source_url
from detectflow.samples import sample_frame
from detectflow.store import Database
from tests import services
from tests.flows.conftest import activate, activate_counted, person, running_flow, wait_until

pytestmark = pytest.mark.redis

BASE = "redis://127.0.0.1:6379/15"


@pytest.fixture
def flow_registry(registry: PluginRegistry) -> PluginRegistry:
    if "redis" not in registry.frame_sources():
        registry.register(source_redis, "detectflow.flows.source_redis", "detectflow", "0")
    return registry


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(services.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    name = f"detectflow-test:{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(client.scan_iter(match=f"{name}*"))
    if keys:
        client.delete(*keys)


def add_frames(client: redis.Redis, key: str, camera: str, count: int, start: int = 0) -> list[str]:
    ids = []
    for n in range(start, start + count):
        entry_id = client.xadd(
            key,
            {
                "camera_id": camera,
                "image": sample_frame(camera, n, 32, 24),
                "frame_number": str(n),
                "timestamp": "2025-11-05T12:34:56Z",
            },
        )
        ids.append(entry_id.decode())
    return ids


def pending(client: redis.Redis, key: str, group: str = "detectflow") -> int:
    count: int = client.xpending(key, group)["pending"]
    return count


def run(
    settings: Settings, db: Database, registry: PluginRegistry, url: str, **kwargs: object
) -> FlowMetrics:
    options = FlowOptions(source_url=url, until_empty=True, **kwargs)  # type: ignore[arg-type]
    return run_flow(settings, options, database=db, registry=registry)


def test_every_entry_of_every_stream_completes_once_and_is_acked(
    settings: Settings,
    sqlite_db: Database,
    flow_registry: PluginRegistry,
    client: redis.Redis,
    prefix: str,
) -> None:
    log = activate_counted(sqlite_db)
    keys = [f"{prefix}:cam-{i}" for i in range(3)]
    for i, key in enumerate(keys):
        add_frames(client, key, f"cam-{i}", 6)

    metrics = run(
        settings, sqlite_db, flow_registry, f"{BASE}?stream={','.join(keys)}&count=4", workers=2
    )

    assert (metrics.snapshot().completed, metrics.snapshot().failed) == (18, 0)
    assert len(log.calls) == 18
    assert set(log.calls.values()) == {1}
    detections, total = sqlite_db.list_detections(limit=100)
    assert total == 36
    assert {(d.camera_id, d.frame_number) for d in detections} == {
        (f"cam-{i}", n) for i in range(3) for n in range(6)
    }
    assert all(pending(client, key) == 0 for key in keys)
    assert all(client.xinfo_groups(key)[0]["last-delivered-id"] != b"0-0" for key in keys)


def test_a_pattern_finds_stream_keys_with_scan(
    settings: Settings,
    sqlite_db: Database,
    flow_registry: PluginRegistry,
    client: redis.Redis,
    prefix: str,
) -> None:
    activate(sqlite_db, person)
    add_frames(client, f"{prefix}:a", "cam-a", 3)
    add_frames(client, f"{prefix}:b", "cam-b", 2)
    client.set(f"{prefix}:not-a-stream", "x")

    metrics = run(settings, sqlite_db, flow_registry, f"{BASE}?stream={prefix}:*&group=replay")

    assert metrics.snapshot().completed == 5
    assert pending(client, f"{prefix}:a", "replay") == pending(client, f"{prefix}:b", "replay") == 0


def test_invalid_entries_fail_with_their_reason_and_are_acked(
    settings: Settings,
    sqlite_db: Database,
    flow_registry: PluginRegistry,
    client: redis.Redis,
    prefix: str,
) -> None:
    log = activate_counted(sqlite_db)
    key = f"{prefix}:mixed"
    image = sample_frame("cam-1", 0, 32, 24)
    client.xadd(key, {"camera_id": "cam-1", "image": image})
    bad = {
        "no image": {"camera_id": "cam-1"},
        "no camera": {"image": image},
        "bad camera": {"camera_id": "cam 1!", "image": image},
        "not an image": {"camera_id": "cam-1", "image": b"GIF89a..."},
        "too big": {"camera_id": "cam-1", "image": sample_frame("cam-1", 1, 64, 64)},
        "bad number": {"camera_id": "cam-1", "image": image, "frame_number": "seven"},
        "bad time": {"camera_id": "cam-1", "image": image, "timestamp": "yesterday"},
        "bad priority": {"camera_id": "cam-1", "image": image, "priority": "11"},
        "long id": {"camera_id": "cam-1", "image": image, "frame_id": "x" * 129},
    }
    for fields in bad.values():
        client.xadd(key, fields)  # type: ignore[arg-type]
    small = replace(settings, max_frame_bytes=len(image) + 100)

    metrics = run(small, sqlite_db, flow_registry, f"{BASE}?stream={key}")

    assert (metrics.snapshot().completed, metrics.snapshot().failed) == (1, len(bad))
    assert len(log.calls) == 1
    events, total = sqlite_db.list_events(event_type=EventType.DETECTION_FAILED, limit=20)
    assert total == len(bad)
    reasons = "\n".join(e.message for e in events)
    for expected in (
        "entry has no image field",
        "entry has no camera_id field",
        "camera_id must be",
        "not a JPEG, PNG or WebP",
        "the limit is",
        "frame_number is not an integer",
        "timestamp is not RFC 3339",
        "priority must be between 1 and 10",
        "frame_id must be 1-128 characters",
    ):
        assert expected in reasons
    assert pending(client, key) == 0


def test_a_dead_consumers_pending_entries_are_claimed(
    settings: Settings,
    sqlite_db: Database,
    flow_registry: PluginRegistry,
    client: redis.Redis,
    prefix: str,
) -> None:
    activate(sqlite_db, person)
    key = f"{prefix}:claims"
    client.xgroup_create(key, "detectflow", id="0", mkstream=True)
    ids = add_frames(client, key, "cam-1", 4)
    client.xreadgroup("detectflow", "dead-consumer", {key: ">"}, count=10)  # never acked
    assert pending(client, key) == 4
    time.sleep(0.1)

    metrics = run(settings, sqlite_db, flow_registry, f"{BASE}?stream={key}&claim_idle=0.05")

    assert metrics.snapshot().completed == 4
    assert pending(client, key) == 0
    detections, _ = sqlite_db.list_detections(limit=100)
    assert {d.frame_number for d in detections} == {0, 1, 2, 3}
    assert len(ids) == 4


def test_an_entry_that_keeps_killing_its_workers_is_recorded_failed_and_acked(
    settings: Settings,
    sqlite_db: Database,
    flow_registry: PluginRegistry,
    client: redis.Redis,
    prefix: str,
) -> None:
    calls = activate_counted(sqlite_db)
    key = f"{prefix}:poison"
    client.xgroup_create(key, "detectflow", id="0", mkstream=True)
    poison, healthy = add_frames(client, key, "cam-1", 2)
    # Three workers took the poison entry and died before storing a result;
    # the healthy one was taken once.
    client.xreadgroup("detectflow", "dead-1", {key: ">"}, count=10)
    for name in ("dead-2", "dead-3"):
        client.xclaim(key, "detectflow", name, 0, [poison])
    time.sleep(0.05)

    url = f"{BASE}?stream={key}&claim_idle=0.01&max_deliveries=3"
    metrics = run(settings, sqlite_db, flow_registry, url)

    snap = metrics.snapshot()
    assert (snap.completed, snap.failed) == (1, 1)
    assert pending(client, key) == 0  # both acknowledged once recorded
    assert sum(calls.calls.values()) == 1  # the poison entry never reached the provider again
    events, _ = sqlite_db.list_events(limit=10, event_type=EventType.DETECTION_FAILED)
    (failed,) = events
    assert failed.message.startswith("Detection failed: abandoned after 4 deliveries")
    assert "max_deliveries=3" in failed.message
    detections, _ = sqlite_db.list_detections(limit=10)
    assert {d.frame_number for d in detections} == {1}
    assert healthy


def test_entries_of_a_live_consumer_are_not_claimed_before_claim_idle(
    settings: Settings,
    sqlite_db: Database,
    flow_registry: PluginRegistry,
    client: redis.Redis,
    prefix: str,
) -> None:
    activate(sqlite_db, person)
    key = f"{prefix}:busy"
    client.xgroup_create(key, "detectflow", id="0", mkstream=True)
    add_frames(client, key, "cam-1", 2)
    client.xreadgroup("detectflow", "busy-consumer", {key: ">"}, count=10)
    add_frames(client, key, "cam-1", 3, start=2)

    metrics = run(settings, sqlite_db, flow_registry, f"{BASE}?stream={key}")  # claim_idle 60 s

    assert metrics.snapshot().completed == 3
    consumers = {c["name"]: c["pending"] for c in client.xinfo_consumers(key, "detectflow")}
    assert consumers[b"busy-consumer"] == 2


def test_an_entry_whose_write_failed_stays_pending(
    settings: Settings,
    sqlite_db: Database,
    flow_registry: PluginRegistry,
    client: redis.Redis,
    prefix: str,
) -> None:
    activate(sqlite_db, person)
    with sqlite_db.engine.begin() as conn:  # a real database refusal, for one camera
        conn.execute(
            text(
                "CREATE TRIGGER refuse_cam_bad BEFORE INSERT ON detection_event_logs "
                "WHEN NEW.camera_id = 'cam-bad' BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        )
    good, bad = f"{prefix}:good", f"{prefix}:bad"
    add_frames(client, good, "cam-good", 3)
    (bad_id,) = add_frames(client, bad, "cam-bad", 1)

    with pytest.raises(Exception, match="error writing output batch") as raised:
        run(settings, sqlite_db, flow_registry, f"{BASE}?stream={good},{bad}")

    assert "disk says no" in str(raised.value.__cause__)

    still_pending = client.xpending_range(bad, "detectflow", "-", "+", 10)
    assert [e["message_id"].decode() for e in still_pending] == [bad_id]
    # Whatever was acked was written first.
    written = {d.frame_number for d in sqlite_db.list_detections(limit=100)[0]}
    acked = 3 - pending(client, good)
    assert len(written) >= acked


def test_continuous_mode_reads_entries_added_later_until_stopped(
    settings: Settings,
    sqlite_db: Database,
    flow_registry: PluginRegistry,
    client: redis.Redis,
    prefix: str,
) -> None:
    activate(sqlite_db, person)
    key = f"{prefix}:live"
    url = f"{BASE}?stream={key}&block_ms=50"

    with running_flow(settings, sqlite_db, flow_registry, url) as flow:
        time.sleep(0.2)
        add_frames(client, key, "cam-1", 5)
        wait_until(lambda: flow.metrics.snapshot().completed >= 5)

    assert flow.metrics.snapshot().completed == 5
    assert pending(client, key) == 0


def test_an_unreachable_server_is_a_clear_flow_error(
    settings: Settings, sqlite_db: Database, flow_registry: PluginRegistry, free_port: int
) -> None:
    activate(sqlite_db, person)
    with pytest.raises(FlowError, match="cannot reach Redis"):
        run(settings, sqlite_db, flow_registry, f"redis://127.0.0.1:{free_port}/0?stream=x")


def test_redis_source_is_registered_through_the_hook(flow_registry: PluginRegistry) -> None:
    assert flow_registry.frame_sources()["redis"] is source_redis.redis_source_factory


def test_an_entry_carries_its_stream_and_id() -> None:
    image = sample_frame("cam-1", 3, 32, 24)
    fields = {b"camera_id": b"cam-1", b"image": image, b"priority": b"7"}

    frame = entry_to_frame("frames", "1-0", fields, max_bytes=1 << 20)

    assert isinstance(frame, Frame)
    assert frame.attributes == {"redis_stream": "frames", "redis_id": "1-0"}
    assert frame.priority == 7


def test_url_options_and_defaults() -> None:
    settings = Settings()
    options = parse_redis_source_url("redis://:pw@host:6380/2?stream=a,b,a&group=g", settings)
    assert options.connection_url == "redis://:pw@host:6380/2"
    assert options.streams == ("a", "b")
    assert options.pattern is None
    assert (
        options.group,
        options.count,
        options.block_ms,
        options.claim_idle,
        options.max_deliveries,
    ) == ("g", settings.batch_size, 0, 60.0, 5)
    assert (
        parse_redis_source_url("redis://h?stream=a&max_deliveries=0", settings).max_deliveries == 0
    )
    assert parse_redis_source_url("redis://h?stream=frames:*", settings).pattern == "frames:*"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sql://x", "not a redis source URL"),
        ("redis:///0?stream=x", "has no host"),
        ("redis://h:99999/0?stream=x", "bad port"),
        ("redis://h/zero?stream=x", "must be a database number"),
        ("redis://h/0", "needs stream="),
        ("redis://h/0?stream=a:*,b", "either one stream pattern or a list"),
        ("redis://h/0?stream=a&group=", "group may not be empty"),
        ("redis://h/0?stream=a&speed=2", "unknown redis source option"),
        ("redis://h/0?stream=a&count=0", "out of range"),
        ("redis://h/0?stream=a&claim_idle=soon", "not a number"),
        ("redis://h/0?stream=a&block_ms=-1", "out of range"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(SourceURLError, match=message):
        parse_redis_source_url(url, Settings())


@given(
    name=st.sampled_from(["count", "block_ms", "claim_idle", "stream", "group"]),
    value=st.text(max_size=30),
)
def test_any_option_value_parses_or_is_refused_clearly(name: str, value: str) -> None:
    message = ""
    try:
        parse_redis_source_url(f"redis://h/0?stream=s&{name}={value}", Settings())
    except SourceURLError as exc:
        message = str(exc)
    assert message == "" or "redis source" in message


@given(
    fields=st.dictionaries(
        st.sampled_from([b"camera_id", b"image", b"frame_id", b"frame_number", b"priority", b"x"]),
        st.binary(max_size=40),
    )
)
def test_any_entry_becomes_a_frame_or_a_failure_with_a_reason(fields: dict[bytes, bytes]) -> None:
    item = entry_to_frame("k", "1-1", fields, max_bytes=1 << 20)
    if isinstance(item, FrameResult):
        assert item.error is not None
        assert item.error.startswith("invalid frame: ")
        item = item.frame
    assert item.attributes == {"redis_stream": "k", "redis_id": "1-1"}


def test_an_entry_without_a_timestamp_takes_the_time_redis_appended_it() -> None:
    """Rows are keyed by (id, time): a redelivered entry must come back with the
    same time, or it would be stored twice."""
    from datetime import UTC, datetime

    from detectflow.flows.source_redis import entry_to_frame

    fields = {b"camera_id": b"cam-1", b"image": sample_frame("cam-1", 0)}
    first = entry_to_frame("frames", "1764676800123-0", fields, max_bytes=1 << 20)
    again = entry_to_frame("frames", "1764676800123-0", dict(fields), max_bytes=1 << 20)
    assert isinstance(first, Frame) and isinstance(again, Frame)
    assert first.timestamp == again.timestamp == datetime(2025, 12, 2, 12, 0, 0, 123000, tzinfo=UTC)
    stamped = entry_to_frame(
        "frames", "1-0", {**fields, b"timestamp": b"2025-01-01T00:00:00Z"}, max_bytes=1 << 20
    )
    assert isinstance(stamped, Frame)
    assert stamped.timestamp == datetime(2025, 1, 1, tzinfo=UTC)
