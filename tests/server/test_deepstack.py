"""The DeepStack gateway: NVR requests in, the one recorder, DeepStack answers out.

Every test runs the real app with a real simulated provider behind it; the
clients are the raw multipart requests Frigate and Blue Iris send and
detectflow's own ``http_api`` client in its ``deepstack`` dialect.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from detectflow.adapters.http import HttpAdapter
from detectflow.core.frames import make_frame
from detectflow.core.models import ProviderConfig
from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.simulator import Simulator, run_in_thread, simulate_detections
from detectflow.store import Database
from tests.server.deepstack_support import (
    gateway_app,
    gateway_client,
    gateway_settings,
    jpeg,
    simulator_provider,
)
from tests.server.support import API, TestClient, Uvicorn, sqlite_only

DETECT = "/v1/vision/detection"


@pytest.fixture
def registry() -> PluginRegistry:
    from detectflow.core.plugins import get_registry

    return get_registry(Settings(disable_plugin_autoload=True))


@pytest.fixture
def gateway(tmp_path: Path) -> Settings:
    return gateway_settings(tmp_path)


def _expected(image: bytes, width: int, height: int, min_confidence: float = 0.0) -> list[Any]:
    """What the simulator sees in ``image``: the provider's labels, in its pixels."""
    return sorted(
        (d.label, d.x_min, d.y_min, d.x_max, d.y_max)
        for d in simulate_detections(image, width, height)
        if d.confidence >= min_confidence
    )


def _got(body: dict[str, Any]) -> list[Any]:
    return sorted(
        (p["label"], p["x_min"], p["y_min"], p["x_max"], p["y_max"]) for p in body["predictions"]
    )


def _frigate_post(
    client: TestClient | httpx.Client, image: bytes, api_key: str = "", path: str = DETECT
) -> httpx.Response:
    """Frigate's deepstack detector: the JPEG in ``image``, ``api_key`` in the form."""
    return client.post(
        path, files={"image": ("image.jpg", image, "image/jpeg")}, data={"api_key": api_key}
    )


def _assert_deepstack_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert words in body["error"], body
    assert "Traceback" not in response.text


def _live(client: TestClient, camera: str) -> list[dict[str, Any]]:
    response = client.get(f"{API}/live", params={"camera_id": camera, "min_confidence": 0})
    assert response.status_code == 200, response.text
    detections: list[dict[str, Any]] = response.json()["data"]["detections"]
    return detections


def test_frigate_request_gets_the_providers_boxes_in_pixels_and_shows_on_live(
    gateway: Settings, database: Database, registry: PluginRegistry, simulator: Simulator
) -> None:
    simulator_provider(database, simulator.detect_url("deepstack"))
    image = jpeg(640, 480, seed=3)
    with gateway_client(gateway, database, registry) as client:
        response = _frigate_post(client, image, path=f"{DETECT}?camera=driveway")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True
        assert _got(body) == _expected(image, 640, 480)
        assert body["count"] == len(body["predictions"])
        for prediction in body["predictions"]:
            for corner in ("x_min", "y_min", "x_max", "y_max"):
                assert isinstance(prediction[corner], int)
        for field in ("inferenceMs", "processMs", "analysisRoundTripMs"):
            assert isinstance(body[field], int) and body[field] >= 0
        assert body["moduleId"] == "detectflow" and body["command"] == "detect"
        assert isinstance(body["requestId"], str) and body["requestId"]

        live = _live(client, "driveway")
        assert sorted(d["label"] for d in live) == sorted(p["label"] for p in body["predictions"])
        assert {d["frame_id"] for d in live} == {body["requestId"]}
        stats = client.get(f"{API}/statistics", params={"camera_id": "driveway"}).json()["data"]
        assert stats["total_detections"] == body["count"]


def test_labels_are_the_providers_own_not_detectflows_types(
    gateway: Settings, database: Database, registry: PluginRegistry, simulator: Simulator
) -> None:
    simulator_provider(database, simulator.detect_url("deepstack"))
    with gateway_client(gateway, database, registry) as client:
        seen: set[str] = set()
        for seed in range(40):  # enough images for the simulator to say "car" and "truck"
            image = jpeg(320, 240, seed=seed)
            body = _frigate_post(client, image).json()
            assert _got(body) == _expected(image, 320, 240)
            seen.update(p["label"] for p in body["predictions"])
        assert {"car", "truck"} <= seen  # stored as detection_type "vehicle", answered raw
        assert "vehicle" not in seen


