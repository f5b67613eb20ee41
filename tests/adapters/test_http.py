"""The http_api adapter against real servers on loopback: the simulator for both
dialects, and small purpose-built aiohttp servers for each fault."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from detectflow.adapters._http_dialects import decode_deepstack, decode_detectflow
from detectflow.adapters.http import HttpAdapter
from detectflow.core.errors import PermanentProviderError, ProviderError, TransientProviderError
from detectflow.core.frames import make_frame
from detectflow.core.images import encode_png
from detectflow.core.models import BBox, Frame, ProviderConfig, RawDetection
from detectflow.core.normalize import normalize_detections
from detectflow.core.pipeline import RetryPolicy, run_frame
from detectflow.core.plugins import get_registry
from detectflow.simulator import Simulator, simulate_detections

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(max_retries=3, base_seconds=0.001, max_seconds=0.01)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_test_frame(n: int = 0, width: int = 64, height: int = 48) -> Frame:
    rng = random.Random(n)
    rgb = bytes(rng.randrange(256) for _ in range(width * height * 3))
    return make_frame("cam-1", encode_png(width, height, rgb), max_bytes=1 << 20, frame_number=n)


def config(url: str, **changes: Any) -> ProviderConfig:
    values: dict[str, Any] = {
        "id": "p1",
        "provider_name": "test",
        "provider_type": "http_api",
        "endpoint_url": url,
        "timeout_seconds": 5.0,
        "confidence_threshold": 0.25,
    }
    values.update(changes)
    return ProviderConfig(**values)


@contextlib.asynccontextmanager
async def serve(*routes: web.RouteDef) -> AsyncIterator[str]:
    """A purpose-built aiohttp.web server on loopback; yields its base URL."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def answer(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def expected_fractions(frame: Frame, threshold: float = 0.25) -> list[tuple[str, list[float]]]:
    assert frame.width and frame.height
    return [
        (d.label, d.fractions(frame.width, frame.height))
        for d in simulate_detections(frame.image, frame.width, frame.height)
        if d.confidence >= threshold
    ]


# -- both dialects against the simulator -------------------------------------


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_detectflow_dialect_returns_the_simulators_fractions(transport: str) -> None:
    frame = make_test_frame(1)
    async with Simulator() as sim:
        cfg = config(sim.detect_url("detectflow"), options={"transport": transport})
        async with HttpAdapter(cfg) as adapter:
            raws = await adapter.detect(frame)
    assert [(r.label, list(r.box)) for r in raws] == expected_fractions(frame)
    assert all(r.units == "fraction" and r.box_format == "xyxy" for r in raws)


async def test_deepstack_dialect_returns_pixels_that_normalize_like_detectflow() -> None:
    frame = make_test_frame(2)
    async with Simulator() as sim:
        deep = HttpAdapter(config(sim.detect_url("deepstack"), options={"dialect": "deepstack"}))
        plain = HttpAdapter(config(sim.detect_url("detectflow")))
        async with deep, plain:
            pixel_raws = await deep.detect(frame)
            fraction_raws = await plain.detect(frame)
    assert pixel_raws
    assert all(r.units == "pixel" and r.box == tuple(map(int, r.box)) for r in pixel_raws)
    from_pixels = normalize_detections(frame, pixel_raws).detections
    from_fractions = normalize_detections(frame, fraction_raws).detections
    assert [d.bbox for d in from_pixels] == pytest.approx([d.bbox for d in from_fractions])


async def test_100_concurrent_detects_each_get_their_own_frames_answer() -> None:
    frames = [make_test_frame(n, width=32, height=24) for n in range(100)]
    async with Simulator(latency=0.01) as sim:
        async with HttpAdapter(config(sim.detect_url("detectflow"))) as adapter:
            results = await asyncio.gather(*(adapter.detect(f) for f in frames))
        assert sim.stats.answered == 100
    for frame, raws in zip(frames, results, strict=True):
        assert [(r.label, list(r.box)) for r in raws] == expected_fractions(frame)
    assert len({tuple(r.box for r in raws) for raws in results}) > 50  # answers differ


