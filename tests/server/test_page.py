"""The live page (detectflow/server/page.py and static/): served, wired, and drawn in a browser.

The browser test runs the app under real uvicorn with the real Simulator as
provider, opens the page in headless Debian chromium driven over the Chrome
DevTools Protocol (plain ``websockets``, no driver), sends frames, and checks
that each detection becomes a box over the right frame image or placeholder.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from detectflow.core.cameras import Camera
from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.samples import sample_frame
from detectflow.server import create_app
from detectflow.server.page import CONTENT_SECURITY_POLICY
from detectflow.store import Database
from detectflow.store.camera_status import CameraStatusBoard
from detectflow.store.memory import MemoryBus, MemoryCache
from tests.server.support import (
    API,
    TestClient,
    Uvicorn,
    add_provider,
    assert_error,
    frame_body,
    sqlite_only,
)

SCREENSHOT_ENV = "DETECTFLOW_TEST_SCREENSHOT"
"""Set it to a path (e.g. /tmp/detectflow-page.png) to keep the browser test's screenshot."""


# -- the frame image endpoint ---------------------------------------------------------


def test_a_queued_frame_is_served_as_its_image(client: Any) -> None:
    body = frame_body("cam-q", 4, frame_id="queued-4")
    assert client.post(f"{API}/send-frame?mode=queue", json=body).status_code == 202

    response = client.get(f"{API}/frames/queued-4")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == sample_frame("cam-q", 4)


def test_a_failed_inline_frame_keeps_its_image(client: Any) -> None:
    add_provider(client, options={"fail": "refused by the test"})
    body = frame_body("cam-f", 1, frame_id="failed-1")
    sent = client.post(f"{API}/send-frame", json=body).json()["data"]
    assert sent["success"] is False

    response = client.get(f"{API}/frames/failed-1")

    assert response.status_code == 200
    assert response.content == sample_frame("cam-f", 1)


def test_a_successful_inline_frame_has_no_image_and_says_why(client: Any) -> None:
    add_provider(client)
    body = frame_body("cam-i", 2, frame_id="inline-2")
    assert client.post(f"{API}/send-frame", json=body).json()["data"]["success"] is True

    error = assert_error(client.get(f"{API}/frames/inline-2"), 404, "not_found")

    assert "no stored image" in error["message"]


@sqlite_only
@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"{API}/frames/nope", 404, "not_found"),
        (f"{API}/frames/{'x' * 129}", 422, "validation_error"),
        (f"{API}/frames/bad%20id", 422, "validation_error"),
        (f"{API}/frames/queued-4?size=big", 422, "validation_error"),
        (f"{API}/frames/", 404, None),
    ],
)
def test_bad_frame_requests_get_the_error_envelope(
    client: Any, path: str, status: int, code: str | None
) -> None:
    assert_error(client.get(path), status, code)


# -- the page and its files -----------------------------------------------------------


@sqlite_only
def test_the_page_is_served_at_the_root_with_a_strict_policy(client: Any) -> None:
    response = client.get("/?token=abc")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["cache-control"] == "no-cache"
    assert '<script src="static/app.js"' in response.text
    assert '<link rel="stylesheet" href="static/style.css">' in response.text
    # Everything is local: no CDN, no absolute URL the page would load from elsewhere.
    assert "http://" not in response.text and "https://" not in response.text


@sqlite_only
@pytest.mark.parametrize(
    ("name", "media_type"),
    [("app.js", "javascript"), ("style.css", "text/css"), ("index.html", "text/html")],
)
def test_static_files_are_served_from_the_package(client: Any, name: str, media_type: str) -> None:
    response = client.get(f"/static/{name}")

    assert response.status_code == 200
    assert media_type in response.headers["content-type"]
    packaged = files("detectflow.server").joinpath("static", name).read_bytes()
    assert response.content == packaged


@sqlite_only
@pytest.mark.parametrize("path", ["/static/nope.js", "/static/", "/static/%2e%2e/page.py"])
def test_missing_or_outside_static_files_are_404_envelopes(client: Any, path: str) -> None:
    assert_error(client.get(path), 404, "not_found")


