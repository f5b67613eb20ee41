"""An MJPEG IP camera on loopback: a real HTTP server sending multipart/x-mixed-replace.

As IP cameras do, ``GET /video.mjpg`` answers one endless response whose
parts are JPEG images, one every ``1 / fps`` seconds. For the failure tests:
``GET /secure.mjpg`` wants HTTP basic auth (``user:secret``) and answers 401
without it, ``GET /page.html`` is not video, :meth:`MjpegCamera.stall` stops
sending parts while keeping the connection open, and :meth:`MjpegCamera.drop`
cuts every open stream.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, ImageDraw

BOUNDARY = "detectflowframe"
USER, PASSWORD = "user", "secret"


def jpeg_frames(count: int, width: int = 320, height: int = 240) -> list[bytes]:
    """``count`` JPEGs of a white square moving across a grey background."""
    frames = []
    for index in range(count):
        image = Image.new("RGB", (width, height), (90, 90, 90))
        x = (index * 7) % (width - 40)
        ImageDraw.Draw(image).rectangle((x, 80, x + 40, 120), fill=(255, 255, 255))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        frames.append(buffer.getvalue())
    return frames


class MjpegCamera:
    """Serves until :meth:`close`; ``sent`` counts the parts sent on every stream."""

    def __init__(self, fps: float = 25.0) -> None:
        self.fps = fps
        self.frames = jpeg_frames(50)
        self.sent = 0
        self._stalled = threading.Event()
        self._generation = 0
        self._lock = threading.Lock()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/page.html":
                    body = b"<html><body>not a camera</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.path == "/secure.mjpg":
                    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {token}":
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                elif self.path != "/video.mjpg":
                    self.send_error(404)
                    return
                camera._stream(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def secure_url(self, password: str = PASSWORD) -> str:
        return f"http://{USER}:{password}@127.0.0.1:{self.port}/secure.mjpg"

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/page.html"

    def stall(self, stalled: bool = True) -> None:
        """Stop (or resume) sending parts; connections stay open."""
        if stalled:
            self._stalled.set()
        else:
            self._stalled.clear()

    def drop(self) -> None:
        """End every stream open now (new ones are served as usual)."""
        with self._lock:
            self._generation += 1

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            generation = self._generation
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        index = 0
        period = 1.0 / self.fps
        due = time.monotonic()
        try:
            while self._generation == generation:
                if self._stalled.is_set():
                    time.sleep(0.05)
                    continue
                image = self.frames[index % len(self.frames)]
                head = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(image)}\r\n\r\n"
                ).encode()
                handler.wfile.write(head + image + b"\r\n")
                handler.wfile.flush()
                with self._lock:
                    self.sent += 1
                index += 1
                due += period
                time.sleep(max(0.0, due - time.monotonic()))
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            return

    def close(self) -> None:
        self.drop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextmanager
def mjpeg_camera(fps: float = 25.0) -> Iterator[MjpegCamera]:
    camera = MjpegCamera(fps)
    try:
        yield camera
    finally:
        camera.close()