async def test_retries_through_run_frame_complete_a_frame_that_fails_first() -> None:
    frame = make_test_frame(3)
    async with Simulator(fail_first=2) as sim:
        async with HttpAdapter(config(sim.detect_url("detectflow"))) as adapter:
            result = await run_frame(frame, adapter, retry=FAST_RETRY)
        assert sim.stats.failed_first == 2
    assert result.ok, result.error
    assert result.attempts == 3
    assert [d.label for d in result.detections] == [label for label, _ in expected_fractions(frame)]


async def test_a_frame_failing_more_often_than_retries_allow_fails_transiently() -> None:
    frame = make_test_frame(4)
    async with (
        Simulator(fail_first=10) as sim,
        HttpAdapter(
            config(sim.detect_url("deepstack"), options={"dialect": "deepstack"})
        ) as adapter,
    ):
        result = await run_frame(frame, adapter, retry=FAST_RETRY)
    assert not result.ok
    assert result.attempts == 4
    assert result.error is not None
    assert "transient" in result.error and "503" in result.error


@pytest.mark.parametrize("dialect", ["detectflow", "deepstack"])
async def test_wrong_api_key_against_the_simulator_is_permanent_401(dialect: str) -> None:
    async with Simulator(api_key="right") as sim:
        cfg = config(sim.detect_url(dialect), api_key="wrong", options={"dialect": dialect})
        async with HttpAdapter(cfg) as adapter:
            with pytest.raises(PermanentProviderError, match="401") as caught:
                await adapter.detect(make_test_frame())
    assert caught.value.status == 401


@pytest.mark.parametrize("dialect", ["detectflow", "deepstack"])
async def test_right_api_key_against_the_simulator_is_accepted(dialect: str) -> None:
    async with Simulator(api_key="right") as sim:
        cfg = config(sim.detect_url(dialect), api_key="right", options={"dialect": dialect})
        async with HttpAdapter(cfg) as adapter:
            assert await adapter.detect(make_test_frame())


# -- wire format details -------------------------------------------------------


async def test_detectflow_request_carries_the_documented_fields() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return answer({"detections": []})

    frame = make_test_frame(5)
    async with (
        serve(web.post("/detect", handler)) as base,
        HttpAdapter(config(base + "/detect", confidence_threshold=0.7)) as adapter,
    ):
        assert await adapter.detect(frame) == []
    (body,) = seen
    assert body["camera_id"] == "cam-1"
    assert body["frame_id"] == frame.frame_id
    assert body["frame_number"] == 5
    assert body["timestamp"].endswith("Z")
    assert base64.b64decode(body["image"]) == frame.image
    assert (body["width"], body["height"]) == (64, 48)
    assert body["min_confidence"] == 0.7


async def test_detectflow_answer_ignores_unknown_fields_and_keeps_format_and_units() -> None:
    async def handler(request: web.Request) -> web.Response:
        return answer(
            {
                "model": "v9",
                "detections": [
                    {
                        "label": "face",
                        "confidence": 0.8,
                        "box": [16, 12, 32, 24],
                        "format": "xywh",
                        "units": "pixel",
                        "person_id": "p-7",
                        "person_name": "Ada",
                        "embedding": [0.1, 0.2],
                    }
                ],
            }
        )

    frame = make_test_frame(6)
    async with (
        serve(web.post("/detect", handler)) as base,
        HttpAdapter(config(base + "/detect")) as adapter,
    ):
        result = await run_frame(frame, adapter)
    (detection,) = result.detections
    assert detection.bbox == BBox(x=0.25, y=0.25, width=0.5, height=0.5)
    assert (detection.person_id, detection.person_name) == ("p-7", "Ada")
    assert detection.detection_type == "face"


