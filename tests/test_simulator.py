"""The simulated provider, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from detectflow.adapters.grpc.adapter import GrpcAdapter
from detectflow.adapters.grpc.server import GrpcProviderServer
from detectflow.adapters.http import HttpAdapter
from detectflow.adapters.mqtt import MqttAdapter
from detectflow.adapters.mqtt_responder import MqttResponder
from detectflow.cli.simulate import simulate
from detectflow.core.adapter import ProviderAdapter
from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.core.frames import make_frame
from detectflow.core.images import encode_png
from detectflow.core.models import Frame, ProviderConfig, RawDetection
from detectflow.simulator import (
    LABELS,
    SimulatedHandler,
    Simulator,
    SimulatorStats,
    run_in_thread,
    simulate_detections,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def png(n: int = 0, width: int = 40, height: int = 30) -> bytes:
    rng = random.Random(n)
    return encode_png(width, height, bytes(rng.randrange(256) for _ in range(width * height * 3)))


def sample_frame(n: int = 0) -> Frame:
    return make_frame("cam-1", png(n), max_bytes=1 << 20, frame_number=n)


def detectflow_body(image: bytes, min_confidence: float = 0.0) -> dict[str, Any]:
    return {
        "camera_id": "cam-1",
        "frame_id": "f",
        "frame_number": 1,
        "timestamp": "2025-11-05T12:34:56Z",
        "image": base64.b64encode(image).decode(),
        "width": 40,
        "height": 30,
        "min_confidence": min_confidence,
    }


async def post_detectflow(
    client: httpx.AsyncClient, sim: Simulator, image: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        sim.detect_url("detectflow"), json=detectflow_body(image), headers=headers
    )


async def post_deepstack(
    client: httpx.AsyncClient,
    sim: Simulator,
    image: bytes,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    return await client.post(
        sim.detect_url("deepstack"),
        headers=headers,
        files={"image": ("frame.png", image, "image/png")},
        data={"min_confidence": "0.0", **fields},
    )


# -- determinism and shapes --------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(1, 5000), st.integers(1, 5000))
def test_detections_are_valid_and_a_pure_function_of_the_bytes(
    image: bytes, width: int, height: int
) -> None:
    found = simulate_detections(image, width, height)
    assert found == simulate_detections(image, width, height)
    assert 1 <= len(found) <= 3
    assert found[0].confidence >= 0.6
    for d in found:
        assert d.label in LABELS
        assert 0.3 <= d.confidence <= 0.99
        assert 0 <= d.x_min < d.x_max <= width
        assert 0 <= d.y_min < d.y_max <= height


def test_different_images_get_different_detections() -> None:
    answers = {tuple(simulate_detections(png(n), 40, 30)) for n in range(50)}
    assert len(answers) > 40


async def test_same_bytes_get_the_same_answer_from_any_simulator() -> None:
    image = png(1)
    bodies = []
    for seed in (0, 99):
        async with Simulator(seed=seed) as sim, httpx.AsyncClient() as client:
            for _ in range(2):
                bodies.append((await post_detectflow(client, sim, image)).json())
    assert all(body == bodies[0] for body in bodies)


async def test_detectflow_dialect_answers_fractions() -> None:
    image = png(2)
    async with Simulator() as sim, httpx.AsyncClient() as client:
        response = await post_detectflow(client, sim, image)
    assert response.status_code == 200
    expected = [d.fractions(40, 30) for d in simulate_detections(image, 40, 30)]
    detections = response.json()["detections"]
    assert [d["box"] for d in detections] == expected
    for d in detections:
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        assert (d["format"], d["units"]) == ("xyxy", "fraction")


async def test_deepstack_dialect_answers_integer_pixels_with_codeproject_fields() -> None:
    image = png(3)
    async with Simulator() as sim, httpx.AsyncClient() as client:
        response = await post_deepstack(client, sim, image)
    body = response.json()
    assert response.status_code == 200
    assert body["success"] is True
    assert {"message", "count", "inferenceMs", "processMs", "moduleId"} <= body.keys()
    expected = simulate_detections(image, 40, 30)
    assert [
        (p["label"], p["x_min"], p["y_min"], p["x_max"], p["y_max"]) for p in body["predictions"]
    ] == [(d.label, d.x_min, d.y_min, d.x_max, d.y_max) for d in expected]
    assert all(isinstance(p["x_min"], int) for p in body["predictions"])


async def test_min_confidence_is_honoured() -> None:
    images = [png(n) for n in range(20)]
    async with Simulator() as sim, httpx.AsyncClient() as client:
        for image in images:
            body = detectflow_body(image, min_confidence=0.8)
            response = await client.post(sim.detect_url("detectflow"), json=body)
            kept = [d["confidence"] for d in response.json()["detections"]]
            expected = [d.confidence for d in simulate_detections(image, 40, 30)]
            assert kept == [c for c in expected if c >= 0.8]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"image": base64.b64encode(b"not an image").decode()}, "not a JPEG, PNG or WebP"),
        ({"image": "%%%"}, "detectflow JSON shape"),
        ({"camera_id": "x"}, "detectflow JSON shape"),
        ([1, 2], "detectflow JSON shape"),
    ],
)
async def test_bad_requests_get_400_with_a_reason(body: Any, reason: str) -> None:
    async with Simulator() as sim, httpx.AsyncClient() as client:
        response = await client.post(sim.detect_url("detectflow"), json=body)
        assert sim.stats.bad_requests == 1
    assert response.status_code == 400
    assert reason in response.json()["error"]


async def test_deepstack_without_an_image_gets_400() -> None:
    async with Simulator() as sim, httpx.AsyncClient() as client:
        response = await client.post(sim.detect_url("deepstack"), data={"min_confidence": "0.4"})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "no image file in field 'image'"}


# -- faults ---------------------------------------------------------------------------


async def test_error_rate_follows_the_seeded_rng() -> None:
    rng = random.Random(7)
    expected = [rng.random() < 0.3 for _ in range(60)]
    async with Simulator(error_rate=0.3, seed=7) as sim, httpx.AsyncClient() as client:
        got = [(await post_detectflow(client, sim, png(1))).status_code == 503 for _ in range(60)]
        assert sim.stats.errors == sum(expected)
    assert got == expected
    assert 5 < sum(got) < 40


async def test_timeout_rate_hangs_past_the_clients_timeout_and_stop_releases_it() -> None:
    sim = Simulator(timeout_rate=1.0, hang_seconds=60)
    await sim.start()
    try:
        async with httpx.AsyncClient(timeout=0.3) as client:
            with pytest.raises(httpx.ReadTimeout):
                await post_detectflow(client, sim, png(1))
        assert sim.stats.timeouts == 1
    finally:
        start = time.perf_counter()
        await sim.stop()
    assert time.perf_counter() - start < 3


async def test_malformed_rate_answers_invalid_json() -> None:
    async with Simulator(malformed_rate=1.0) as sim, httpx.AsyncClient() as client:
        response = await post_detectflow(client, sim, png(1))
        assert sim.stats.malformed == 1
    assert response.status_code == 200
    with pytest.raises(ValueError, match=r"Expecting|Unterminated"):
        response.json()


async def test_fail_first_fails_each_frame_n_times_then_answers() -> None:
    async with Simulator(fail_first=2) as sim, httpx.AsyncClient() as client:
        a = [(await post_deepstack(client, sim, png(1))).status_code for _ in range(3)]
        b = [(await post_detectflow(client, sim, png(2))).status_code for _ in range(3)]
        stats = sim.stats
    assert a == [503, 503, 200]
    assert b == [503, 503, 200]
    assert (stats.failed_first, stats.answered, stats.requests) == (4, 2, 6)


@pytest.mark.parametrize("dialect", ["detectflow", "deepstack"])
async def test_api_key_required_when_set(dialect: str) -> None:
    image = png(4)
    async with Simulator(api_key="k1") as sim, httpx.AsyncClient() as client:
        post = post_detectflow if dialect == "detectflow" else post_deepstack
        missing = await post(client, sim, image)
        wrong = await post(client, sim, image, {"Authorization": "Bearer nope"})
        bearer = await post(client, sim, image, {"Authorization": "Bearer k1"})
        assert sim.stats.unauthorized == 2
    assert (missing.status_code, wrong.status_code, bearer.status_code) == (401, 401, 200)


async def test_deepstack_api_key_form_field_is_accepted() -> None:
    async with Simulator(api_key="k1") as sim, httpx.AsyncClient() as client:
        wrong = await post_deepstack(client, sim, png(1), api_key="nope")
        right = await post_deepstack(client, sim, png(1), api_key="k1")
    assert (wrong.status_code, right.status_code) == (401, 200)


async def test_latency_delays_answers() -> None:
    async with Simulator(latency=0.2) as sim, httpx.AsyncClient() as client:
        start = time.perf_counter()
        response = await post_detectflow(client, sim, png(1))
        elapsed = time.perf_counter() - start
    assert response.status_code == 200
    assert 0.2 <= elapsed < 1.0


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"error_rate": 1.5}, "error_rate must be within"),
        ({"error_rate": 0.6, "malformed_rate": 0.6}, "must not exceed 1"),
        ({"latency": -1}, "latency"),
        ({"fail_first": -1}, "fail_first"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Simulator(**kwargs)


# -- endpoints, stats, hosting ----------------------------------------------------------


async def test_ping_health_and_stats_endpoints() -> None:
    async with Simulator(fail_first=1) as sim, httpx.AsyncClient() as client:
        await post_detectflow(client, sim, png(1))
        await post_detectflow(client, sim, png(1))
        ping = await client.get(sim.url + "/v1/server/status/ping")
        health = await client.get(sim.url + "/health")
        stats = (await client.get(sim.url + "/stats")).json()
    assert ping.json() == {"success": True}
    assert health.json()["status"] == "ok"
    assert stats == {**vars(SimulatorStats()), "requests": 2, "answered": 1, "failed_first": 1}


def test_url_before_start_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = Simulator().url


def test_run_in_thread_serves_synchronous_code_and_stops() -> None:
    handle = run_in_thread(Simulator())
    with handle:
        response = httpx.post(handle.detect_url("detectflow"), json=detectflow_body(png(5)))
        assert response.status_code == 200
        assert handle.simulator.stats.answered == 1
        port = handle.simulator.port
    handle.stop()  # idempotent
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))


def test_run_in_thread_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=r"in use"):
            run_in_thread(Simulator(port=port))


# -- the command ------------------------------------------------------------------------


def test_command_help_says_it_is_a_simulator() -> None:
    result = CliRunner().invoke(simulate, ["--help"])
    assert result.exit_code == 0
    assert "SIMULATED detection provider" in result.output
    assert "NOT a detector" in result.output
    for option in ("--latency", "--error-rate", "--fail-first", "--api-key", "--protocol"):
        assert option in result.output


def test_command_refuses_rates_over_one_in_total() -> None:
    result = CliRunner().invoke(simulate, ["--error-rate", "0.7", "--timeout-rate", "0.5"])
    assert result.exit_code == 2
    assert "must not exceed 1" in result.output


def test_command_refuses_an_unknown_protocol() -> None:
    result = CliRunner().invoke(simulate, ["--protocol", "carrier-pigeon"])
    assert result.exit_code == 2
    assert "'http', 'grpc', 'mqtt'" in result.output


def test_command_reports_a_port_in_use_without_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(simulate, ["--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


# -- the same answers over gRPC and MQTT ------------------------------------------------

MQTT_HOST_PORT = "127.0.0.1:1883"


def adapter_config(kind: str, url: str, **options: Any) -> ProviderConfig:
    return ProviderConfig(
        id=kind,
        provider_name=kind,
        provider_type=kind,
        endpoint_url=url,
        timeout_seconds=5,
        confidence_threshold=0.0,
        options=options,
    )


async def answers(adapter: ProviderAdapter, frames: list[Frame]) -> list[list[RawDetection]]:
    async with adapter:
        return [await adapter.detect(frame) for frame in frames]


def mqtt_url() -> str:
    return f"mqtt://{MQTT_HOST_PORT}/detectflow-test/{uuid.uuid4().hex}/detect"


@pytest.mark.mqtt
async def test_http_grpc_and_mqtt_answer_identically_for_the_same_bytes() -> None:
    frames = [sample_frame(n) for n in range(6)]
    async with Simulator() as sim:
        http = await answers(HttpAdapter(adapter_config("http_api", sim.detect_url())), frames)
    async with GrpcProviderServer(SimulatedHandler(seed=5)) as server:
        grpc = await answers(GrpcAdapter(adapter_config("grpc", server.url)), frames)
    url = mqtt_url()
    async with MqttResponder(SimulatedHandler(seed=9), url=url):
        mqtt = await answers(MqttAdapter(adapter_config("mqtt", url)), frames)
    assert len({len(a) for a in http}) > 1, "the frames get different answers"
    for h, g, m in zip(http, grpc, mqtt, strict=True):
        assert [(d.label, d.confidence) for d in h] == [(d.label, d.confidence) for d in g]
        assert [(d.label, d.confidence) for d in h] == [(d.label, d.confidence) for d in m]
        for a, b, c in zip(h, g, m, strict=True):
            assert b.box == pytest.approx(a.box)
            assert c.box == pytest.approx(a.box)
            assert a.box_format == b.box_format == c.box_format == "xyxy"
            assert a.units == b.units == c.units == "fraction"


async def test_handler_error_rate_and_fail_first_raise_transient_503() -> None:
    frame = sample_frame(3)
    failing = SimulatedHandler(error_rate=1.0)
    with pytest.raises(TransientProviderError, match="simulated provider error") as caught:
        await failing(frame)
    assert caught.value.status == 503 and failing.stats.errors == 1
    flaky = SimulatedHandler(fail_first=2)
    for attempt in (1, 2):
        with pytest.raises(TransientProviderError, match=f"simulated failure {attempt} of 2"):
            await flaky(frame)
    assert await flaky(frame) == await SimulatedHandler()(frame)
    assert flaky.stats == SimulatorStats(requests=3, answered=1, failed_first=2)


async def test_handler_error_rate_follows_the_seeded_rng() -> None:
    async def outcomes(seed: int) -> list[bool]:
        handler = SimulatedHandler(error_rate=0.5, seed=seed)
        result = []
        for n in range(40):
            try:
                await handler(sample_frame(n))
                result.append(True)
            except TransientProviderError:
                result.append(False)
        return result

    first = await outcomes(7)
    assert first == await outcomes(7)
    assert 5 < first.count(False) < 35


async def test_handler_timeout_rate_hangs() -> None:
    handler = SimulatedHandler(timeout_rate=1.0, hang_seconds=30)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await handler(sample_frame())
    assert handler.stats.timeouts == 1 and handler.stats.answered == 0


async def test_handler_refuses_a_frame_without_a_size() -> None:
    frame = make_frame("cam-1", b"\xff\xd8\xff\xe0 not really a jpeg", max_bytes=1 << 20)
    handler = SimulatedHandler()
    if frame.width:  # pragma: no cover - make_frame read a size from garbage
        pytest.fail("expected a frame without a readable size")
    with pytest.raises(PermanentProviderError, match="width and height"):
        await handler(frame)
    assert handler.stats.bad_requests == 1


def test_handler_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="must not exceed 1"):
        SimulatedHandler(error_rate=0.6, timeout_rate=0.6)
    with pytest.raises(ValueError, match=">= 0"):
        SimulatedHandler(fail_first=-1)


async def test_grpc_simulator_honours_the_api_key() -> None:
    async with GrpcProviderServer(SimulatedHandler(), api_key="k") as server:
        wrong = GrpcAdapter(ProviderConfig("g", "g", "grpc", server.url, api_key="nope"))
        right = GrpcAdapter(ProviderConfig("g", "g", "grpc", server.url, api_key="k"))
        with pytest.raises(PermanentProviderError):
            await answers(wrong, [sample_frame()])
        assert len((await answers(right, [sample_frame()]))[0]) >= 1


# -- the command, over gRPC and MQTT, in a real subprocess ----------------------------


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start ``detectflow simulate ...``; yields the endpoint_url it prints."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> str:
        process = subprocess.Popen(
            [sys.executable, "-c", "from detectflow.cli import main; main()", "simulate", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        for line in process.stdout:
            if "endpoint_url:" in line:
                return line.split("endpoint_url:", 1)[1].strip()
        raise AssertionError(f"simulate printed no endpoint_url: {process.stderr.read()}")  # type: ignore[union-attr]

    yield start
    for process in started:
        process.terminate()
        process.communicate(timeout=10)


async def test_command_serves_grpc(serve: Any) -> None:
    url = serve("--protocol", "grpc", "--port", "0", "--api-key", "k")
    assert url.startswith("grpc://127.0.0.1:")
    config = replace(adapter_config("grpc", url), api_key="k")
    found = await answers(GrpcAdapter(config), [sample_frame(1)])
    assert found == [await SimulatedHandler()(sample_frame(1))]


@pytest.mark.mqtt
async def test_command_serves_mqtt(serve: Any) -> None:
    url = serve("--protocol", "mqtt", "--mqtt-url", mqtt_url(), "--fail-first", "1")
    adapter = MqttAdapter(adapter_config("mqtt", url))
    async with adapter:
        with pytest.raises(TransientProviderError, match="simulated failure 1 of 1"):
            await adapter.detect(sample_frame(2))
        assert await adapter.detect(sample_frame(2)) == await SimulatedHandler()(sample_frame(2))


def test_command_refuses_malformed_rate_outside_http() -> None:
    result = CliRunner().invoke(simulate, ["--protocol", "grpc", "--malformed-rate", "0.1"])
    assert result.exit_code == 2
    assert "--malformed-rate applies to --protocol http only" in result.output


def test_command_refuses_a_bad_mqtt_url() -> None:
    result = CliRunner().invoke(simulate, ["--protocol", "mqtt", "--mqtt-url", "mqtt://h:1883/"])
    assert result.exit_code == 2
    assert "--mqtt-url" in result.output and "no topic" in result.output


def test_command_reports_an_unreachable_broker_without_a_traceback(free_port: int) -> None:
    url = f"mqtt://127.0.0.1:{free_port}/detectflow/detect"
    result = CliRunner().invoke(simulate, ["--protocol", "mqtt", "--mqtt-url", url])
    assert result.exit_code == 1
    assert f"broker unavailable: cannot connect to 127.0.0.1:{free_port}" in result.output
    assert "Traceback" not in result.output


def test_command_reports_a_grpc_port_in_use_without_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(simulate, ["--protocol", "grpc", "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
