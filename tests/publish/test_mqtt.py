"""The MQTT publisher against the real Mosquitto, fed through a real Bytewax flow
with object events made by :class:`~detectflow.core.objects.CameraObjects`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import bytewax.operators as op
import paho.mqtt.client as mqtt
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from detectflow.core.models import FrameResult
from detectflow.publish.mqtt import MqttPublisher, parse_publish_url
from detectflow.publish.sinks import PublisherSink
from tests.adapters.mqtt_support import RawClient, broker_url
from tests.publish.scene import walk_into_the_dock

pytestmark = pytest.mark.mqtt

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def prefix() -> str:
    return f"detectflow-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def watcher(prefix: str) -> Iterator[RawClient]:
    client = RawClient()
    client.subscribe(f"{prefix}/#")
    yield client
    client.close()


def flow_through(sink: PublisherSink, results: list[FrameResult]) -> None:
    flow = Dataflow("publish-test")
    op.output("mqtt", op.input("results", flow, TestingSource(results)), sink)
    run_main(flow)


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def on(client: RawClient, topic: str) -> list[mqtt.MQTTMessage]:
    return [m for m in list(client.messages) if m.topic == topic]


def payloads(client: RawClient, topic: str) -> list[str]:
    return [m.payload.decode() for m in on(client, topic)]


def test_prefix_defaults_to_detectflow_and_refuses_wildcards() -> None:
    assert parse_publish_url("mqtt://broker:1883").topic == "detectflow"
    assert parse_publish_url("mqtt://broker:1883/").topic == "detectflow"
    assert parse_publish_url("mqtt://broker/site/a").topic == "site/a"
    with pytest.raises(ValueError, match="wildcards"):
        parse_publish_url("mqtt://broker/site/+")


def test_a_subscriber_sees_new_update_end_and_counts_0_1_0(prefix: str, watcher: RawClient) -> None:
    person, dock_person = f"{prefix}/cam-1/person", f"{prefix}/cam-1/dock/person"
    # A count a killed run left behind: the publisher must answer it with its own (0).
    watcher.client.publish(person, b"1", qos=1, retain=True).wait_for_publish(5)
    publisher = MqttPublisher(broker_url(prefix))
    sink = PublisherSink(publisher)
    publisher.start()
    wait_for(lambda: payloads(watcher, person)[-1:] == ["0"])

    flow_through(sink, walk_into_the_dock())
    wait_for(lambda: len(on(watcher, f"{prefix}/events")) == 3)
    wait_for(
        lambda: payloads(watcher, person)[-1:] == ["0"] and len(payloads(watcher, person)) >= 4
    )
    sink.close()

    events = [json.loads(m.payload) for m in on(watcher, f"{prefix}/events")]
    assert [e["type"] for e in events] == ["new", "update", "end"]
    frigate_fields = {
        "id", "camera", "label", "sub_label", "score", "top_score", "start_time",
        "end_time", "box", "area", "current_zones", "entered_zones", "has_snapshot",
    }  # fmt: skip
    for e in events:
        assert frigate_fields <= set(e["before"]) and frigate_fields <= set(e["after"])
        assert e["after"]["camera"] == "cam-1" and e["after"]["label"] == "person"
    new, update, end = events
    assert new["before"] == new["after"] and new["after"]["end_time"] is None
    assert update["before"]["current_zones"] == [] and update["after"]["current_zones"] == ["dock"]
    assert update["after"]["entered_zones"] == ["dock"]
    assert end["after"]["end_time"] is not None
    assert len({e["after"]["id"] for e in events}) == 1
    # after the stale "1": reset to 0, the object's 1, its end's 0 -- all retained
    assert payloads(watcher, person)[:4] == ["1", "0", "1", "0"]
    assert payloads(watcher, dock_person) == ["1", "0"]
    assert all(m.retain == 0 for m in on(watcher, person)[1:])  # live copies of retained
    assert payloads(watcher, f"{prefix}/available") == ["online", "offline"]
    assert publisher.dropped == 0 and publisher.failed == 0

    late = RawClient()  # a newcomer gets the retained state at once
    try:
        late.subscribe(f"{prefix}/#")
        wait_for(lambda: len(late.messages) >= 3)
        retained = {m.topic: m.payload.decode() for m in late.messages if m.retain}
        assert retained == {person: "0", dock_person: "0", f"{prefix}/available": "offline"}
    finally:
        late.close()
        for topic in (person, dock_person, f"{prefix}/available"):  # leave the broker clean
            watcher.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)


def test_home_assistant_discovery_precedes_each_camera_label_count(prefix: str) -> None:
    node = prefix.replace("/", "_")
    config_topic = f"homeassistant/sensor/{node}/cam-1_person/config"
    person = f"{prefix}/cam-1/person"
    ha = RawClient()
    ha.subscribe(f"homeassistant/sensor/{node}/#")
    ha.subscribe(person)
    publisher = MqttPublisher(broker_url(prefix), discovery=True)
    sink = PublisherSink(publisher)
    try:
        publisher.start()
        flow_through(sink, walk_into_the_dock())
        wait_for(lambda: len(on(ha, config_topic)) == 1 and payloads(ha, person)[:2] == ["1", "0"])
        sink.close()
        topics = [m.topic for m in ha.messages]
        assert topics.index(config_topic) < topics.index(person)
        config = json.loads(on(ha, config_topic)[0].payload)
        assert config["state_topic"] == person
        assert config["availability_topic"] == f"{prefix}/available"
        assert config["unique_id"] == f"{node}_cam-1_person_count"
        assert config["device"]["name"] == "cam-1"
    finally:
        sink.close()
        for topic in (config_topic, person, f"{prefix}/cam-1/dock/person", f"{prefix}/available"):
            ha.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        ha.close()


def test_the_last_will_says_offline_when_the_flow_process_is_killed(
    prefix: str, watcher: RawClient
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.publish.mqtt_flow", broker_url(prefix)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        wait_for(lambda: len(on(watcher, f"{prefix}/events")) >= 1)
        assert payloads(watcher, f"{prefix}/available") == ["online"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: payloads(watcher, f"{prefix}/available")[-1:] == ["offline"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    retained = on(watcher, f"{prefix}/available")[-1]
    assert retained.payload == b"offline"
    for topic in (f"{prefix}/available", f"{prefix}/cam-1/person", f"{prefix}/cam-1/dock/person"):
        watcher.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