async def test_deepstack_pixels_with_codeproject_fields_normalize_to_fractions() -> None:
    forms: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        form = await request.post()
        image = form["image"]
        assert isinstance(image, web.FileField)
        forms.append(
            {
                "image": image.file.read(),
                "content_type": image.content_type,
                "min_confidence": form.get("min_confidence"),
                "api_key": form.get("api_key"),
            }
        )
        return answer(
            {
                "success": True,
                "message": "Found person, car",
                "count": 2,
                "predictions": [
                    {
                        "label": "person",
                        "confidence": 0.91,
                        "x_min": 16,
                        "y_min": 12,
                        "x_max": 48,
                        "y_max": 48,
                    },
                    {
                        "label": "car",
                        "confidence": 0.5,
                        "x_min": 0,
                        "y_min": 0,
                        "x_max": 64,
                        "y_max": 24,
                        "mask": None,
                    },
                ],
                "inferenceMs": 12,
                "processMs": 15,
                "moduleId": "ObjectDetectionYOLOv5-6.2",
                "moduleName": "Object Detection (YOLOv5 6.2)",
                "command": "detect",
                "requestId": "abc",
                "inferenceDevice": "CPU",
                "analysisRoundTripMs": 20,
            }
        )

    frame = make_test_frame(7)
    async with serve(web.post("/v1/vision/detection", handler)) as base:
        cfg = config(base + "/v1/vision/detection", options={"dialect": "deepstack"})
        async with HttpAdapter(cfg) as adapter:
            result = await run_frame(frame, adapter)
    assert result.ok, result.error
    assert [d.bbox for d in result.detections] == [
        BBox(x=0.25, y=0.25, width=0.5, height=0.75),
        BBox(x=0.0, y=0.0, width=1.0, height=0.5),
    ]
    assert [d.detection_type for d in result.detections] == ["person", "vehicle"]
    (form,) = forms
    assert form["image"] == frame.image
    assert form["content_type"] == "image/png"
    assert float(form["min_confidence"]) == 0.25
    assert form["api_key"] is None  # no key configured, no field sent