def test_blue_iris_style_request_without_camera_lands_on_the_deepstack_camera(
    gateway: Settings, database: Database, registry: PluginRegistry, simulator: Simulator
) -> None:
    simulator_provider(database, simulator.detect_url())
    image = jpeg(seed=5)
    with gateway_client(gateway, database, registry) as client:
        response = client.post(
            DETECT,
            files={"image": ("alert.jpg", image, "image/jpeg")},
            data={"min_confidence": "0.5"},
        )
        assert response.status_code == 200, response.text
        assert _got(response.json()) == _expected(image, 640, 480, 0.5)
        assert {d["camera_id"] for d in _live(client, "deepstack")} == {"deepstack"}


def test_camera_header_names_the_camera(
    gateway: Settings, database: Database, registry: PluginRegistry, simulator: Simulator
) -> None:
    simulator_provider(database, simulator.detect_url())
    with gateway_client(gateway, database, registry) as client:
        response = client.post(
            DETECT,
            files={"image": ("a.jpg", jpeg(seed=6), "image/jpeg")},
            headers={"X-Camera-Id": "porch"},
        )
        assert response.status_code == 200, response.text
        assert _live(client, "porch")
        assert not _live(client, "deepstack")


def test_a_key_bound_to_a_camera_names_it_when_the_request_does_not(
    gateway: Settings, database: Database, registry: PluginRegistry, simulator: Simulator
) -> None:
    simulator_provider(database, simulator.detect_url())
    _, driveway = database.create_api_key("write", "nvr-driveway", camera_id="driveway")
    with gateway_client(gateway, database, registry) as client:
        assert _frigate_post(client, jpeg(seed=11), driveway).status_code == 200
        named = client.post(
            DETECT,
            files={"image": ("a.jpg", jpeg(seed=12), "image/jpeg")},
            data={"api_key": driveway},
            headers={"X-Camera-Id": "porch"},
        )
        assert named.status_code == 200, named.text
        assert _live(client, "driveway") and _live(client, "porch")
        assert not _live(client, "deepstack")


def test_store_0_only_detects(
    gateway: Settings, database: Database, registry: PluginRegistry, simulator: Simulator
) -> None:
    simulator_provider(database, simulator.detect_url())
    image = jpeg(seed=7)
    with gateway_client(gateway, database, registry) as client:
        response = client.post(
            f"{DETECT}?store=0&camera=quiet", files={"image": ("a.jpg", image, "image/jpeg")}
        )
        assert response.status_code == 200, response.text
        assert _got(response.json()) == _expected(image, 640, 480)
        assert _live(client, "quiet") == []
    assert database.list_detections(camera_id="quiet")[1] == 0


def test_custom_model_selects_the_provider_config_by_name(
    gateway: Settings, database: Database, registry: PluginRegistry, simulator: Simulator
) -> None:
    # The active provider always fails; the named one is a working simulator that
    # routes serve only to another camera, so only naming it reaches it.
    with run_in_thread(Simulator(error_rate=1.0)) as broken:
        simulator_provider(database, broken.detect_url(), name="broken")
        simulator_provider(
            database,
            simulator.detect_url("deepstack"),
            name="yard",
            is_active=False,
            options={"cameras": ["elsewhere"]},
        )
        image = jpeg(seed=8)
        with gateway_client(gateway, database, registry) as client:
            response = _frigate_post(client, image, path="/v1/vision/custom/yard")
            assert response.status_code == 200, response.text
            assert response.json()["command"] == "custom"
            assert _got(response.json()) == _expected(image, 640, 480)
            _assert_deepstack_error(
                _frigate_post(client, image, path="/v1/vision/custom/nobody"), 404, "nobody"
            )
            failed = _frigate_post(client, image)
            _assert_deepstack_error(failed, 502, "detection failed")


def test_failover_seen_by_an_nvr_client(
    gateway: Settings, database: Database, registry: PluginRegistry
) -> None:
    """The first provider stops mid-run; the client's calls keep succeeding through the second."""
    first = run_in_thread(Simulator())
    with run_in_thread(Simulator()) as second:
        simulator_provider(database, first.detect_url("deepstack"), name="first")
        simulator_provider(database, second.detect_url(), name="second", is_active=False)
        with gateway_client(gateway, database, registry) as client:
            for seed in range(10):
                if seed == 4:
                    first.stop()
                image = jpeg(seed=seed)
                response = _frigate_post(client, image)
                assert response.status_code == 200, (seed, response.text)
                assert _got(response.json()) == _expected(image, 640, 480)
    assert second.simulator.stats.answered >= 6


