"""Webhook deliveries to a real HTTP receiver on loopback, fed through a real Bytewax
flow with object events made by :class:`~detectflow.core.objects.CameraObjects`;
outcomes recorded on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.models import utcnow
from detectflow.core.settings import Settings
from detectflow.publish.signing import sign, verify
from detectflow.publish.sinks import PublisherSink
from detectflow.publish.webhooks import WebhookPublisher
from detectflow.store import Database
from detectflow.store.webhooks import Delivery, Webhook
from tests.publish.conftest import Serve
from tests.publish.receiver import Receiver
from tests.publish.scene import walk_into_the_dock
from tests.publish.test_mqtt import flow_through, wait_for

SECRET = "a-long-enough-secret-for-tests"
FAST = (0.05, 0.05, 0.05, 0.05)  # the 10-minute schedule, in a fraction of a second


def subscribe(db: Database, url: str, **fields: object) -> Webhook:
    now = utcnow()
    values: dict[str, object] = {
        "id": f"hook-{time.monotonic_ns()}",
        "url": url,
        "event_types": ("object_started", "object_updated", "object_ended"),
        "cameras": (),
        "secret": SECRET,
        "enabled": True,
        "created_at": now,
        "updated_at": now,
        **fields,
    }
    return db.create_webhook(Webhook(**values))  # type: ignore[arg-type]


def publisher(db: Database, **options: object) -> WebhookPublisher:
    values: dict[str, object] = {"retry_seconds": FAST, "timeout": 0.3, "refresh_seconds": 0.1}
    made = WebhookPublisher(db, **{**values, **options})  # type: ignore[arg-type]
    made.start()
    return made


def deliveries(db: Database, hook: Webhook) -> list[Delivery]:
    return db.list_webhook_deliveries(hook.id, limit=1000)[0]


def test_a_receiver_verifies_each_deliverys_signature(db: Database, serve: Serve) -> None:
    receiver = serve(Receiver())
    hook = subscribe(db, receiver.url)
    sink = PublisherSink(publisher(db))
    flow_through(sink, walk_into_the_dock())
    sink.close()

    assert len(receiver.received) == 3
    for got in receiver.received:
        headers = got.headers
        assert verify(
            SECRET, headers["x-detectflow-timestamp"], headers["x-detectflow-signature"], got.body
        )
        assert not verify(
            "another-secret-entirely",
            headers["x-detectflow-timestamp"],
            headers["x-detectflow-signature"],
            got.body,
        )
        assert headers["content-type"] == "application/json"
    bodies = [json.loads(got.body) for got in receiver.received]
    assert sorted(b["type"] for b in bodies) == ["object_ended", "object_started", "object_updated"]
    assert all(b["camera_id"] == "cam-1" and "before" in b and "after" in b for b in bodies)
    recorded = deliveries(db, hook)
    assert len(recorded) == 3
    assert {(d.status, d.attempts, d.response_code) for d in recorded} == {("delivered", 1, 200)}
    assert {d.event_id for d in recorded} == {b["id"] for b in bodies}


def test_500_twice_then_200_is_delivered_on_the_third_try(db: Database, serve: Serve) -> None:
    receiver = serve(Receiver(statuses=[500, 500, 200]))
    hook = subscribe(db, receiver.url, event_types=("object_started",))
    sink = PublisherSink(publisher(db))
    flow_through(sink, walk_into_the_dock())
    sink.close()

    assert len(receiver.received) == 3
    assert len({got.body for got in receiver.received}) == 1  # the same event each time
    ids = {got.headers["x-detectflow-delivery"] for got in receiver.received}
    assert len(ids) == 1
    (delivery,) = deliveries(db, hook)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 3, 200)
    assert delivery.id in ids and delivery.delivered_at is not None


def test_a_receiver_that_never_answers_ends_failed_with_the_reason(
    db: Database, serve: Serve
) -> None:
    receiver = serve(Receiver(hang=True))
    hook = subscribe(db, receiver.url, event_types=("object_started",))
    made = publisher(db, retry_seconds=(0.01, 0.01), timeout=0.2)
    sink = PublisherSink(made)
    flow_through(sink, walk_into_the_dock())
    wait_for(lambda: made.failed == 1)
    sink.close()

    assert len(receiver.received) == 3  # every try reached it; none was answered
    (delivery,) = deliveries(db, hook)
    assert delivery.status == "failed" and delivery.attempts == 3
    assert delivery.last_error == "no answer within 0.2 s"
    assert delivery.response_code is None


def test_a_stuck_receiver_never_holds_the_flow_back(db: Database, serve: Serve) -> None:
    """The queue is bounded: offers return at once, the overflow is counted and
    recorded as dropped deliveries, and every result still reaches the flow's end."""
    receiver = serve(Receiver(hang=True))
    hook = subscribe(db, receiver.url)
    made = publisher(db, queue_size=2, timeout=30.0)
    sink = PublisherSink(made)
    results = [r for cam in range(20) for r in walk_into_the_dock(camera=f"cam-{cam}")]
    flow_through(sink, results)  # returns although no delivery has finished
    assert made.delivered == 0 and made.failed == 0
    assert made.dropped > 0
    made.close(timeout=0.5)  # the two stuck tries are given up on after half a second

    recorded = deliveries(db, hook)
    dropped = [d for d in recorded if d.status == "dropped"]
    reasons = {d.last_error for d in dropped}
    assert "delivery queue full (2 events waiting)" in reasons
    # what was still queued when the flow ended (the two stuck tries held every slot)
    assert reasons <= {
        "delivery queue full (2 events waiting)",
        "the flow stopped before it was sent",
    }
    assert all(d.attempts == 0 for d in dropped)
    stopped = [d for d in recorded if d.status == "failed"]
    assert all("the flow stopped before try" in (d.last_error or "") for d in stopped)