@sqlite_only
def test_the_page_needs_no_key_but_frames_do_when_reads_are_closed(
    settings: Settings, database: Database
) -> None:
    closed = dataclasses.replace(settings, auth_mode="required")
    with TestClient(create_app(closed, database=database)) as anonymous:
        assert anonymous.get("/").status_code == 200
        assert anonymous.get("/static/app.js").status_code == 200
        assert_error(anonymous.get(f"{API}/frames/any"), 401, "unauthorized")


def test_the_page_script_uses_only_relative_urls_and_the_documented_api() -> None:
    script = files("detectflow.server").joinpath("static", "app.js").read_text("utf-8")
    assert "http://" not in script and "https://" not in script
    for path in ("/live?min_confidence=0", "/ws/", "/frames/", "/summary", "/status"):
        assert path in script, path
    assert 'type: "subscribe"' in script
    assert "dataset.detectionId" in script  # the hook the browser test looks for


# -- in a real browser ----------------------------------------------------------------


def _chromium() -> str:
    """Debian's chromium (scripts/browser installs it), or DETECTFLOW_TEST_CHROMIUM."""
    found = os.environ.get("DETECTFLOW_TEST_CHROMIUM") or shutil.which("chromium")
    if found:
        return found
    message = "chromium is not installed: run scripts/browser (apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(f"SKIPPED browser test: {message}")


