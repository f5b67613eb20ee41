"""A kserve provider through the REST API: added with options, refused with a 422 when they
are bad, tested (a model that does not fit says what it found), and used by inline
send-frame, whose stored boxes land where the peer saw the rectangles.

The app is detectflow's own (create_app on a migrated SQLite store, the
default plugins); the model server is KServe's, from .venv-kserve.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.fernet import Fernet
from PIL import Image

from detectflow.core.plugins import get_registry
from detectflow.core.settings import Settings
from detectflow.server import create_app
from detectflow.store.memory import MemoryBus, MemoryCache
from tests.adapters.kserve.peer import Peer, running_peer
from tests.databases import migrated_database
from tests.server.support import API, TestClient

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 640, 360
PERSON = (40, 60, 200, 300)  # white
CAR = (400, 100, 600, 200)  # red


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    with running_peer("yolo,text") as running:
        yield running


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, disable_plugin_autoload=True, max_frame_bytes=1 << 22)
    url = f"sqlite:///{tmp_path / 'api.db'}"
    with migrated_database(url, Fernet.generate_key().decode()) as database:
        _, admin_key = database.create_api_key("admin", "tests")
        app = create_app(
            settings,
            database=database,
            registry=get_registry(settings),
            cache=MemoryCache(),
            bus=MemoryBus(),
        )
        headers = {"Authorization": f"Bearer {admin_key}"}
        with TestClient(app, headers=headers) as test_client:
            yield test_client


def provider(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "provider_name": "triton",
        "provider_type": "kserve",
        "endpoint_url": url,
        "is_active": True,
        "max_retries": 0,
        **fields,
    }


def frame_body() -> dict[str, Any]:
    rgb = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    x1, y1, x2, y2 = PERSON
    rgb[y1:y2, x1:x2] = 255
    x1, y1, x2, y2 = CAR
    rgb[y1:y2, x1:x2] = (255, 0, 0)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return {"camera_id": "cam-1", "frame_data": base64.b64encode(out.getvalue()).decode()}


@pytest.mark.parametrize(
    ("url", "options", "says"),
    [
        ("http://127.0.0.1:1/yolo", {}, "/v2/models/<model>"),
        ("grpc://127.0.0.1:1/yolo", {"max_batch_size": -2}, "max_batch_size"),
        ("grpc://127.0.0.1:1/yolo", {"labels": "a,,b"}, "empty class"),
    ],
)
def test_bad_kserve_configs_are_refused_with_a_422_saying_why(
    client: TestClient, url: str, options: dict[str, Any], says: str
) -> None:
    response = client.post(f"{API}/providers", json=provider(url, options=options))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_provider_config" and says in error["message"]


@pytest.mark.parametrize("wire", ["rest", "grpc"])
def test_provider_test_says_what_the_model_has_when_it_does_not_fit(
    client: TestClient, peer: Peer, wire: str
) -> None:
    created = client.post(f"{API}/providers", json=provider(peer.url(wire, "text")))
    assert created.status_code == 201, created.text
    data = client.post(f"{API}/test-provider").json()["data"]
    assert data["success"] is False
    assert "found: tokens INT64 [-1, 5]" in data["error"]


@pytest.mark.parametrize("wire", ["rest", "grpc"])
def test_inline_send_frame_stores_boxes_where_the_model_saw_them(
    client: TestClient, peer: Peer, wire: str
) -> None:
    options = {"max_batch_size": 4, "labels": "coco"}
    created = client.post(
        f"{API}/providers", json=provider(peer.url(wire, "yolo"), options=options)
    )
    assert created.status_code == 201, created.text
    assert created.json()["data"]["options"] == options
    response = client.post(f"{API}/send-frame", json=frame_body())
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["success"] is True, data
    found = {d["detection_type"]: d["bbox"] for d in data["detections"]}
    assert sorted(found) == ["person", "vehicle"]
    for kind, (x1, y1, x2, y2) in (("person", PERSON), ("vehicle", CAR)):
        box = found[kind]
        assert box["x"] * WIDTH == pytest.approx(x1, abs=0.5)
        assert box["y"] * HEIGHT == pytest.approx(y1, abs=0.5)
        assert box["width"] * WIDTH == pytest.approx(x2 - x1, abs=0.5)
        assert box["height"] * HEIGHT == pytest.approx(y2 - y1, abs=0.5)
