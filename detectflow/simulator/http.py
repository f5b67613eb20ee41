"""The simulator's HTTP server (aiohttp): both ``http_api`` dialects, health and stats."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import asdict
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

from detectflow.adapters._http_dialects import (
    DEEPSTACK_DETECT_PATH,
    deepstack_answer,
    deepstack_error,
)
from detectflow.core.images import image_info
from detectflow.core.models import RawDetection
from detectflow.simulator.answers import (
    SimulatedDetection,
    SimulatorStats,
    check_rates,
    simulate_detections,
)

DETECT_PATHS = {"detectflow": "/detect", "deepstack": DEEPSTACK_DETECT_PATH}
_DEEPSTACK_DEFAULT_MIN_CONFIDENCE = 0.4
_MAX_BODY = 16 * 1024 * 1024  # a 10 MiB frame in base64, with room to spare
_MALFORMED = b'{"detections": [{"label": "person", "confidence": 0.9, "box": [0.1, '

Dialect = Literal["detectflow", "deepstack"]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Simulator:
    """The simulated provider; ``async with Simulator(...) as sim:`` serves on loopback."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        malformed_rate: float = 0.0,
        fail_first: int = 0,
        api_key: str | None = None,
        seed: int = 0,
        hang_seconds: float = 300.0,
        answers: Callable[[bytes, int, int], list[SimulatedDetection]] | None = None,
    ) -> None:
        """``answers`` scripts the boxes (image, width, height -> boxes), for scenes
        whose objects must move as a test says; by default they derive from the bytes."""
        check_rates(error_rate, timeout_rate, malformed_rate)
        if latency < 0 or hang_seconds < 0:
            raise ValueError("latency and hang_seconds must be >= 0")
        if fail_first < 0:
            raise ValueError(f"fail_first must be >= 0, got {fail_first!r}")
        self.host = host
        self.port = port
        self.latency = latency
        self.error_rate = error_rate
        self.timeout_rate = timeout_rate
        self.malformed_rate = malformed_rate
        self.fail_first = fail_first
        self.api_key = api_key or None
        self.seed = seed
        self.hang_seconds = hang_seconds
        self.answers = answers or simulate_detections
        self.stats = SimulatorStats()
        self._rng = random.Random(seed)
        self._seen: dict[bytes, int] = {}
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8001``; valid once started."""
        if self._runner is None:
            raise RuntimeError("the simulator is not running")
        return f"http://{self.host}:{self.port}"

    def detect_url(self, dialect: Dialect = "detectflow") -> str:
        """The endpoint_url a provider config of this dialect should use."""
        if dialect not in DETECT_PATHS:
            raise ValueError(f"unknown dialect {dialect!r}; use detectflow or deepstack")
        return self.url + DETECT_PATHS[dialect]

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=_MAX_BODY)
        app.add_routes(
            [
                web.post(DETECT_PATHS["detectflow"], self._detectflow),
                web.post(DETECT_PATHS["deepstack"], self._deepstack),
                web.get("/v1/server/status/ping", self._ping),
                web.get("/health", self._health),
                web.get("/stats", self._stats),
            ]
        )
        self._stopping = asyncio.Event()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving; requests hanging on purpose are released first. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._stopping is not None:
            self._stopping.set()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- handlers ----------------------------------------------------------

    async def _detectflow(self, request: web.Request) -> web.StreamResponse:
        try:
            self.stats.requests += 1
            self._authorize(request, None)
            try:
                body = await request.json(loads=json.loads)
                if not isinstance(body, dict):
                    raise TypeError("the body must be a JSON object")
                image = base64.b64decode(body["image"], validate=True)
                threshold = float(body.get("min_confidence") or 0.0)
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise _BadRequest(400, f"request is not the detectflow JSON shape: {exc}") from None
            width, height = self._size(image, body.get("width"), body.get("height"))
            fault = await self._fault(image)
            if fault is not None:
                return fault
            detections = [
                {
                    "label": d.label,
                    "confidence": d.confidence,
                    "box": d.fractions(width, height),
                    "format": "xyxy",
                    "units": "fraction",
                }
                for d in self.answers(image, width, height)
                if d.confidence >= threshold
            ]
            self.stats.answered += 1
            return _json({"detections": detections, "simulated": True})
        except _BadRequest as exc:
            return self._refuse(exc, {"error": exc.message})

    async def _deepstack(self, request: web.Request) -> web.StreamResponse:
        try:
            self.stats.requests += 1
            try:
                form = await request.post()
            except ValueError as exc:
                raise _BadRequest(400, f"request is not multipart form data: {exc}") from None
            key = form.get("api_key")
            self._authorize(request, key if isinstance(key, str) else None)
            field = form.get("image")
            if not isinstance(field, web.FileField):
                raise _BadRequest(400, "no image file in field 'image'")
            image = field.file.read()
            raw = form.get("min_confidence")
            try:
                threshold = (
                    float(raw) if isinstance(raw, str) else _DEEPSTACK_DEFAULT_MIN_CONFIDENCE
                )
            except ValueError:
                raise _BadRequest(400, f"min_confidence is not a number: {raw!r}") from None
            width, height = self._size(image, None, None)
            fault = await self._fault(image, deepstack=True)
            if fault is not None:
                return fault
            predictions = [
                RawDetection(
                    d.label, d.confidence, (d.x_min, d.y_min, d.x_max, d.y_max), "xyxy", "pixel"
                )
                for d in self.answers(image, width, height)
                if d.confidence >= threshold
            ]
            self.stats.answered += 1
            return _json(
                deepstack_answer(
                    predictions,
                    message=f"Found {len(predictions)} objects (simulated)",
                    moduleId="detectflow-simulator",
                    moduleName="detectflow simulator (synthetic detections)",
                    command="detect",
                    inferenceMs=0,
                    processMs=0,
                    analysisRoundTripMs=0,
                )
            )
        except _BadRequest as exc:
            return self._refuse(exc, deepstack_error(exc.message))

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        return _json({"success": True})

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return _json({"status": "ok", "simulator": True})

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return _json(asdict(self.stats))

    # -- behaviour ---------------------------------------------------------

    def _authorize(self, request: web.Request, form_key: str | None) -> None:
        if self.api_key is None:
            return
        if request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return
        if form_key is not None and form_key == self.api_key:
            return
        raise _BadRequest(401, "missing or wrong API key")

    @staticmethod
    def _size(image: bytes, width: Any, height: Any) -> tuple[int, int]:
        info = image_info(image)
        if info is None:
            raise _BadRequest(400, "image is not a JPEG, PNG or WebP")
        w = info.width or (width if isinstance(width, int) else None)
        h = info.height or (height if isinstance(height, int) else None)
        if not w or not h or w < 1 or h < 1:
            raise _BadRequest(400, "the image's width and height cannot be read")
        return w, h

    async def _fault(self, image: bytes, *, deepstack: bool = False) -> web.StreamResponse | None:
        """Decide this request's fate; None means answer normally after ``latency``."""
        if self.fail_first:
            key = hashlib.sha256(image).digest()
            seen = self._seen.get(key, 0)
            if seen < self.fail_first:
                self._seen[key] = seen + 1
                self.stats.failed_first += 1
                return _error(503, f"simulated failure {seen + 1} of {self.fail_first}", deepstack)
        draw = self._rng.random()
        if draw < self.error_rate:
            self.stats.errors += 1
            return _error(503, "simulated provider error", deepstack)
        draw -= self.error_rate
        if draw < self.timeout_rate:
            self.stats.timeouts += 1
            await self._wait(self.hang_seconds)
            return _error(503, "simulated timeout ended", deepstack)
        draw -= self.timeout_rate
        if self.latency:
            await asyncio.sleep(self.latency)
        if draw < self.malformed_rate:
            self.stats.malformed += 1
            return web.Response(body=_MALFORMED, content_type="application/json")
        return None

    async def _wait(self, seconds: float) -> None:
        """Sleep, but wake at once when the simulator stops."""
        if self._stopping is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _refuse(self, exc: _BadRequest, body: dict[str, Any]) -> web.StreamResponse:
        if exc.status == 401:
            self.stats.unauthorized += 1
        else:
            self.stats.bad_requests += 1
        return _json(body, status=exc.status)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _error(status: int, message: str, deepstack: bool) -> web.Response:
    body: dict[str, Any] = deepstack_error(message) if deepstack else {"error": message}
    return _json(body, status=status)