@sqlite_only
def test_no_provider_is_a_deepstack_503(
    gateway: Settings, database: Database, registry: PluginRegistry
) -> None:
    with gateway_client(gateway, database, registry) as client:
        _assert_deepstack_error(_frigate_post(client, jpeg()), 503, "no detection provider")


@sqlite_only
@pytest.mark.parametrize(
    ("files", "data", "status", "words"),
    [
        pytest.param({}, {"api_key": ""}, 400, "no image", id="no-image-field"),
        pytest.param(
            {"image": ("notes.txt", b"just some text", "text/plain")},
            {},
            400,
            "not a JPEG, PNG or WebP",
            id="text-file",
        ),
        pytest.param({}, {"image": "not a file"}, 400, "must be a file", id="image-as-text"),
        pytest.param(
            {"image": ("a.jpg", jpeg(), "image/jpeg")},
            {"min_confidence": "lots"},
            400,
            "min_confidence",
            id="bad-min-confidence",
        ),
    ],
)
def test_bad_input_is_a_deepstack_error_and_stores_nothing(
    gateway: Settings,
    database: Database,
    registry: PluginRegistry,
    simulator: Simulator,
    files: dict[str, Any],
    data: dict[str, str],
    status: int,
    words: str,
) -> None:
    simulator_provider(database, simulator.detect_url())
    with gateway_client(gateway, database, registry) as client:
        response = client.post(DETECT, files=files or None, data=data)
        _assert_deepstack_error(response, status, words)
    assert simulator.stats.requests == 0
    assert database.list_detections()[1] == 0


