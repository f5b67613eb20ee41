"""MqttResponder against the real Mosquitto: dedup, expiry, shared groups, bad requests."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from paho.mqtt.properties import Properties

from detectflow.adapters.mqtt import MqttAdapter
from detectflow.adapters.mqtt_link import publish_properties
from detectflow.adapters.mqtt_responder import MqttResponder
from detectflow.adapters.mqtt_wire import encode_request
from detectflow.core.errors import TransientProviderError
from detectflow.core.models import Frame, ProviderConfig, RawDetection
from tests.adapters.mqtt_support import RawClient, broker_url, sample_frame, unique_topic

pytestmark = pytest.mark.mqtt

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def handler(frame: Frame) -> list[RawDetection]:
    return [
        RawDetection("person", 0.9, (0.1, 0.1, 0.5, 0.5), person_id=frame.frame_id),
        RawDetection("dog", 0.2, (0.1, 0.1, 0.5, 0.5)),
    ]


async def wait_until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


def request_props(reply_to: str | None, correlation: bytes, expiry: int | None = 5) -> Properties:
    props = publish_properties()
    if reply_to is not None:
        props.ResponseTopic = reply_to
    props.CorrelationData = correlation
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    return props


def test_redelivered_request_is_answered_once() -> None:
    topic, replies = unique_topic(), unique_topic("replies")
    client = RawClient()
    client.subscribe(replies)

    async def main() -> MqttResponder:
        async with MqttResponder(handler, url=broker_url(topic)) as responder:
            props = request_props(replies, os.urandom(16))
            payload = encode_request(sample_frame(), 0.5)
            for _ in range(2):
                await asyncio.to_thread(client.publish, topic, payload, props)
            await wait_until(lambda: responder.stats.received == 2)
            await wait_until(lambda: len(client.messages) >= 1)
            await asyncio.sleep(0.2)  # room for a second answer, which must not come
        return responder

    try:
        responder = run(main())
    finally:
        client.close()
    assert responder.stats.duplicates == 1
    (answer,) = client.messages
    assert answer.properties is not None
    assert dict(answer.properties.UserProperty)["status"] == "200"
    # min_confidence 0.5 from the request drops the 0.2 dog
    assert [d["label"] for d in json.loads(answer.payload)["detections"]] == ["person"]


def test_no_answer_past_the_request_expiry() -> None:
    topic = unique_topic()

    async def main() -> tuple[MqttResponder, MqttAdapter]:
        async with MqttResponder(handler, url=broker_url(topic), latency=1.5) as responder:
            cfg = ProviderConfig("p", "p", "mqtt", broker_url(topic), timeout_seconds=0.4)
            async with MqttAdapter(cfg) as adapter:
                with pytest.raises(TransientProviderError):
                    await adapter.detect(sample_frame())
                await wait_until(lambda: responder.stats.expired == 1, timeout=3.0)
                await asyncio.sleep(0.1)
        return responder, adapter

    responder, adapter = run(main())
    assert responder.stats.answered == 0
    assert adapter.late_answers == 0  # nothing was sent after the 1 s expiry


def test_bad_request_is_answered_400_and_missing_response_topic_is_counted() -> None:
    topic, replies = unique_topic(), unique_topic("replies")
    client = RawClient()
    client.subscribe(replies)

    async def main() -> MqttResponder:
        async with MqttResponder(handler, url=broker_url(topic)) as responder:
            correlation = os.urandom(16)
            bad = json.dumps({"camera_id": "cam 1", "image": "aGVsbG8="}).encode()
            await asyncio.to_thread(client.publish, topic, bad, request_props(replies, correlation))
            await asyncio.to_thread(client.publish, topic, b"{}", request_props(None, b"x"))
            await wait_until(lambda: responder.stats.received == 2 and len(client.messages) == 1)
        return responder

    try:
        responder = run(main())
    finally:
        client.close()
    (answer,) = client.messages
    assert answer.properties is not None
    users = dict(answer.properties.UserProperty)
    assert users["status"] == "400"
    assert "camera_id" in users["message"]
    assert responder.stats.unanswerable == 1
    assert responder.stats.errors == 1


def test_shared_subscription_splits_requests_between_responders() -> None:
    topic = unique_topic()

    async def main() -> tuple[MqttResponder, MqttResponder]:
        one = MqttResponder(handler, url=broker_url(topic), group="g1")
        two = MqttResponder(handler, url=broker_url(topic), group="g1")
        await one.start()
        await two.start()
        cfg = ProviderConfig("p", "p", "mqtt", broker_url(topic), timeout_seconds=5)
        try:
            async with MqttAdapter(cfg) as adapter:
                frames = [sample_frame(n) for n in range(20)]
                answers = await asyncio.gather(*(adapter.detect(f) for f in frames))
                assert [a[0].person_id for a in answers] == [f.frame_id for f in frames]
        finally:
            await one.stop()
            await two.stop()
        return one, two

    one, two = run(main())
    assert one.stats.answered + two.stats.answered == 20
    assert one.stats.answered > 0
    assert two.stats.answered > 0


def test_async_handler_and_stop_is_idempotent() -> None:
    topic = unique_topic()

    async def slow_handler(frame: Frame) -> list[RawDetection]:
        await asyncio.sleep(0.01)
        return handler(frame)

    async def main() -> None:
        responder = MqttResponder(slow_handler, url=broker_url(topic))
        await responder.start()
        cfg = ProviderConfig("p", "p", "mqtt", broker_url(topic), confidence_threshold=0.0)
        async with MqttAdapter(cfg) as adapter:
            # the adapter asks with min_confidence 0.0, so both detections come back
            assert len(await adapter.detect(sample_frame())) == 2
        await responder.stop()
        await responder.stop()

    run(main())


def test_start_fails_transient_when_the_broker_is_unreachable(free_port: int) -> None:
    async def main() -> None:
        responder = MqttResponder(handler, url=broker_url(unique_topic(), port=free_port))
        try:
            with pytest.raises(TransientProviderError, match="broker unavailable"):
                await responder.start()
        finally:
            await responder.stop()

    run(main())