@contextlib.contextmanager
def _browser(binary: str, profile: Path, log: Path) -> Iterator[int]:
    """Headless chromium with a fresh profile; yields its DevTools port."""
    args = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "--window-size=1280,800",
        "about:blank",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 15
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield int(port_file.read_text().split()[0])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # chromium's own helpers share its group
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class _Cdp:
    """Just enough of the Chrome DevTools Protocol: commands in order, exceptions kept."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self.exceptions: list[str] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self._ws.recv(), 10))
            if message.get("method") == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                self.exceptions.append(json.dumps(details)[:500])
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in reply, reply
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                state = await self.evaluate(_PAGE_STATE)
                raise AssertionError(f"timed out waiting for: {expression}\npage: {state}")
            await asyncio.sleep(0.1)


def _shows_boxes(ids: Iterable[str]) -> str:
    """A JS expression: the page shows a box for exactly these detection ids."""
    want = json.dumps(json.dumps(sorted(ids), separators=(",", ":")))
    return (
        "JSON.stringify([...document.querySelectorAll('[data-detection-id]')]"
        f".map(b => b.dataset.detectionId).sort()) === {want}"
    )


_PAGE_STATE = """JSON.stringify({
  boxes: [...document.querySelectorAll('[data-detection-id]')].map(b => ({
    id: b.dataset.detectionId,
    camera: b.closest('[data-camera-id]').dataset.cameraId,
    left: parseFloat(b.style.left), top: parseFloat(b.style.top),
    width: parseFloat(b.style.width), height: parseFloat(b.style.height),
    label: b.textContent,
  })),
  cameras: Object.fromEntries([...document.querySelectorAll('.camera')].map(c => [
    c.dataset.cameraId,
    {
      frame: c.dataset.frame || null,
      frameId: c.dataset.frameId || null,
      natural: c.querySelector('img').naturalWidth,
    },
  ])),
  boxesStat: document.getElementById('stat-boxes').textContent,
  camerasStat: document.getElementById('stat-cameras').textContent,
  queueTotal: document.querySelector('[data-queue="total"]').textContent,
  queueCompleted: document.querySelector('[data-queue="completed"]').textContent,
})"""


@pytest.mark.browser
def test_the_page_draws_each_detection_over_its_frame_in_a_real_browser(
    tmp_path: Path, free_port: int, simulator: Any, registry: PluginRegistry, secret_key: str
) -> None:
    binary = _chromium()
    # Reads closed: the page only works if it passes its ?token= on to fetch and WebSocket.
    settings = Settings(data_dir=tmp_path, secret_key=secret_key, auth_mode="required")
    app = create_app(settings, registry=registry)
    base = f"http://127.0.0.1:{free_port}"
    kept = frame_body("cam-kept", 7, frame_id="kept-7")  # queued first: its bytes are kept
    live = frame_body("cam-live", 3)  # inline only: no bytes kept, drawn on a placeholder

    async def scenario(devtools_port: int) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
        database = Database(settings.sql_url, secret_key=secret_key)  # uvicorn migrated it
        try:
            admin_key = database.create_api_key("admin", "test")[1]
            read_key = database.create_api_key("read", "page")[1]
        finally:
            database.dispose()
        admin = {"Authorization": f"Bearer {admin_key}"}
        async with httpx.AsyncClient(base_url=base, timeout=10, headers=admin) as http:
            created = await http.post(
                f"{API}/providers",
                json={
                    "provider_name": "simulator",
                    "provider_type": "http_api",
                    "endpoint_url": simulator.detect_url("detectflow"),
                    "confidence_threshold": 0.3,
                    "is_active": True,
                },
            )
            assert created.status_code == 201, created.text
            queued = await http.post(f"{API}/send-frame?mode=queue", json=kept)
            assert queued.status_code == 202, queued.text

            targets = httpx.get(f"http://127.0.0.1:{devtools_port}/json/list").json()
            page = next(t for t in targets if t["type"] == "page")
            async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
                cdp = _Cdp(ws)
                await cdp.send("Runtime.enable")
                await cdp.send("Page.enable")
                await cdp.send("Page.navigate", url=f"{base}/?token={read_key}")
                await cdp.wait_for(
                    "document.getElementById('connection')?.dataset.state === 'live'"
                )

                sent = []
                for body in (kept, live):
                    response = await http.post(f"{API}/send-frame", json=body)
                    data = response.json()["data"]
                    assert data["success"] is True and data["detection_count"] >= 1, data
                    sent.extend(data["detections"])
                await cdp.wait_for(
                    f"""{_shows_boxes(d["id"] for d in sent)}
                        && document.querySelector('[data-camera-id="cam-kept"]')
                             ?.dataset.frame === 'image'
                        && document.querySelector('[data-camera-id="cam-kept"] img')
                             ?.naturalWidth > 0
                        && document.querySelector('[data-camera-id="cam-live"]')
                             ?.dataset.frame === 'placeholder'
                        && document.querySelectorAll('.camera').length === 2
                        && document.getElementById('stat-total').textContent === '{len(sent)}'"""
                )
                # A newer frame of a camera replaces that camera's boxes, and only those.
                response = await http.post(f"{API}/send-frame", json=frame_body("cam-live", 4))
                newer_frame = response.json()["data"]
                newer = newer_frame["detections"]
                sent = [d for d in sent if d["camera_id"] != "cam-live"] + newer
                await cdp.wait_for(
                    f"""{_shows_boxes(d["id"] for d in sent)}
                        && document.querySelector('[data-camera-id="cam-live"]')
                             .dataset.frameId === {json.dumps(newer_frame["frame_id"])}"""
                )
                await cdp.send(
                    "Runtime.evaluate", expression="document.fonts.ready", awaitPromise=True
                )
                state = json.loads(await cdp.evaluate(_PAGE_STATE))
                shot = await cdp.send("Page.captureScreenshot", format="png")
                png = base64.b64decode(shot["data"])
                assert png.startswith(b"\x89PNG") and len(png) > 1000
                if os.environ.get(SCREENSHOT_ENV):
                    Path(os.environ[SCREENSHOT_ENV]).write_bytes(png)
                return state, sent, cdp.exceptions

    with (
        Uvicorn(app, free_port),
        _browser(binary, tmp_path / "profile", tmp_path / "chromium.log") as devtools_port,
    ):
        state, sent, exceptions = asyncio.run(scenario(devtools_port))

    assert exceptions == [], exceptions
    boxes = {b["id"]: b for b in state["boxes"]}
    for d in sent:
        box = boxes[d["id"]]
        assert box["camera"] == d["camera_id"]
        for side, field in (("left", "x"), ("top", "y"), ("width", "width"), ("height", "height")):
            assert box[side] == pytest.approx(d["bbox"][field] * 100, abs=0.01), (side, d)
        assert box["label"].startswith(d["detection_type"])
    assert state["cameras"]["cam-kept"] == {"frame": "image", "frameId": "kept-7", "natural": 160}
    assert state["cameras"]["cam-live"]["frame"] == "placeholder"
    assert state["boxesStat"] == str(len(sent))
    assert state["camerasStat"] == "2"
    assert state["queueTotal"] == "1"  # the queued frame, shown from queue stats ...
    assert state["queueCompleted"] == "1"  # ... refreshed once its detections came in


@pytest.mark.browser
def test_the_page_says_so_when_its_key_is_refused(
    tmp_path: Path, free_port: int, registry: PluginRegistry, secret_key: str
) -> None:
    binary = _chromium()
    settings = Settings(data_dir=tmp_path, secret_key=secret_key, auth_mode="required")
    app = create_app(settings, registry=registry)

    async def scenario(devtools_port: int) -> tuple[str, list[str]]:
        targets = httpx.get(f"http://127.0.0.1:{devtools_port}/json/list").json()
        page = next(t for t in targets if t["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            cdp = _Cdp(ws)
            await cdp.send("Runtime.enable")
            await cdp.send("Page.navigate", url=f"http://127.0.0.1:{free_port}/?token=dfk_bad")
            await cdp.wait_for("document.getElementById('connection')?.dataset.state === 'refused'")
            notice: str = await cdp.wait_for(
                "!document.getElementById('notice').hidden"
                " && document.getElementById('notice').textContent"
            )
            return notice, cdp.exceptions

    with (
        Uvicorn(app, free_port),
        _browser(binary, tmp_path / "profile", tmp_path / "chromium.log") as devtools_port,
    ):
        notice, exceptions = asyncio.run(scenario(devtools_port))

    assert "?token=" in notice
    assert exceptions == [], exceptions


@pytest.mark.browser
def test_each_camera_tile_shows_its_status_polled_from_the_api(
    tmp_path: Path, free_port: int, registry: PluginRegistry, secret_key: str
) -> None:
    """Configured cameras get tiles from ``/api/v1/cameras/status`` (before any
    detection): online with rates, offline with the reader's last error, and a
    change shows on the next poll. The board is the one a flow's feed writes."""
    binary = _chromium()
    settings = Settings(data_dir=tmp_path, secret_key=secret_key)
    cache = MemoryCache()
    app = create_app(settings, registry=registry, cache=cache, bus=MemoryBus())
    base = f"http://127.0.0.1:{free_port}"
    board = CameraStatusBoard(cache)

    def tile(camera_id: str) -> str:
        return f"document.querySelector('[data-camera-id=\"{camera_id}\"]')"

    async def scenario(devtools_port: int) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        database = Database(settings.sql_url, secret_key=secret_key)  # uvicorn migrated it
        try:
            for camera_id in ("door", "yard"):
                database.create_camera(Camera(id=camera_id, url="rtsp://cam/stream"))
        finally:
            database.dispose()
        board.connected("door")
        board.sampled("door", 5)
        board.completed("door", 40.0)
        board.disconnected("yard", "401 Unauthorized")
        board.flush(force=True)

        targets = httpx.get(f"http://127.0.0.1:{devtools_port}/json/list").json()
        page = next(t for t in targets if t["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            cdp = _Cdp(ws)
            await cdp.send("Runtime.enable")
            await cdp.send("Page.navigate", url=f"{base}/")
            status = "querySelector('.camera__status')"
            error = "querySelector('.camera__error')"
            first = await cdp.wait_for(
                f"""{tile("door")}?.dataset.status === 'online'
                    && {tile("yard")}?.dataset.status === 'offline'
                    && [{tile("door")}.{status}.textContent,
                        {tile("yard")}.{status}.textContent,
                        {tile("yard")}.{error}.textContent,
                        String({tile("door")}.{error}.hidden)]"""
            )
            board.disconnected("door", "stalled: no frame for 10 s")  # written at once
            later = await cdp.wait_for(
                f"""{tile("door")}?.dataset.status === 'offline'
                    && [{tile("door")}.{status}.textContent, {tile("door")}.{error}.textContent]"""
            )
            return first, later, cdp.exceptions

    with (
        Uvicorn(app, free_port),
        _browser(binary, tmp_path / "profile", tmp_path / "chromium.log") as devtools_port,
    ):
        first, later, exceptions = asyncio.run(scenario(devtools_port))

    assert exceptions == [], exceptions
    door, yard, yard_error, door_error_hidden = first
    assert door.startswith("online · ") and "fps sampled" in door and "fps detected" in door
    assert "40 ms inference" in door
    assert yard == "offline" and yard_error == "401 Unauthorized" and door_error_hidden == "true"
    assert later == ["offline", "stalled: no frame for 10 s"]