@sqlite_only
def test_a_50_mb_upload_is_refused_before_it_is_read(
    gateway: Settings, database: Database, registry: PluginRegistry, simulator: Simulator
) -> None:
    simulator_provider(database, simulator.detect_url())
    huge = b"\xff\xd8\xff" + bytes(50 * 1024 * 1024)
    with gateway_client(gateway, database, registry) as client:
        response = client.post(DETECT, files={"image": ("big.jpg", huge, "image/jpeg")})
        _assert_deepstack_error(response, 413, "larger than")

        def chunks() -> Any:  # no Content-Length: the running total stops it
            yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
            for _ in range(50):
                yield bytes(1024 * 1024)

        response = client.post(
            DETECT,
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
        _assert_deepstack_error(response, 413, "larger than")
    assert database.list_detections()[1] == 0


@sqlite_only
def test_non_multipart_bodies_and_wrong_methods_are_deepstack_errors(
    gateway: Settings, database: Database, registry: PluginRegistry
) -> None:
    with gateway_client(gateway, database, registry) as client:
        _assert_deepstack_error(client.post(DETECT, json={"image": "x"}), 415, "multipart")
        response = client.get(DETECT)
        _assert_deepstack_error(response, 405, "not allowed")
        assert response.headers["allow"] == "POST"
        broken = client.post(
            DETECT,
            content=b"--x\r\nno headers end",
            headers={"Content-Type": "multipart/form-data"},  # no boundary
        )
        assert broken.status_code == 400 and broken.json()["success"] is False


def test_api_key_form_field_and_auth_modes(
    tmp_path: Path, database: Database, registry: PluginRegistry, simulator: Simulator
) -> None:
    simulator_provider(database, simulator.detect_url())
    _, write_key = database.create_api_key("write", "nvr")
    _, read_key = database.create_api_key("read", "viewer")
    image = jpeg(seed=9)
    required = gateway_settings(tmp_path, auth_mode="required")
    with gateway_client(required, database, registry) as client:
        _assert_deepstack_error(_frigate_post(client, image), 401, "api_key")
        _assert_deepstack_error(_frigate_post(client, image, "dfk_wrong"), 401, "invalid")
        _assert_deepstack_error(_frigate_post(client, image, read_key), 403, "write")
        assert _frigate_post(client, image, write_key).status_code == 200
        bearer = client.post(
            DETECT,
            files={"image": ("a.jpg", image, "image/jpeg")},
            headers={"Authorization": f"Bearer {write_key}"},
        )
        assert bearer.status_code == 200, bearer.text
    stored = database.list_detections()[1]
    assert stored > 0
    reads_open = gateway_settings(tmp_path)
    with gateway_client(reads_open, database, registry) as client:
        assert _frigate_post(client, jpeg(seed=10)).status_code == 200  # Blue Iris sends none
        _assert_deepstack_error(_frigate_post(client, image, "dfk_wrong"), 401, "invalid")
    assert database.list_detections()[1] > stored


@sqlite_only
def test_status_pings_answer_what_codeproject_clients_probe(
    gateway: Settings, database: Database, registry: PluginRegistry
) -> None:
    with gateway_client(gateway, database, registry) as client:
        for path in ("/v1/status/ping", "/v1/server/status/ping"):
            for method in ("GET", "POST"):
                response = client.request(method, path)
                assert response.status_code == 200, response.text
                assert response.json()["success"] is True


@sqlite_only
def test_the_gateway_is_off_unless_enabled(
    tmp_path: Path, database: Database, registry: PluginRegistry
) -> None:
    with gateway_client(gateway_settings(tmp_path, deepstack_api=False), database, registry) as c:
        assert c.post(DETECT, files={"image": ("a.jpg", jpeg(), "image/jpeg")}).status_code == 404
        assert c.get("/v1/status/ping").status_code == 404


def test_detectflows_own_deepstack_client_round_trips_through_the_gateway(
    gateway: Settings,
    database: Database,
    registry: PluginRegistry,
    simulator: Simulator,
    free_port: int,
) -> None:
    """detectflow's http_api adapter (dialect deepstack) calling detectflow: the same
    boxes as calling the simulator directly, and its health check passes on the ping."""
    simulator_provider(database, simulator.detect_url())
    _, key = database.create_api_key("write", "self")
    app = gateway_app(gateway.with_overrides(auth_mode="required"), database, registry)

    def adapter(url: str) -> HttpAdapter:
        return HttpAdapter(
            ProviderConfig(
                id="c",
                provider_name="client",
                provider_type="http_api",
                endpoint_url=url,
                api_key=key,
                confidence_threshold=0.0,
                options={"dialect": "deepstack"},
            )
        )

    async def run() -> tuple[list[Any], list[Any], bool]:
        frame = make_frame("cam-1", jpeg(seed=11), max_bytes=1 << 22)
        via_gateway, direct = (
            adapter(f"http://127.0.0.1:{free_port}{DETECT}"),
            adapter(simulator.detect_url("deepstack")),
        )
        try:
            through = await via_gateway.detect(frame)
            straight = await direct.detect(frame)
            health = await via_gateway.health()
        finally:
            await via_gateway.aclose()
            await direct.aclose()
        return (
            sorted((r.label, r.box, r.units) for r in through),
            sorted((r.label, r.box, r.units) for r in straight),
            health.ok and "ping" in health.message,
        )

    with Uvicorn(app, free_port):
        through, straight, healthy = asyncio.run(run())
    assert through == straight and through
    assert healthy
    assert database.list_detections(camera_id="deepstack")[1] == len(through)


@sqlite_only
def test_openapi_describes_the_gateway_only_when_it_is_on(
    tmp_path: Path, database: Database, registry: PluginRegistry
) -> None:
    with gateway_client(gateway_settings(tmp_path), database, registry) as client:
        paths = client.get("/openapi.json").json()["paths"]
        detect = paths[DETECT]["post"]
        assert "multipart/form-data" in detect["requestBody"]["content"]
        assert detect["x-required-scope"] == "write"
        failure = detect["responses"]["400"]["content"]["application/json"]["schema"]
        assert failure["properties"]["success"] == {"const": False}
        assert {"/v1/vision/custom/{model}", "/v1/status/ping"} <= set(paths)
    off = gateway_settings(tmp_path, deepstack_api=False)
    with gateway_client(off, database, registry) as client:
        assert DETECT not in client.get("/openapi.json").json()["paths"]


@sqlite_only
def test_control_characters_at_the_boundary_are_deepstack_errors(
    gateway: Settings, database: Database, registry: PluginRegistry
) -> None:
    with gateway_client(gateway, database, registry) as client:
        response = _frigate_post(client, jpeg(), path="/v1/vision/custom/a%01b")
        assert response.status_code == 422, response.text
        assert response.json()["success"] is False
