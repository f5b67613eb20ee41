"""The MQTT frame-topic source against the real Mosquitto (unique topics per test)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow import Frame, FrameResult, Settings
from detectflow.core.frames import TIME_OF_ARRIVAL
from detectflow.core.models import EventType
from detectflow.core.plugins import PluginRegistry
from detectflow.flows import FlowError, FlowOptions, run_flow, source_mqtt
from detectflow.flows.source_common import SourceURLError
from detectflow.flows.source_mqtt import message_to_frame, parse_mqtt_source_url
from detectflow.samples import sample_frame
from detectflow.store import Database
from tests import services
from tests.adapters.mqtt_support import RawClient, publish_properties, unique_topic
from tests.flows.conftest import (
    FlowThread,
    activate,
    activate_counted,
    person,
    start_flow,
    wait_until,
)

pytestmark = pytest.mark.mqtt

BROKER = f"mqtt://{services.MQTT_HOST}:{services.MQTT_PORT}"


@pytest.fixture
def flow_registry(registry: PluginRegistry) -> PluginRegistry:
    if "mqtt" not in registry.frame_sources():
        registry.register(source_mqtt, "detectflow.flows.source_mqtt", "detectflow", "0")
    return registry


@pytest.fixture
def publisher() -> Iterator[RawClient]:
    client = RawClient()
    yield client
    client.close()


def wait_subscribed(publisher: RawClient, base: str, flow: FlowThread) -> None:
    """Publish probe frames (camera ``probe``) until one comes back: the
    subscription is live. Probes sent before it was are dropped by the broker."""
    probe = sample_frame("probe", 0, 16, 12)
    deadline = time.monotonic() + 10
    while flow.metrics.snapshot().completed == 0:
        assert time.monotonic() < deadline, "the flow never subscribed"
        assert flow.thread.is_alive(), flow.errors
        publisher.publish(f"{base}/probe", probe)
        time.sleep(0.05)


def properties(**values: str) -> Any:
    props = publish_properties()
    props.UserProperty = list(values.items())
    return props


def test_frames_on_three_camera_topics_all_land_once(
    settings: Settings,
    sqlite_db: Database,
    flow_registry: PluginRegistry,
    publisher: RawClient,
) -> None:
    log = activate_counted(sqlite_db)
    base = unique_topic("frames")
    # receive_max=2: the broker sends nothing past two unacked messages per
    # connection, so 15 frames land only if every one is acked after its write.
    flow = start_flow(
        settings,
        sqlite_db,
        flow_registry,
        f"{BROKER}/{base}/+?receive_max=2&idle=1",
        workers=2,
        until_empty=True,
    )
    wait_subscribed(publisher, base, flow)
    cameras = ("cam-1", "cam-2", "cam-3")
    for n in range(5):
        for camera in cameras:
            publisher.publish(
                f"{base}/{camera}",
                sample_frame(camera, n, 32, 24),
                properties(frame_number=str(n), frame_id=f"{camera}-{n}", priority="3"),
            )

    flow.join()  # until_empty: ends one idle second after the last frame

    assert flow.metrics.snapshot().failed == 0
    wanted = {f"{camera}-{n}" for camera in cameras for n in range(5)}
    assert wanted <= set(log.calls)
    assert {log.calls[frame_id] for frame_id in wanted} == {1}
    detections, _ = sqlite_db.list_detections(limit=500)
    real = [d for d in detections if d.camera_id != "probe"]
    assert len(real) == 30
    assert {(d.camera_id, d.frame_number) for d in real} == {
        (camera, n) for camera in cameras for n in range(5)
    }


def test_invalid_messages_fail_with_their_reason_and_the_flow_stops_cleanly(
    settings: Settings,
    sqlite_db: Database,
    flow_registry: PluginRegistry,
    publisher: RawClient,
) -> None:
    log = activate_counted(sqlite_db)
    base = unique_topic("frames")
    image = sample_frame("cam-1", 1, 32, 24)
    small = replace(settings, max_frame_bytes=len(image) + 100)
    flow = start_flow(small, sqlite_db, flow_registry, f"{BROKER}/{base}/+?receive_max=3")
    wait_subscribed(publisher, base, flow)

    publisher.publish(f"{base}/cam-1", b"plain text, no image")
    publisher.publish(f"{base}/cam 1!", image)
    publisher.publish(f"{base}/cam-1", image, properties(priority="zero"))
    publisher.publish(f"{base}/cam-1", image, properties(timestamp="soon"))
    publisher.publish(f"{base}/cam-1", sample_frame("cam-1", 2, 64, 64))
    publisher.publish(f"{base}/cam-1", image, properties(frame_id="good"))
    wait_until(lambda: "good" in log.calls and flow.metrics.snapshot().failed == 5)
    flow.stop.set()
    flow.join()

    assert flow.metrics.snapshot().failed == 5
    assert {d.frame_id for d in sqlite_db.list_detections(camera_id="cam-1")[0]} == {"good"}
    events, total = sqlite_db.list_events(event_type=EventType.DETECTION_FAILED, limit=10)
    assert total == 5
    reasons = "\n".join(e.message for e in events)
    for expected in (
        "not a JPEG, PNG or WebP",
        "camera_id must be",
        "priority is not an integer",
        "timestamp is not RFC 3339",
        "the limit is",
    ):
        assert expected in reasons
    assert {e.camera_id for e in events} == {"cam-1", "cam 1!"}


def test_an_unreachable_broker_is_a_clear_flow_error(
    settings: Settings, sqlite_db: Database, flow_registry: PluginRegistry, free_port: int
) -> None:
    activate(sqlite_db, person)
    with pytest.raises(FlowError, match="cannot reach the MQTT broker"):
        run_flow(
            settings,
            FlowOptions(source_url=f"mqtt://127.0.0.1:{free_port}/frames/+", until_empty=True),
            database=sqlite_db,
            registry=flow_registry,
        )


def test_mqtt_source_is_registered_through_the_hook(flow_registry: PluginRegistry) -> None:
    assert flow_registry.frame_sources()["mqtt"] is source_mqtt.mqtt_source_factory


def test_url_options_and_defaults() -> None:
    settings = Settings()
    options = parse_mqtt_source_url("mqtt://u:p%40ss@broker/site/+/frames?qos=0", settings)
    assert (options.host, options.port, options.username, options.password) == (
        "broker",
        1883,
        "u",
        "p@ss",
    )
    assert (options.topic, options.camera_level, options.qos) == ("site/+/frames", 1, 0)
    assert options.subscription == "$share/detectflow/site/+/frames"
    assert options.receive_max is None
    single = parse_mqtt_source_url("mqtts://broker/frames/door?group=g", settings)
    assert (single.port, single.tls, single.camera_level, single.group) == (8883, True, 1, "g")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h/x", "not an mqtt source URL"),
        ("mqtt:///frames/+", "has no host"),
        ("mqtt://h:99999/frames/+", "invalid mqtt source URL"),
        ("mqtt://h", "needs a topic filter"),
        ("mqtt://h/frames/#", "needs a topic filter"),
        ("mqtt://h/$SYS/+", "needs a topic filter"),
        ("mqtt://h/+/frames/+", r"one \+ as a whole level"),
        ("mqtt://h/frames/cam+", r"one \+ as a whole level"),
        ("mqtt://h/frames/", "must end in the camera level"),
        ("mqtt://h/frames/+?qos=2", "out of range"),
        ("mqtt://h/frames/+?group=a/b", "group must be a name"),
        ("mqtt://h/frames/+?receive_max=70000", "out of range"),
        ("mqtt://h/frames/+?speed=1", "unknown mqtt source option"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(SourceURLError, match=message):
        parse_mqtt_source_url(url, Settings())


@given(
    topic=st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=4).map("/".join),
    payload=st.binary(max_size=40),
    props=st.lists(
        st.tuples(
            st.sampled_from(["frame_id", "frame_number", "timestamp", "priority", "other"]),
            st.text(max_size=20),
        ),
        max_size=4,
    ),
)
def test_any_message_becomes_a_frame_or_a_failure_with_a_reason(
    topic: str, payload: bytes, props: list[tuple[str, str]]
) -> None:
    item = message_to_frame(
        topic, payload, props, camera_level=1, max_bytes=1 << 20, attributes={"mqtt_mid": "1"}
    )
    if isinstance(item, FrameResult):
        assert item.error is not None
        assert item.error.startswith("invalid frame: ")
        item = item.frame
    assert isinstance(item, Frame)
    # a frame without a time of its own is stamped on arrival, and says so
    stamped = {} if "timestamp" in dict(props) else {TIME_OF_ARRIVAL: "1"}
    assert item.attributes == {"mqtt_mid": "1", **stamped}
