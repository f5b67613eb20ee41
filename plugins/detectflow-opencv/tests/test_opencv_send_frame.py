"""The issue's acceptance, end to end: the installed plugin behind the real API.

The plugin is found through its entry point, configured over REST as a
provider, and astronaut.png sent through ``send-frame`` comes back with a
``face`` detection, stored and normalized.
"""

from __future__ import annotations

import base64
import warnings
from pathlib import Path

from detectflow.core.settings import Settings
from detectflow.server.app import create_app
from detectflow.store import open_database
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient; plain httpx works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

API = "/api/v1/detections"


def test_astronaut_through_send_frame_returns_a_face(tmp_path: Path, astronaut_png: bytes) -> None:
    settings = Settings.from_env({"DETECTFLOW_DATA_DIR": str(tmp_path)})
    database = open_database(settings)
    database.upgrade()
    _, key = database.create_api_key("admin", "test")
    try:
        with TestClient(create_app(settings, database=database)) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            created = client.post(
                f"{API}/providers",
                json={
                    "provider_name": "opencv",
                    "provider_type": "opencv",
                    "endpoint_url": "local",
                    "confidence_threshold": 0.5,
                    "is_active": True,
                },
            )
            assert created.status_code == 201, created.text
            answer = client.post(
                f"{API}/send-frame",
                json={
                    "camera_id": "astronaut",
                    "frame_data": base64.b64encode(astronaut_png).decode(),
                },
            )
            assert answer.status_code == 200, answer.text
            data = answer.json()["data"]
            faces = [d for d in data["detections"] if d["detection_type"] == "face"]
            assert data["success"] is True
            assert faces, data
            box = faces[0]["bbox"]
            assert 0.2 < box["x"] + box["width"] / 2 < 0.8  # the face is in the upper middle
            assert box["y"] < 0.5
            stored = client.get(
                f"{API}/live", params={"camera_id": "astronaut", "min_confidence": 0}
            )
            assert faces[0]["id"] in {d["id"] for d in stored.json()["data"]["detections"]}
    finally:
        database.dispose()
