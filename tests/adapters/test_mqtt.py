"""MqttAdapter against the real Mosquitto on loopback.

Every test uses its own topics (a uuid), so tests never hear each other.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pluggy
import pytest

from detectflow.adapters.mqtt import MqttAdapter
from detectflow.adapters.mqtt_link import publish_properties
from detectflow.adapters.mqtt_responder import MqttResponder, ResponseHandler
from detectflow.core import hookspecs
from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.core.models import BBox, Frame, ProviderConfig, RawDetection
from detectflow.core.pipeline import RetryPolicy, run_frame
from detectflow.core.plugins import PluginRegistry
from tests.adapters.mqtt_support import (
    RawClient,
    TcpProxy,
    broker_url,
    sample_frame,
    unique_topic,
)

pytestmark = pytest.mark.mqtt

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def config(url: str, **changes: Any) -> ProviderConfig:
    values: dict[str, Any] = {
        "id": "mqtt-test",
        "provider_name": "mqtt test",
        "provider_type": "mqtt",
        "endpoint_url": url,
        "timeout_seconds": 5.0,
        "confidence_threshold": 0.0,
        **changes,
    }
    return ProviderConfig(**values)


def echo_handler(frame: Frame) -> list[RawDetection]:
    """One detection that names its frame, so cross-talk would show."""
    return [RawDetection("person", 0.9, (0.1, 0.2, 0.5, 0.6), person_id=frame.frame_id)]


async def wait_until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


async def serve(handler: ResponseHandler, topic: str, **kwargs: Any) -> MqttResponder:
    responder = MqttResponder(handler, url=broker_url(topic), **kwargs)
    await responder.start()
    return responder


def test_round_trip_normalizes_pixel_boxes_through_run_frame() -> None:
    topic = unique_topic()

    def handler(frame: Frame) -> list[RawDetection]:
        # 40x20 frame: x=10, y=5, w=20, h=10 pixels -> 0.25, 0.25, 0.5, 0.5
        return [RawDetection("car", 0.8, (10, 5, 20, 10), box_format="xywh", units="pixel")]

    async def main() -> None:
        responder = await serve(handler, topic)
        adapter = MqttAdapter(config(broker_url(topic)))
        try:
            result = await run_frame(sample_frame(), adapter)
        finally:
            await adapter.aclose()
            await responder.stop()
        assert result.ok, result.error
        (detection,) = result.detections
        assert detection.detection_type == "vehicle"
        assert detection.bbox == BBox(0.25, 0.25, 0.5, 0.5)
        assert responder.stats.answered == 1

    run(main())


def test_100_concurrent_requests_get_their_own_answers() -> None:
    topic = unique_topic()

    async def main() -> None:
        responder = await serve(echo_handler, topic, latency=0.05)
        adapter = MqttAdapter(config(broker_url(topic)))
        frames = [sample_frame(n) for n in range(100)]
        try:
            answers = await asyncio.gather(*(adapter.detect(f) for f in frames))
        finally:
            await adapter.aclose()
            await responder.stop()
        assert [a[0].person_id for a in answers] == [f.frame_id for f in frames]
        assert adapter.unknown_answers == 0
        assert adapter.late_answers == 0

    run(main())


def test_timeout_is_honoured_when_the_provider_never_answers() -> None:
    topic = unique_topic()
    silent = RawClient()  # subscribed, so the broker has a subscriber, but mute
    silent.subscribe(topic)

    async def main() -> None:
        adapter = MqttAdapter(config(broker_url(topic), timeout_seconds=0.5))
        try:
            await adapter._link.wait_ready(5)  # connect first: time only the request
            start = time.perf_counter()
            with pytest.raises(TransientProviderError, match="no answer"):
                await adapter.detect(sample_frame())
            elapsed = time.perf_counter() - start
        finally:
            await adapter.aclose()
        assert 0.45 <= elapsed < 1.5  # generous: the machine may be busy
        assert adapter.in_flight == 0

    try:
        run(main())
    finally:
        silent.close()
    (request,) = silent.messages
    assert request.properties is not None
    assert request.properties.MessageExpiryInterval == 1  # ceil(0.5)


def test_no_subscribed_provider_fails_fast_as_transient() -> None:
    async def main() -> None:
        adapter = MqttAdapter(config(broker_url(unique_topic()), timeout_seconds=5.0))
        try:
            start = time.perf_counter()
            with pytest.raises(TransientProviderError, match="no provider is subscribed"):
                await adapter.detect(sample_frame())
            assert time.perf_counter() - start < 2.0
        finally:
            await adapter.aclose()

    run(main())


def test_request_carries_the_mqtt5_request_properties() -> None:
    topic = unique_topic()
    listener = RawClient(lambda raw, msg: raw.reply(msg, b'{"detections": []}'))
    listener.subscribe(topic)

    async def main() -> MqttAdapter:
        adapter = MqttAdapter(config(broker_url(topic), api_key="k-123", timeout_seconds=2.2))
        try:
            assert await adapter.detect(sample_frame()) == []
        finally:
            await adapter.aclose()
        return adapter

    try:
        adapter = run(main())
    finally:
        listener.close()
    (request,) = listener.messages
    props = request.properties
    assert props is not None
    assert props.ResponseTopic == adapter.response_topic
    assert len(props.CorrelationData) == 16
    assert props.MessageExpiryInterval == 3
    assert props.PayloadFormatIndicator == 1
    assert props.ContentType == "application/json"
    assert ("authorization", "Bearer k-123") in props.UserProperty
    assert request.qos == 1


def test_late_answer_is_dropped_and_counted() -> None:
    topic = unique_topic()

    async def main() -> None:
        responder = await serve(echo_handler, topic, latency=0.5)
        adapter = MqttAdapter(config(broker_url(topic), timeout_seconds=0.2))
        try:
            with pytest.raises(TransientProviderError):
                await adapter.detect(sample_frame())
            await wait_until(lambda: adapter.late_answers == 1)
            assert adapter.unknown_answers == 0
        finally:
            await adapter.aclose()
            await responder.stop()
        assert responder.stats.answered == 1  # expiry was 1 s: still in time for it

    run(main())


def test_unknown_correlation_data_is_dropped_and_counted() -> None:
    topic = unique_topic()
    stranger = RawClient()

    async def main() -> None:
        responder = await serve(echo_handler, topic)
        adapter = MqttAdapter(config(broker_url(topic)))
        try:
            await adapter.detect(sample_frame())  # connected and subscribed
            props = publish_properties()
            props.CorrelationData = os.urandom(16)
            props.UserProperty = [("status", "200")]
            await asyncio.to_thread(
                stranger.publish, adapter.response_topic, b'{"detections": []}', props
            )
            await asyncio.to_thread(stranger.publish, adapter.response_topic, b"no correlation")
            await wait_until(lambda: adapter.unknown_answers == 2)
            (raw,) = await adapter.detect(sample_frame(7))  # still works afterwards
            assert raw.person_id == "frame-7"
            assert adapter.late_answers == 0
        finally:
            await adapter.aclose()
            await responder.stop()

    try:
        run(main())
    finally:
        stranger.close()


@pytest.mark.parametrize(
    ("error", "expected", "status"),
    [
        (TransientProviderError("overloaded", status=503), TransientProviderError, 503),
        (TransientProviderError("slow down", status=429), TransientProviderError, 429),
        (PermanentProviderError("bad image", status=400), PermanentProviderError, 400),
        (RuntimeError("boom"), TransientProviderError, 500),
    ],
)
def test_responder_status_decides_transient_or_permanent(
    error: Exception, expected: type[Exception], status: int
) -> None:
    topic = unique_topic()

    def handler(frame: Frame) -> list[RawDetection]:
        raise error

    async def main() -> None:
        responder = await serve(handler, topic)
        adapter = MqttAdapter(config(broker_url(topic)))
        try:
            with pytest.raises(expected) as info:
                await adapter.detect(sample_frame())
        finally:
            await adapter.aclose()
            await responder.stop()
        assert info.value.status == status  # type: ignore[attr-defined]
        assert str(status) in str(info.value)

    run(main())


@pytest.mark.parametrize(
    ("payload", "status", "match"),
    [
        (b"{not json", "200", "not JSON"),
        (b'{"predictions": []}', "200", "no 'detections'"),
        (
            b'{"detections": [{"label": "x", "confidence": "high", "box": [0,0,1,1]}]}',
            "200",
            "confidence",
        ),
        (b'{"detections": []}', "ok", "status 'ok'"),
    ],
)
def test_malformed_answer_is_permanent(payload: bytes, status: str, match: str) -> None:
    topic = unique_topic()
    provider = RawClient(lambda raw, msg: raw.reply(msg, payload, status=status))
    provider.subscribe(topic)

    async def main() -> None:
        adapter = MqttAdapter(config(broker_url(topic)))
        try:
            with pytest.raises(PermanentProviderError, match=match):
                await adapter.detect(sample_frame())
        finally:
            await adapter.aclose()

    try:
        run(main())
    finally:
        provider.close()


def test_api_key_is_checked_by_the_responder() -> None:
    topic = unique_topic()

    async def main() -> None:
        responder = await serve(echo_handler, topic, api_key="s3cret")
        good = MqttAdapter(config(broker_url(topic), api_key="s3cret"))
        wrong = MqttAdapter(config(broker_url(topic), api_key="guess"))
        missing = MqttAdapter(config(broker_url(topic)))
        try:
            assert len(await good.detect(sample_frame())) == 1
            for adapter in (wrong, missing):
                with pytest.raises(PermanentProviderError, match="401"):
                    await adapter.detect(sample_frame())
        finally:
            for adapter in (good, wrong, missing):
                await adapter.aclose()
            await responder.stop()
        assert responder.stats.answered == 1
        assert responder.stats.errors == 2

    run(main())


def test_unreachable_broker_is_transient_and_fails_fast(free_port: int) -> None:
    async def main() -> None:
        adapter = MqttAdapter(config(broker_url(unique_topic(), port=free_port)))
        try:
            start = time.perf_counter()
            with pytest.raises(TransientProviderError, match="broker unavailable"):
                await adapter.detect(sample_frame())
            with pytest.raises(TransientProviderError, match="broker unavailable"):
                await adapter.detect(sample_frame())  # while down: at once, no new wait
            assert time.perf_counter() - start < 2.0  # vs timeout_seconds=5
            probe = await adapter.health()
            assert not probe.ok
            assert probe.error is not None
            assert "broker unavailable" in probe.error
        finally:
            await adapter.aclose()

    run(main())


def test_dropped_connection_fails_waiters_at_once_then_reconnects(free_port: int) -> None:
    topic = unique_topic()

    async def main() -> None:
        proxy = TcpProxy(free_port)
        await proxy.start()
        responder = await serve(echo_handler, topic, latency=3.0)
        adapter = MqttAdapter(config(broker_url(topic, port=free_port), timeout_seconds=10))
        try:
            await adapter._link.wait_ready(5)
            waiting = asyncio.ensure_future(adapter.detect(sample_frame()))
            await wait_until(lambda: responder.stats.received == 1)
            start = time.perf_counter()
            await proxy.cut()
            with pytest.raises(TransientProviderError, match="broker unavailable"):
                await waiting
            assert time.perf_counter() - start < 2.0  # vs timeout_seconds=10
            with pytest.raises(TransientProviderError, match="broker unavailable"):
                await adapter.detect(sample_frame())
            await proxy.start()  # the broker is back: paho reconnects with backoff
            await wait_until(lambda: adapter._link.ready, timeout=5.0)
            responder.latency = 0.0
            (raw,) = await adapter.detect(sample_frame(3))
            assert raw.person_id == "frame-3"
        finally:
            await adapter.aclose()
            await responder.stop()
            await proxy.cut()

    run(main())


def test_aclose_is_idempotent_and_fails_pending_waiters() -> None:
    topic = unique_topic()
    silent = RawClient()
    silent.subscribe(topic)

    async def main() -> None:
        adapter = MqttAdapter(config(broker_url(topic)))
        await adapter._link.wait_ready(5)
        waiting = asyncio.ensure_future(adapter.detect(sample_frame()))
        await wait_until(lambda: len(silent.messages) == 1)
        await adapter.aclose()
        await adapter.aclose()
        with pytest.raises(TransientProviderError, match="closed"):
            await waiting
        with pytest.raises(PermanentProviderError, match="closed"):
            await adapter.detect(sample_frame())

    try:
        run(main())
    finally:
        silent.close()


def test_aclose_before_any_use_closes_it_for_good() -> None:
    async def main() -> None:
        adapter = MqttAdapter(config(broker_url(unique_topic())))
        await adapter.aclose()
        await adapter.aclose()
        with pytest.raises(PermanentProviderError, match="closed"):
            await adapter.detect(sample_frame())

    run(main())


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/x", "mqtt://127.0.0.1:1883/", "mqtt://127.0.0.1/a/+/b", "mqtt:///topic"],
)
def test_bad_endpoint_url_is_a_clear_permanent_error(url: str) -> None:
    with pytest.raises(PermanentProviderError, match="MQTT"):
        MqttAdapter(config(url))


def test_registered_through_the_provider_types_hook() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(pm)
    registry.load_module(
        "detectflow.adapters.mqtt", name="mqtt", package="detectflow", version="test"
    )
    assert registry.failures == []
    assert registry.provider_types()["mqtt"] is MqttAdapter
    adapter = registry.create_adapter(config(broker_url(unique_topic())))
    assert isinstance(adapter, MqttAdapter)
    run(adapter.aclose())


def test_retries_through_run_frame_until_the_provider_recovers() -> None:
    topic = unique_topic()
    calls: list[str] = []

    def flaky(frame: Frame) -> list[RawDetection]:
        calls.append(frame.frame_id)
        if len(calls) < 3:
            raise TransientProviderError("warming up", status=503)
        return echo_handler(frame)

    async def main() -> None:
        responder = await serve(flaky, topic)
        adapter = MqttAdapter(config(broker_url(topic)))
        try:
            policy = RetryPolicy(max_retries=3, base_seconds=0.01)
            result = await run_frame(sample_frame(), adapter, retry=policy)
        finally:
            await adapter.aclose()
            await responder.stop()
        assert result.ok, result.error
        assert result.attempts == 3

    run(main())
