"""The built-in publishers inside ``run_flow``: found through the sinks hook like a
vendor's sinks, given the flow's database, and closed when the flow ends."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from detectflow.flows import FlowError, FlowOptions, run_flow
from detectflow.store import Database
from tests.adapters.mqtt_support import RawClient, broker_url
from tests.flows.conftest import HANDLERS, ScriptedPlugin, activate, enqueue, person
from tests.publish.conftest import Serve
from tests.publish.receiver import Receiver
from tests.publish.test_mqtt import payloads, wait_for
from tests.publish.test_webhooks import subscribe


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        poll_interval_seconds=0.01,
        disable_plugin_autoload=True,
        webhook_retry_seconds=(0.05,),
        webhook_timeout_seconds=1.0,
    )


@pytest.fixture
def registry(settings: Settings) -> Iterator[PluginRegistry]:
    registry = get_registry(settings)
    registry.register(ScriptedPlugin(), "scripted", "tests", "0")
    yield registry
    HANDLERS.clear()


def test_the_publishers_are_registered_as_plugin_sinks(registry: PluginRegistry) -> None:
    assert {"mqtt", "webhooks"} <= set(registry.sinks())
    (info,) = [p for p in registry.plugins() if p.name == "detectflow.publish.plugin"]
    assert info.hooks == ("detectflow_sinks",)


@pytest.mark.mqtt
def test_a_flow_delivers_its_events_and_says_online_then_offline(
    settings: Settings, db: Database, registry: PluginRegistry, serve: Serve
) -> None:
    prefix = f"detectflow-test/{uuid.uuid4().hex[:12]}"
    watcher = RawClient()
    watcher.subscribe(f"{prefix}/#")
    receiver = serve(Receiver())
    hook = subscribe(db, receiver.url, event_types=("detection_completed",))
    activate(db, person)
    queued = enqueue(db, 5)
    try:
        with_mqtt = settings.with_overrides(publish_mqtt_url=broker_url(prefix))
        run_flow(with_mqtt, FlowOptions(until_empty=True), database=db, registry=registry)
        wait_for(lambda: payloads(watcher, f"{prefix}/available") == ["online", "offline"])
    finally:
        watcher.client.publish(f"{prefix}/available", b"", qos=1, retain=True).wait_for_publish(5)
        watcher.close()

    bodies = [json.loads(r.body) for r in receiver.received]
    assert sorted(b["type"] for b in bodies) == ["detection_completed"] * 5
    assert sorted(b["camera_id"] for b in bodies) == sorted(f.camera_id for f in queued)
    recorded = db.list_webhook_deliveries(hook.id)[0]
    assert len(recorded) == 5 and {d.status for d in recorded} == {"delivered"}
    assert {d.event_id for d in recorded} == {b["id"] for b in bodies}


def test_a_malformed_publish_url_stops_the_flow_before_it_starts(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    bad = settings.with_overrides(publish_mqtt_url="http://broker:1883/x")
    with pytest.raises(FlowError, match=r"sink mqtt: MQTT URL must start with mqtt://"):
        run_flow(bad, FlowOptions(until_empty=True), database=db, registry=registry)