def test_subscriptions_get_only_their_event_types_and_cameras(db: Database, serve: Serve) -> None:
    ends = serve(Receiver())
    other_camera = serve(Receiver())
    disabled = serve(Receiver())
    subscribe(db, ends.url, event_types=("object_ended",))
    subscribe(db, other_camera.url, cameras=("cam-2",))
    subscribe(db, disabled.url, enabled=False)
    sink = PublisherSink(publisher(db))
    flow_through(sink, walk_into_the_dock(camera="cam-1"))
    sink.close()

    assert [json.loads(r.body)["type"] for r in ends.received] == ["object_ended"]
    assert other_camera.received == [] and disabled.received == []


def test_per_frame_event_types_are_delivered_when_asked_for(db: Database, serve: Serve) -> None:
    from detectflow.core.models import DetectionEvent

    receiver = serve(Receiver())
    subscribe(db, receiver.url, event_types=("detection_completed",))
    results = walk_into_the_dock()[:2]
    event = DetectionEvent("ev-1", "cam-1", "detection_completed", "info", "2 detections")
    results[0] = replace(results[0], events=(event,))
    sink = PublisherSink(publisher(db))
    flow_through(sink, results)
    sink.close()

    (got,) = receiver.received
    body = json.loads(got.body)
    assert (body["id"], body["type"], body["camera_id"]) == ("ev-1", "detection_completed", "cam-1")
    assert body["event"]["message"] == "2 detections"


def test_a_url_the_ssrf_guard_refuses_is_recorded_failed_untried(db: Database) -> None:
    hook = subscribe(db, "http://169.254.169.254/latest/meta-data", event_types=("object_ended",))
    sink = PublisherSink(publisher(db))
    flow_through(sink, walk_into_the_dock())
    sink.close()

    (delivery,) = deliveries(db, hook)
    assert delivery.status == "failed" and delivery.attempts == 0
    assert "169.254.169.254 is a cloud metadata address" in (delivery.last_error or "")


def test_off_by_setting_no_sink_is_made(db: Database) -> None:
    assert WebhookPublisher.from_settings(Settings(webhooks=False), db) is None


@given(secret=st.text(min_size=1), body=st.binary(), stamp=st.integers(0, 2**40))
def test_a_signature_verifies_only_for_its_own_body_and_time(
    secret: str, body: bytes, stamp: int
) -> None:
    signature = sign(secret, stamp, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(secret, str(stamp), signature, body, now=stamp)
    assert not verify(secret, str(stamp), signature, body + b"x", now=stamp)
    assert not verify(secret, str(stamp + 1), signature, body, now=stamp)
    assert not verify(secret, str(stamp), signature, body, now=stamp + 301)  # stale
    assert not verify(secret, "not-a-number", signature, body, now=stamp)
