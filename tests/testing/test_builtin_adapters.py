"""The built-in adapters pass the conformance kit, each against a real provider on loopback.

The healthy HTTP provider is detectflow's Simulator (both dialects); the gRPC
and MQTT ones answer with :func:`tests.testing.doubles.answer_for`. Both are
deterministic per frame. The faults are the kit's own fault server, or the
protocol's provider side made to fail the same way (a handler that hangs,
raises a transient or permanent error, or answers bytes that are no answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.core.models import Frame, ProviderConfig, RawDetection
from detectflow.testing import AdapterConformance, BackgroundLoop, ConformanceTarget
from detectflow.testing.faults import HttpFaultServer
from tests.testing import doubles


def _config(provider_type: str, url: str, timeout: float, **options: Any) -> ProviderConfig:
    return ProviderConfig(
        id=f"conformance-{provider_type}",
        provider_name=f"conformance {provider_type}",
        provider_type=provider_type,
        endpoint_url=url,
        timeout_seconds=timeout,
        confidence_threshold=0.0,
        options=options,
    )


async def _hang(frame: Frame) -> list[RawDetection]:
    await asyncio.sleep(60)
    return []


def _raise(error: Exception) -> Callable[[Frame], list[RawDetection]]:
    def handler(frame: Frame) -> list[RawDetection]:
        raise error

    return handler


def _three_box_numbers(frame: Frame) -> list[RawDetection]:
    return [RawDetection("person", 0.9, (0.1, 0.2, 0.3))]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def faults() -> Iterator[HttpFaultServer]:
    with HttpFaultServer() as server:
        yield server


@pytest.fixture(scope="module")
def background() -> Iterator[BackgroundLoop]:
    with BackgroundLoop() as loop:
        yield loop


# -- gRPC --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[False, True], ids=["unary", "stream"])
def grpc_target(
    request: pytest.FixtureRequest, background: BackgroundLoop, faults: HttpFaultServer
) -> Iterator[ConformanceTarget]:
    from detectflow.adapters.grpc import GrpcAdapter, GrpcProviderServer

    handlers = {
        "healthy": doubles.healthy,
        "slow": _hang,
        "transient_fault": _raise(TransientProviderError("busy")),
        "permanent_fault": _raise(PermanentProviderError("refused")),
        "malformed_answer": _three_box_numbers,
    }
    servers = {name: GrpcProviderServer(handler) for name, handler in handlers.items()}
    for server in servers.values():
        background.run(server.start())

    def adapter(url: str) -> Callable[[float], GrpcAdapter]:
        return lambda timeout: GrpcAdapter(_config("grpc", url, timeout, stream=request.param))

    try:
        yield ConformanceTarget(
            **{name: adapter(server.url) for name, server in servers.items()},
            unreachable=adapter(f"grpc://127.0.0.1:{faults.refused_port}"),
        )
    finally:
        for server in servers.values():
            background.run(server.stop())


class TestGrpcAdapterConformance(AdapterConformance):
    @pytest.fixture
    def detectflow_target(self, grpc_target: ConformanceTarget) -> ConformanceTarget:
        return grpc_target


# -- MQTT --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mqtt_target(background: BackgroundLoop, faults: HttpFaultServer) -> Iterator[ConformanceTarget]:
    from detectflow.adapters.mqtt import MqttAdapter
    from detectflow.adapters.mqtt_responder import MqttResponder
    from tests.adapters.mqtt_support import RawClient, broker_url, unique_topic

    handlers = {
        "healthy": doubles.healthy,
        "slow": _hang,
        "transient_fault": _raise(TransientProviderError("busy")),
        "permanent_fault": _raise(PermanentProviderError("refused")),
    }
    urls = {name: broker_url(unique_topic(name)) for name in handlers}
    responders = [MqttResponder(handlers[name], url=urls[name]) for name in handlers]
    for responder in responders:
        background.run(responder.start())
    garbage_topic = unique_topic("garbage")
    garbage = RawClient(lambda raw, msg: raw.reply(msg, b"{not json", status="200"))
    garbage.subscribe(garbage_topic)

    def adapter(url: str) -> Callable[[float], MqttAdapter]:
        return lambda timeout: MqttAdapter(_config("mqtt", url, timeout))

    try:
        yield ConformanceTarget(
            **{name: adapter(url) for name, url in urls.items()},
            malformed_answer=adapter(broker_url(garbage_topic)),
            unreachable=adapter(f"mqtt://127.0.0.1:{faults.refused_port}/detect"),
        )
    finally:
        garbage.close()
        for responder in responders:
            background.run(responder.stop())


@pytest.mark.mqtt
class TestMqttAdapterConformance(AdapterConformance):
    @pytest.fixture
    def detectflow_target(self, mqtt_target: ConformanceTarget) -> ConformanceTarget:
        return mqtt_target


# -- HTTP --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["detectflow", "deepstack"])
def http_target(
    request: pytest.FixtureRequest, background: BackgroundLoop, faults: HttpFaultServer
) -> Iterator[ConformanceTarget]:
    from detectflow.adapters.http import HttpAdapter
    from detectflow.simulator import Simulator

    dialect = request.param
    simulator = Simulator()
    background.run(simulator.start())
    # the deepstack dialect posts to the full URL it is given; keep its usual path
    path = "/v1/vision/detection" if dialect == "deepstack" else "/detect"

    def adapter(url: str) -> Callable[[float], HttpAdapter]:
        return lambda timeout: HttpAdapter(_config("http_api", url, timeout, dialect=dialect))

    try:
        yield ConformanceTarget(
            healthy=adapter(simulator.detect_url(dialect)),
            slow=adapter(faults.slow_url + path),
            transient_fault=adapter(faults.status_url(503) + path),
            permanent_fault=adapter(faults.status_url(400) + path),
            malformed_answer=adapter(faults.garbage_url + path),
            unreachable=adapter(faults.refused_url + path),
        )
    finally:
        background.run(simulator.stop())


class TestHttpAdapterConformance(AdapterConformance):
    @pytest.fixture
    def detectflow_target(self, http_target: ConformanceTarget) -> ConformanceTarget:
        return http_target
