"""The simulated provider, over real HTTP on loopback."""

from __future__ import annotations

import base64
import random
import socket
import time
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from detectflow.core.frames import make_frame
from detectflow.core.images import encode_png
from detectflow.core.models import Frame
from detectflow.simulator import (
    LABELS,
    Simulator,
    SimulatorStats,
    run_in_thread,
    simulate,
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
    result = CliRunner().invoke(simulate, ["--protocol", "grpc"])
    assert result.exit_code == 2
    assert "grpc" in result.output


def test_command_reports_a_port_in_use_without_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(simulate, ["--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
