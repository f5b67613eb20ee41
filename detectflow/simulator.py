"""A simulated detection provider: synthetic answers, real HTTP, chosen faults.

Demos, tests and benchmarks need a provider that answers like a real one,
fast, and misbehaves on request, without a GPU or a model. The simulator is
an aiohttp.web server that speaks both ``http_api`` dialects:

- ``POST /detect``: the detectflow JSON dialect (boxes in fractions);
- ``POST /v1/vision/detection``: the DeepStack / CodeProject.AI multipart
  dialect (boxes in integer pixels, CodeProject.AI's extra fields included);
- ``GET /v1/server/status/ping``, ``GET /health``, ``GET /stats``.

Its detections are NOT real: they are derived from ``sha256(image)``, so the
same bytes always get the same 1-3 boxes (labels person, face, car, truck,
bicycle, dog), whatever the dialect, seed or faults. ``min_confidence`` is
honoured as a real provider would; the first box is always >= 0.6 so a demo
at the default threshold always shows something.

Faults, decided by one RNG seeded with ``seed`` (one draw per request, in
arrival order): ``error_rate`` answers 503, ``timeout_rate`` hangs for
``hang_seconds`` before answering, ``malformed_rate`` answers invalid JSON.
``fail_first=N`` answers 503 to the first N requests for each frame, which
lets a test prove retries deterministically. ``api_key`` makes requests
without the right bearer token (or DeepStack ``api_key`` form field) get 401.

``detectflow simulate --protocol grpc`` (``detectflow.provider.v1`` through
:class:`~detectflow.adapters.grpc.server.GrpcProviderServer`) and
``--protocol mqtt`` (MQTT 5 request/response through
:class:`~detectflow.adapters.mqtt_responder.MqttResponder`) serve the same
answers from :class:`SimulatedHandler`: same bytes, same boxes, whatever the
wire. There ``error_rate`` and ``fail_first`` answer UNAVAILABLE / status
503, ``timeout_rate`` hangs; ``malformed_rate`` is HTTP only, since those
servers encode every answer themselves.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import random
import threading
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Literal, Self

import click
from aiohttp import web

from detectflow.core.errors import PermanentProviderError, ProviderError, TransientProviderError
from detectflow.core.images import image_info
from detectflow.core.models import Frame, RawDetection

__all__ = [
    "LABELS",
    "PROTOCOLS",
    "SimulatedDetection",
    "SimulatedHandler",
    "Simulator",
    "SimulatorStats",
    "SimulatorThread",
    "run_in_thread",
    "simulate",
    "simulate_detections",
]

LABELS = ("person", "face", "car", "truck", "bicycle", "dog")
DETECT_PATHS = {"detectflow": "/detect", "deepstack": "/v1/vision/detection"}
PROTOCOLS = ("http", "grpc", "mqtt")
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883/detectflow/simulator/detect"
_DEEPSTACK_DEFAULT_MIN_CONFIDENCE = 0.4
_MAX_BODY = 16 * 1024 * 1024  # a 10 MiB frame in base64, with room to spare
_MALFORMED = b'{"detections": [{"label": "person", "confidence": 0.9, "box": [0.1, '

Dialect = Literal["detectflow", "deepstack"]


@dataclass(frozen=True, slots=True)
class SimulatedDetection:
    """One synthetic box in integer pixels of the image."""

    label: str
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int

    def fractions(self, width: int, height: int) -> list[float]:
        return [self.x_min / width, self.y_min / height, self.x_max / width, self.y_max / height]


def simulate_detections(image: bytes, width: int, height: int) -> list[SimulatedDetection]:
    """The simulator's answer for ``image``: a pure function of its bytes and size."""
    if width < 1 or height < 1:
        raise ValueError("width and height must be >= 1")
    rng = random.Random(hashlib.sha256(image).digest())
    count = rng.choice((1, 1, 2, 2, 3))
    found = []
    for index in range(count):
        label = rng.choice(LABELS)
        confidence = round(rng.uniform(0.6 if index == 0 else 0.3, 0.99), 4)
        box_w = rng.randint(max(1, width // 10), max(1, width // 2))
        box_h = rng.randint(max(1, height // 10), max(1, height // 2))
        x0 = rng.randint(0, width - box_w)
        y0 = rng.randint(0, height - box_h)
        found.append(SimulatedDetection(label, confidence, x0, y0, x0 + box_w, y0 + box_h))
    return found


@dataclass
class SimulatorStats:
    """Counts of detect requests by outcome (``requests`` is their sum)."""

    requests: int = 0
    answered: int = 0
    errors: int = 0
    timeouts: int = 0
    malformed: int = 0
    failed_first: int = 0
    unauthorized: int = 0
    bad_requests: int = 0


def _check_rates(error_rate: float, timeout_rate: float, malformed_rate: float) -> None:
    for name, rate in (
        ("error_rate", error_rate),
        ("timeout_rate", timeout_rate),
        ("malformed_rate", malformed_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {rate!r}")
    if error_rate + timeout_rate + malformed_rate > 1.0:
        raise ValueError("error_rate + timeout_rate + malformed_rate must not exceed 1")


class SimulatedHandler:
    """The simulator's answers and faults as a detect function, for gRPC and MQTT.

    ``await handler(frame)`` returns what ``POST /detect`` would (boxes as
    fractions, ``xyxy``) or raises :class:`TransientProviderError` (status
    503) for a simulated error, after hanging for a simulated timeout, or
    for one of the first ``fail_first`` tries of an image.
    """

    def __init__(
        self,
        *,
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        fail_first: int = 0,
        seed: int = 0,
        hang_seconds: float = 300.0,
    ) -> None:
        _check_rates(error_rate, timeout_rate, 0.0)
        if fail_first < 0 or hang_seconds < 0:
            raise ValueError("fail_first and hang_seconds must be >= 0")
        self.error_rate = error_rate
        self.timeout_rate = timeout_rate
        self.fail_first = fail_first
        self.hang_seconds = hang_seconds
        self.stats = SimulatorStats()
        self._rng = random.Random(seed)
        self._seen: dict[bytes, int] = {}

    async def __call__(self, frame: Frame) -> list[RawDetection]:
        self.stats.requests += 1
        width, height = frame.width, frame.height
        if not width or not height:
            self.stats.bad_requests += 1
            raise PermanentProviderError("the image's width and height cannot be read", status=400)
        if self.fail_first:
            key = hashlib.sha256(frame.image).digest()
            seen = self._seen.get(key, 0)
            if seen < self.fail_first:
                self._seen[key] = seen + 1
                self.stats.failed_first += 1
                message = f"simulated failure {seen + 1} of {self.fail_first}"
                raise TransientProviderError(message, status=503)
        draw = self._rng.random()
        if draw < self.error_rate:
            self.stats.errors += 1
            raise TransientProviderError("simulated provider error", status=503)
        if draw - self.error_rate < self.timeout_rate:
            self.stats.timeouts += 1
            await asyncio.sleep(self.hang_seconds)
            raise TransientProviderError("simulated timeout ended", status=503)
        self.stats.answered += 1
        return [
            RawDetection(d.label, d.confidence, _box(d.fractions(width, height)))
            for d in simulate_detections(frame.image, width, height)
        ]


def _box(values: list[float]) -> tuple[float, float, float, float]:
    return (values[0], values[1], values[2], values[3])


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
    ) -> None:
        _check_rates(error_rate, timeout_rate, malformed_rate)
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
                for d in simulate_detections(image, width, height)
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
                {
                    "label": d.label,
                    "confidence": d.confidence,
                    "x_min": d.x_min,
                    "y_min": d.y_min,
                    "x_max": d.x_max,
                    "y_max": d.y_max,
                }
                for d in simulate_detections(image, width, height)
                if d.confidence >= threshold
            ]
            self.stats.answered += 1
            return _json(
                {
                    "success": True,
                    "predictions": predictions,
                    "message": f"Found {len(predictions)} objects (simulated)",
                    "count": len(predictions),
                    "moduleId": "detectflow-simulator",
                    "moduleName": "detectflow simulator (synthetic detections)",
                    "command": "detect",
                    "inferenceMs": 0,
                    "processMs": 0,
                    "analysisRoundTripMs": 0,
                }
            )
        except _BadRequest as exc:
            return self._refuse(exc, {"success": False, "error": exc.message})

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
    body: dict[str, Any] = {"error": message}
    if deepstack:
        body = {"success": False, "error": message}
    return _json(body, status=status)


# -- hosting from synchronous code -----------------------------------------


class SimulatorThread:
    """A simulator serving from its own event loop in a background thread."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="detectflow-simulator", daemon=True)

    @property
    def url(self) -> str:
        return self.simulator.url

    def detect_url(self, dialect: Dialect = "detectflow") -> str:
        return self.simulator.detect_url(dialect)

    def _main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.simulator.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.simulator.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the simulator did not start within {timeout:g} s")
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread. Idempotent."""
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_in_thread(simulator: Simulator, *, timeout: float = 10.0) -> SimulatorThread:
    """Start ``simulator`` in a background thread; returns once it accepts connections."""
    handle = SimulatorThread(simulator)
    handle.start(timeout)
    return handle


# -- the command -------------------------------------------------------------


@click.command("simulate")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (http, grpc)."
)
@click.option(
    "--port",
    default=8001,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (http, grpc).",
)
@click.option(
    "--latency", default=0.0, show_default=True, type=click.FloatRange(min=0), help="Seconds."
)
@click.option("--error-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction -> 503.")
@click.option("--timeout-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction hung.")
@click.option(
    "--malformed-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction invalid JSON."
)
@click.option(
    "--fail-first", default=0, type=click.IntRange(min=0), help="503 the first N tries per frame."
)
@click.option("--api-key", default=None, help="Require this key (bearer token or form field).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fault RNG.")
@click.option(
    "--protocol",
    default="http",
    show_default=True,
    type=click.Choice(PROTOCOLS),
    help="Wire protocol to serve: http_api (both dialects), grpc or mqtt.",
)
@click.option(
    "--mqtt-url",
    default=DEFAULT_MQTT_URL,
    show_default=True,
    help="For --protocol mqtt: the broker and the request topic to answer on.",
)
def simulate(
    host: str,
    port: int,
    latency: float,
    error_rate: float,
    timeout_rate: float,
    malformed_rate: float,
    fail_first: int,
    api_key: str | None,
    seed: int,
    protocol: str,
    mqtt_url: str,
) -> None:
    """Run a SIMULATED detection provider (synthetic detections, NOT a detector).

    Over http it serves both http_api dialects: POST /detect (detectflow
    JSON) and POST /v1/vision/detection (DeepStack / CodeProject.AI); over
    grpc detectflow.provider.v1; over mqtt MQTT 5 request/response on the
    --mqtt-url topic. Its boxes are made up from a hash of the image bytes,
    the same on every protocol, for demos, tests and benchmarks; it
    recognises nothing. Stop with Ctrl-C.
    """
    if protocol != "http":
        if malformed_rate:
            raise click.UsageError("--malformed-rate applies to --protocol http only")
        if protocol == "mqtt":
            from detectflow.adapters.mqtt_wire import parse_mqtt_url

            try:
                parse_mqtt_url(mqtt_url)
            except ValueError as exc:
                raise click.UsageError(f"--mqtt-url: {exc}") from None
        try:
            handler = SimulatedHandler(
                error_rate=error_rate, timeout_rate=timeout_rate, fail_first=fail_first, seed=seed
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        _run(_serve_other(protocol, handler, host, port, latency, api_key, mqtt_url), host, port)
        return
    try:
        simulator = Simulator(
            host=host,
            port=port,
            latency=latency,
            error_rate=error_rate,
            timeout_rate=timeout_rate,
            malformed_rate=malformed_rate,
            fail_first=fail_first,
            api_key=api_key,
            seed=seed,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _run(_serve_forever(simulator), host, port)


def _run(serving: Coroutine[Any, Any, None], host: str, port: int) -> None:
    try:
        asyncio.run(serving)
    except KeyboardInterrupt:
        click.echo("simulator stopped")
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    except ProviderError as exc:  # the MQTT broker refused or is down
        raise click.ClickException(exc.message) from None


async def _serve_other(
    protocol: str,
    handler: SimulatedHandler,
    host: str,
    port: int,
    latency: float,
    api_key: str | None,
    mqtt_url: str,
) -> None:
    """Serve ``handler`` over gRPC or MQTT until cancelled (Ctrl-C)."""
    if protocol == "grpc":
        from detectflow.adapters.grpc.server import GrpcProviderServer

        server = GrpcProviderServer(
            handler, host=host, port=port, api_key=api_key or None, latency=latency
        )
        try:
            await server.start()
        except RuntimeError as exc:  # grpcio reports a port in use this way
            raise OSError(str(exc)) from None
        try:
            click.echo(f"SIMULATED detection provider (synthetic detections) on {server.url}")
            click.echo(f"  provider type grpc, endpoint_url: {server.url}")
            await asyncio.Event().wait()
        finally:
            await server.stop()
        return
    from detectflow.adapters.mqtt_responder import MqttResponder

    responder = MqttResponder(handler, url=mqtt_url, api_key=api_key or None, latency=latency)
    try:
        await responder.start()
        click.echo(f"SIMULATED detection provider (synthetic detections) on {mqtt_url}")
        click.echo(f"  provider type mqtt, endpoint_url: {mqtt_url}")
        await asyncio.Event().wait()
    finally:
        await responder.stop()


async def _serve_forever(simulator: Simulator) -> None:
    async with simulator:
        click.echo(f"SIMULATED detection provider (synthetic detections) on {simulator.url}")
        click.echo(f"  detectflow dialect: {simulator.detect_url('detectflow')}")
        click.echo(f"  deepstack dialect:  {simulator.detect_url('deepstack')}")
        await asyncio.Event().wait()