@pytest.mark.parametrize("dialect", ["detectflow", "deepstack"])
async def test_api_key_is_sent_as_a_bearer_token(dialect: str) -> None:
    seen: list[tuple[str | None, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        form_key = (await request.post()).get("api_key") if dialect == "deepstack" else None
        seen.append((request.headers.get("Authorization"), form_key))
        if request.headers.get("Authorization") != "Bearer s3cret":
            return answer({"error": "no"}, status=401)
        return answer({"success": True, "predictions": [], "detections": []})

    async with serve(web.post("/x", handler)) as base:
        cfg = config(base + "/x", api_key="s3cret", options={"dialect": dialect})
        async with HttpAdapter(cfg) as adapter:
            assert await adapter.detect(make_test_frame()) == []
    expected_form_key = "s3cret" if dialect == "deepstack" else None
    assert seen == [("Bearer s3cret", expected_form_key)]


# -- error classification ---------------------------------------------------------


async def _detect_against(handler: Any, dialect: str = "detectflow", **changes: Any) -> None:
    async with (
        serve(web.post("/x", handler)) as base,
        HttpAdapter(config(base + "/x", options={"dialect": dialect}, **changes)) as a,
    ):
        await a.detect(make_test_frame())


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_5xx_and_429_are_transient_with_the_status(status: int) -> None:
    async def handler(request: web.Request) -> web.Response:
        return answer({"error": "overloaded"}, status=status)

    with pytest.raises(TransientProviderError, match=f"HTTP {status}: overloaded") as caught:
        await _detect_against(handler)
    assert caught.value.status == status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_4xx_are_permanent_with_the_status(status: int) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="refused", status=status)

    with pytest.raises(PermanentProviderError, match=f"HTTP {status}: refused") as caught:
        await _detect_against(handler)
    assert caught.value.status == status


async def test_success_false_is_permanent_with_the_providers_error() -> None:
    async def handler(request: web.Request) -> web.Response:
        return answer({"success": False, "error": "Unable to decode image"})

    with pytest.raises(PermanentProviderError, match="Unable to decode image"):
        await _detect_against(handler, "deepstack")


@pytest.mark.parametrize("status", [200, 500])
async def test_codeproject_queue_full_is_transient(status: int) -> None:
    async def handler(request: web.Request) -> web.Response:
        body = {"success": False, "error": "Request queue 'objectdetection_queue' is full"}
        return answer(body, status=status)

    with pytest.raises(TransientProviderError, match="is full"):
        await _detect_against(handler, "deepstack")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b'{"detections": [', "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"result": []}', "'detections' must be a list"),
        (
            b'{"detections": [{"label": "x", "confidence": "high", "box": [0, 0, 1, 1]}]}',
            "confidence must be a number",
        ),
        (
            b'{"detections": [{"label": "x", "confidence": 0.5, "box": [0, 0, 1]}]}',
            "box must be a list of 4 numbers",
        ),
    ],
)
async def test_malformed_answers_are_permanent(body: bytes, reason: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    with pytest.raises(PermanentProviderError, match=reason):
        await _detect_against(handler)


async def test_timeout_is_transient_and_honoured() -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return answer({"detections": []})

    start = time.perf_counter()
    with pytest.raises(TransientProviderError, match=r"within 0\.3 s"):
        await _detect_against(handler, timeout_seconds=0.3)
    elapsed = time.perf_counter() - start
    assert 0.3 <= elapsed < 1.5


async def test_timeout_bounds_the_whole_request_not_each_read() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        # Trickle bytes: every read is quick, the whole answer is slow.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(20):
            await response.write(b" ")
            await asyncio.sleep(0.1)
        await response.write(b'{"detections": []}')
        return response

    start = time.perf_counter()
    with pytest.raises(TransientProviderError, match=r"within 0\.5 s"):
        await _detect_against(handler, timeout_seconds=0.5)
    assert time.perf_counter() - start < 1.5


async def test_connection_refused_is_transient(free_port: int) -> None:
    cfg = config(f"http://127.0.0.1:{free_port}/detect")
    async with HttpAdapter(cfg) as adapter:
        with pytest.raises(TransientProviderError, match="could not reach provider"):
            await adapter.detect(make_test_frame())


async def test_connection_reset_is_transient() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.transport.abort()  # RST, no answer

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with HttpAdapter(config(f"http://127.0.0.1:{port}/detect")) as adapter:
            with pytest.raises(TransientProviderError, match="could not reach provider"):
                await adapter.detect(make_test_frame())
    finally:
        server.close()
        await server.wait_closed()


# -- lifecycle, health, plugin, config ---------------------------------------------


async def test_aclose_is_idempotent_and_a_closed_adapter_refuses_clearly() -> None:
    async with Simulator() as sim:
        adapter = HttpAdapter(config(sim.detect_url("detectflow")))
        await adapter.detect(make_test_frame())
        await adapter.aclose()
        await adapter.aclose()
        with pytest.raises(PermanentProviderError, match="closed"):
            await adapter.detect(make_test_frame())


async def test_aclose_without_any_request_closes_it_for_good() -> None:
    adapter = HttpAdapter(config("http://127.0.0.1:9/detect"))
    await adapter.aclose()
    await adapter.aclose()
    with pytest.raises(PermanentProviderError, match="closed"):
        await adapter.detect(make_test_frame())


async def test_connections_are_kept_alive_and_pooled() -> None:
    peers: set[Any] = set()

    async def handler(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return answer({"detections": []})

    async with serve(web.post("/x", handler)) as base, HttpAdapter(config(base + "/x")) as adapter:
        for _ in range(20):
            await adapter.detect(make_test_frame())
    assert len(peers) == 1


async def test_deepstack_health_uses_the_codeproject_ping() -> None:
    async with Simulator() as sim:
        cfg = config(sim.detect_url("deepstack"), options={"dialect": "deepstack"})
        async with HttpAdapter(cfg) as adapter:
            probe = await adapter.health()
        assert sim.stats.requests == 0  # the ping, not a detection
    assert probe.ok
    assert "ping" in probe.message


async def test_deepstack_health_falls_back_to_a_probe_frame_without_ping() -> None:
    async def detect(request: web.Request) -> web.Response:
        return answer({"success": True, "predictions": []})

    async with serve(web.post("/v1/vision/detection", detect)) as base:
        cfg = config(base + "/v1/vision/detection", options={"dialect": "deepstack"})
        async with HttpAdapter(cfg) as adapter:
            probe = await adapter.health()
    assert probe.ok
    assert probe.message == "Connection successful (0 detections)"


@pytest.mark.parametrize("dialect", ["detectflow", "deepstack"])
async def test_health_of_an_unreachable_provider_fails_with_the_reason(
    dialect: str, free_port: int
) -> None:
    cfg = config(f"http://127.0.0.1:{free_port}/x", options={"dialect": dialect})
    async with HttpAdapter(cfg) as adapter:
        probe = await adapter.health()
    assert not probe.ok
    assert probe.error is not None and "could not reach" in probe.error


def test_the_builtin_plugin_provides_http_api() -> None:
    registry = get_registry()
    assert registry.provider_types()["http_api"] is HttpAdapter
    adapter = registry.create_adapter(config("http://127.0.0.1:1/detect"))
    assert isinstance(adapter, HttpAdapter)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"options": {"dialect": "triton"}}, "unknown http dialect 'triton'"),
        ({"endpoint_url": "ftp://host/x"}, "must be an http:// or https:// URL"),
        ({"endpoint_url": "not a url"}, "must be an http:// or https:// URL"),
        ({"endpoint_url": "http://h:99999/x"}, "must be an http:// or https:// URL"),
        ({"timeout_seconds": 0}, "timeout_seconds must be > 0"),
        ({"options": {"max_connections": 0}}, "max_connections must be a positive integer"),
        ({"options": {"transport": "curl"}}, "unknown http transport 'curl'"),
    ],
)
def test_bad_configs_are_refused_clearly(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(PermanentProviderError, match=reason):
        HttpAdapter(config("http://127.0.0.1:1/detect", **changes))


@pytest.mark.skipif(importlib.util.find_spec("h2") is not None, reason="h2 is installed")
def test_http2_without_h2_says_what_to_install() -> None:
    with pytest.raises(PermanentProviderError, match=r"httpx\[http2\]"):
        HttpAdapter(config("http://127.0.0.1:1/detect", options={"http2": True}))


# -- parsing, for any JSON a provider may send ------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "detections",
                    "predictions",
                    "success",
                    "label",
                    "confidence",
                    "box",
                    "format",
                    "units",
                    "x_min",
                    "y_min",
                    "x_max",
                    "y_max",
                    "error",
                    "person_id",
                    "userid",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_decodes_to_raw_detections_or_a_clear_provider_error(body: Any) -> None:
    for decode in (decode_detectflow, decode_deepstack):
        outcome = _decode_or_error(decode, body)
        if isinstance(outcome, ProviderError):
            assert outcome.message
        else:
            assert all(isinstance(r, RawDetection) for r in outcome)


def _decode_or_error(decode: Any, body: Any) -> list[RawDetection] | ProviderError:
    try:
        result: list[RawDetection] = decode(body)
    except ProviderError as exc:
        return exc
    return result


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["person", "car"]),
            st.floats(0, 1),
            st.lists(finite, min_size=4, max_size=4),
        ),
        max_size=5,
    )
)
def test_valid_detectflow_answers_decode_field_for_field(
    items: list[tuple[str, float, list[float]]],
) -> None:
    body = {"detections": [{"label": lab, "confidence": c, "box": b} for lab, c, b in items]}
    raws = decode_detectflow(json.loads(json.dumps(body)))
    assert [(r.label, r.confidence, list(r.box), r.box_format, r.units) for r in raws] == [
        (lab, c, b, "xyxy", "fraction") for lab, c, b in items
    ]


@given(
    camera=st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True),
    image_tail=st.binary(max_size=64),
    frame_id=st.text(min_size=1, max_size=40),
)
def test_detectflow_body_is_valid_json_with_every_field(
    camera: str, image_tail: bytes, frame_id: str
) -> None:
    """The image is spliced into the JSON as bytes; the result must still parse exactly."""
    import base64
    import json

    from detectflow.adapters._http_dialects import encode_detectflow
    from detectflow.core.frames import make_frame
    from detectflow.core.images import encode_png

    image = encode_png(2, 2, bytes(12)) + image_tail
    frame = make_frame(camera, image, max_bytes=1 << 20, frame_id=frame_id, frame_number=3)
    body = json.loads(encode_detectflow(frame, 0.25).content)
    assert base64.b64decode(body["image"]) == image
    assert (body["camera_id"], body["frame_id"], body["frame_number"]) == (camera, frame_id, 3)
    assert (body["width"], body["height"], body["min_confidence"]) == (2, 2, 0.25)
