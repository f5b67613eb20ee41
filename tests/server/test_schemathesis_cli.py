"""The acceptance run: the schemathesis CLI, every check, against a real server.

``st run --checks all`` drives every operation of the served /openapi.json
with an admin key, on real uvicorn over PostgreSQL (which refuses NUL in
text, so NUL reaching SQL would be a 500 here). It must report no server
error and no mismatch with the document: status codes, content types,
headers and bodies all as documented, schema-breaking input refused,
schema-valid input accepted, auth enforced. The WebSocket upgrade is not an
HTTP exchange and is left out (test_openapi.py checks its messages).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.server import create_app
from detectflow.store import Database
from tests.server.support import API, TestClient, Uvicorn, add_provider, frame_body

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MAX_EXAMPLES = os.environ.get("DETECTFLOW_SCHEMATHESIS_EXAMPLES", "10")
CONFIG = Path(__file__).with_name("schemathesis.toml")
"""Where the schema cannot state a rule (an image, a plugin's provider types), and why."""


@pytest.fixture
def served(
    settings: Settings, database: Database, registry: PluginRegistry, free_port: int
) -> Iterator[tuple[str, str]]:
    _, admin = database.create_api_key("admin", "schemathesis")
    app = create_app(settings, database=database, registry=registry)
    with TestClient(app, headers={"Authorization": f"Bearer {admin}"}) as client:
        add_provider(client)  # rows, so list and detail answers have items to conform
        for number in range(2):
            assert client.post(f"{API}/send-frame", json=frame_body("cam-1", number)).is_success
    with Uvicorn(create_app(settings, database=database, registry=registry), free_port):
        yield f"http://127.0.0.1:{free_port}", admin


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_schemathesis_with_every_check_finds_nothing(
    served: tuple[str, str], tmp_path: Path
) -> None:
    base, admin = served
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [
            str(st),
            "--config-file",
            str(CONFIG),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {admin}",
            "--exclude-path",
            f"{API}/ws/{{client_id}}",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "12",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--report-dir",
            str(tmp_path),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,  # its cache of failures, not in the repository
        check=False,
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
