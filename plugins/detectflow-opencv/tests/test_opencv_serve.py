"""detectflow_opencv.serve: the DeepStack dialect over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from detectflow import PermanentProviderError, ProviderConfig, TransientProviderError
from detectflow.adapters.http import HttpAdapter
from detectflow.core.frames import make_frame
from detectflow.core.pipeline import run_frame

from detectflow_opencv.detector import DetectorSettings, OpenCVDetector
from detectflow_opencv.serve import DETECTION_PATH, PING_PATH, ServeOptions, make_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., object]]:
    """``await serve(options)`` starts the app on a real loopback port, returns its URL."""
    runners: list[web.AppRunner] = []

    async def start(options: ServeOptions | None = None, detector: OpenCVDetector | None = None):
        runner = web.AppRunner(make_app(detector, options))
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()  # the OS picks a free port
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def form(image: bytes | None, **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    if image is not None:
        data.add_field("image", image, filename="frame.png", content_type="image/png")
    for name, value in fields.items():
        data.add_field(name, value)
    return data


async def post(session, url, data, **kwargs):
    async with session.post(url + DETECTION_PATH, data=data, **kwargs) as response:
        return response.status, await response.json()


async def test_ping_answers_success(serve, session):
    url = await serve()
    async with session.get(url + PING_PATH) as response:
        assert response.status == 200
        assert await response.json() == {"success": True}


async def test_detection_answers_in_the_deepstack_shape(serve, session, astronaut_png):
    url = await serve()
    status, body = await post(session, url, form(astronaut_png))
    assert status == 200
    assert body["success"] is True
    faces = [p for p in body["predictions"] if p["label"] == "face"]
    assert len(faces) == 1
    for prediction in body["predictions"]:
        assert set(prediction) == {"label", "confidence", "x_min", "y_min", "x_max", "y_max"}
        corners = [prediction[k] for k in ("x_min", "y_min", "x_max", "y_max")]
        assert all(type(v) is int for v in corners)
        assert 0 <= corners[0] < corners[2] <= 512 and 0 <= corners[1] < corners[3] <= 512
        assert 0.4 <= prediction["confidence"] <= 1.0
    face = faces[0]
    assert 150 < face["x_min"] < 200 and 50 < face["y_min"] < 90
    assert 250 < face["x_max"] < 300 and 140 < face["y_max"] < 190


async def test_min_confidence_filters_predictions(serve, session, astronaut_png):
    url = await serve()
    _, everything = await post(session, url, form(astronaut_png, min_confidence="0"))
    _, none = await post(session, url, form(astronaut_png, min_confidence="1.0"))
    assert everything["predictions"] and none == {"success": True, "predictions": []}


async def test_a_blank_image_has_no_predictions(serve, session, blank_png):
    url = await serve()
    assert await post(session, url, form(blank_png)) == (200, {"success": True, "predictions": []})


@pytest.mark.parametrize(
    ("image", "fields", "message"),
    [
        (b"garbage bytes", {}, "cannot decode"),
        (None, {"min_confidence": "0.5"}, "no image"),
        (b"x", {"min_confidence": "high"}, "min_confidence"),
        (b"x", {"min_confidence": "1.5"}, "min_confidence"),
        (b"x", {"min_confidence": "nan"}, "min_confidence"),
    ],
)
async def test_bad_requests_answer_400_with_an_error(serve, session, image, fields, message):
    url = await serve()
    status, body = await post(session, url, form(image, **fields))
    assert status == 400
    assert body["success"] is False and message in body["error"]


async def test_a_body_that_is_not_multipart_is_refused(serve, session):
    url = await serve()
    status, body = await post(session, url, b'{"image": "x"}', headers={"Content-Type": "x/y"})
    assert status == 400 and body["success"] is False and "multipart" in body["error"]


_PART = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"no boundary in the header"),
        ("multipart/form-data; boundary=xyz", b"no boundary in the body"),
        ("multipart/form-data; boundary=xyz", _PART + b"never closed"),
        (
            "multipart/form-data; boundary=xyz",
            b"--xyz\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n"
            b"--in\r\n\r\nx\r\n--in--\r\n\r\n--xyz--\r\n",
        ),
    ],
    ids=["no-boundary", "garbage", "unterminated", "nested"],
)
async def test_a_malformed_multipart_body_answers_400(serve, session, content_type, body):
    url = await serve()
    status, answer = await post(session, url, body, headers={"Content-Type": content_type})
    assert status == 400 and answer["success"] is False and "multipart" in answer["error"]


async def test_a_flood_of_small_fields_is_cut_off_at_the_size_limit(serve, session, blank_png):
    url = await serve(ServeOptions(max_bytes=len(blank_png) + 100))
    data = form(blank_png, **{f"extra{i}": "x" * 1000 for i in range(20)})
    status, body = await post(session, url, data)
    assert status == 413 and body["error"] == "the request body is too large"


async def test_an_image_past_max_bytes_answers_413(serve, session, astronaut_png):
    url = await serve(ServeOptions(max_bytes=1000))
    status, body = await post(session, url, form(astronaut_png))
    assert status == 413 and body["success"] is False and "1000 bytes" in body["error"]


async def test_unknown_routes_answer_json_too(serve, session):
    url = await serve()
    async with session.get(url + "/v1/vision/nothing") as response:
        assert response.status == 404
        assert (await response.json())["success"] is False
    async with session.get(url + DETECTION_PATH) as response:
        assert response.status == 405
        assert (await response.json())["success"] is False


async def test_api_key_is_checked_as_form_field_or_bearer_token(serve, session, blank_png):
    url = await serve(ServeOptions(api_key="s3cret"))
    assert (await post(session, url, form(blank_png)))[0] == 401
    assert (await post(session, url, form(blank_png, api_key="nope")))[0] == 401
    assert (await post(session, url, form(blank_png, api_key="s3cret")))[0] == 200
    bearer = {"Authorization": "Bearer s3cret"}
    assert (await post(session, url, form(blank_png), headers=bearer))[0] == 200


async def test_a_detection_past_the_timeout_answers_500(serve, session, astronaut_png):
    url = await serve(ServeOptions(timeout=0.001))
    status, body = await post(session, url, form(astronaut_png))
    assert status == 500 and "timeout" in body["error"]


# -- detectflow's own http_api adapter, dialect deepstack ----------------------


def http_config(url: str, **overrides: object) -> ProviderConfig:
    fields: dict[str, object] = {
        "id": "deepstack-opencv",
        "provider_name": "OpenCV over DeepStack",
        "provider_type": "http_api",
        "endpoint_url": url + DETECTION_PATH,
        "options": {"dialect": "deepstack"},
        "max_retries": 0,
    }
    fields.update(overrides)
    return ProviderConfig(**fields)  # type: ignore[arg-type]


async def test_detectflow_http_adapter_gets_normalized_faces_from_the_server(
    serve, astronaut_png, is_astronaut_face
):
    url = await serve()
    frame = make_frame("cam-7", astronaut_png, max_bytes=1 << 24)
    async with HttpAdapter(http_config(url, api_key="ignored-without-a-server-key")) as adapter:
        health = await adapter.health()
        result = await run_frame(frame, adapter)
    assert health.ok and "ping" in health.message
    assert result.ok, result.error
    [face] = [d for d in result.detections if d.detection_type == "face"]
    assert is_astronaut_face(face.bbox.x, face.bbox.y, face.bbox.width, face.bbox.height)


async def test_detectflow_http_adapter_classifies_server_errors(serve, garbage_png, astronaut_png):
    frame = make_frame("cam-7", garbage_png, max_bytes=1 << 24)
    url = await serve()
    async with HttpAdapter(http_config(url)) as adapter:
        with pytest.raises(PermanentProviderError, match="400"):
            await adapter.detect(frame)
    slow = await serve(ServeOptions(timeout=0.001))
    good = make_frame("cam-7", astronaut_png, max_bytes=1 << 24)
    async with HttpAdapter(http_config(slow)) as adapter:
        with pytest.raises(TransientProviderError, match="500"):
            await adapter.detect(good)


async def test_a_server_with_faces_off_reports_only_people(serve, session, astronaut_png):
    url = await serve(detector=OpenCVDetector(DetectorSettings(faces=False)))
    _, body = await post(session, url, form(astronaut_png))
    assert body["predictions"] and {p["label"] for p in body["predictions"]} == {"person"}
