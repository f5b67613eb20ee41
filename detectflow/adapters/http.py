"""Provider type ``http_api``: detection services reached over HTTP.

Two dialects, chosen with ``options["dialect"]`` in the provider config.

``detectflow`` (the default; implement this one for a new service)
    ``POST {endpoint_url}`` with ``Content-Type: application/json``::

        {"camera_id": "cam-1", "frame_id": "…", "frame_number": 42,
         "timestamp": "2025-11-05T12:34:56Z", "image": "<base64 bytes>",
         "width": 640, "height": 480, "min_confidence": 0.5}

    ``frame_number``, ``width`` and ``height`` may be null. Answer ``200``::

        {"detections": [
            {"label": "person", "confidence": 0.91, "box": [0.1, 0.2, 0.5, 0.9],
             "format": "xyxy", "units": "fraction",
             "person_id": "p-7", "person_name": "Ada"}]}

    ``box`` is ``[x_min, y_min, x_max, y_max]`` for ``format`` ``"xyxy"``
    (the default) or ``[x, y, width, height]`` for ``"xywh"``; ``units`` is
    ``"fraction"`` of the image (the default) or ``"pixel"``. ``person_id``
    and ``person_name`` are optional; unknown fields are ignored. Answer
    ``429`` or ``5xx`` when busy or broken (detectflow retries), other
    ``4xx`` when the frame itself is refused (it fails at once); an
    ``{"error": "..."}`` body is quoted in the failure reason.

``deepstack`` (DeepStack, CodeProject.AI)
    ``POST {endpoint_url}`` (the full URL, e.g.
    ``http://host:32168/v1/vision/detection``) as ``multipart/form-data``
    with the file ``image``, ``min_confidence`` and, when a key is set,
    ``api_key``. Answers ``{"success": true, "predictions": [{"label",
    "confidence", "x_min", "y_min", "x_max", "y_max"}]}`` in integer pixels,
    or ``{"success": false, "error": "..."}``; CodeProject.AI's extra fields
    are ignored and its "Request queue ... is full" is retried.

Both dialects send ``api_key`` as ``Authorization: Bearer <key>`` and
``confidence_threshold`` as ``min_confidence``; ``timeout_seconds`` bounds the
whole request. Other options: ``max_connections`` (pool size, default 256),
``transport`` (``"aiohttp"``, the default, or ``"httpx"``) and ``http2``
(needs ``httpx[http2]``; implies the ``httpx`` transport).

Why the aiohttp transport, called without ``httpx.AsyncClient``: measured
by ``bench/http_clients.py`` on a 2-core machine, 32 in flight against a
50 ms server, httpx's own transport reached 0.41-0.85 of the 640 req/s
ceiling at ~2 ms CPU per request; ``httpx_aiohttp.AiohttpTransport`` behind
an ``AsyncClient`` 0.81-0.87 at ~0.4 ms; the same transport called directly,
as here, 0.90-0.93 at ~0.2 ms (bare aiohttp: 0.90-0.94). The client layer
(cookies, auth, redirects, event hooks) is all cost and no use for this
adapter. Requests and responses are still ``httpx`` objects, so any httpx
transport can stand in (``transport="httpx"`` selects httpx's own).
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from detectflow.adapters._http_dialects import (
    DIALECTS,
    Dialect,
    EncodedRequest,
    decode_deepstack,
    decode_detectflow,
    encode_deepstack,
    encode_detectflow,
    error_detail,
    is_queue_full,
    parse_json,
)
from detectflow.core.adapter import ProviderAdapter
from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, ProbeResult, ProviderConfig, RawDetection

__all__ = ["DEFAULT_MAX_CONNECTIONS", "HttpAdapter", "detectflow_provider_types"]

DEFAULT_MAX_CONNECTIONS = 256
_USER_AGENT = "detectflow-http-adapter"
_PING_PATH = "/v1/server/status/ping"


class HttpAdapter(ProviderAdapter):
    """An HTTP detection provider behind one keep-alive connection pool.

    The pool is created on first use inside the running event loop and is
    bound to it, so use one adapter per event loop; :meth:`aclose` releases it.
    """

    provider_type = "http_api"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        options = config.options
        self.dialect: Dialect = _dialect(options)
        self._http_url = _endpoint(config.endpoint_url)
        self.url = config.endpoint_url
        if not config.timeout_seconds > 0:
            raise PermanentProviderError(
                f"timeout_seconds must be > 0, got {config.timeout_seconds!r}"
            )
        self.timeout = float(config.timeout_seconds)
        self.max_connections = _positive_int(options, "max_connections", DEFAULT_MAX_CONNECTIONS)
        self.http2 = bool(options.get("http2", False))
        self.transport_name = str(options.get("transport", "httpx" if self.http2 else "aiohttp"))
        if self.transport_name not in ("aiohttp", "httpx"):
            raise PermanentProviderError(
                f"unknown http transport {self.transport_name!r}; use 'aiohttp' or 'httpx'"
            )
        if self.http2:
            _require_h2()
            if self.transport_name != "httpx":
                raise PermanentProviderError("http2 needs transport 'httpx'")
        self._headers = {"User-Agent": _USER_AGENT}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        self._boundary = uuid.uuid4().hex
        # Content types are fixed per adapter (one multipart boundary), so the
        # request headers are built once, not per frame.
        self._post_headers = {
            kind: {**self._headers, "Content-Type": kind}
            for kind in ("application/json", f"multipart/form-data; boundary={self._boundary}")
        }
        self._extensions = {
            "timeout": dict.fromkeys(("connect", "read", "write", "pool"), self.timeout)
        }
        self._transport: httpx.AsyncBaseTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # -- the pool ----------------------------------------------------------

    def _pool(self) -> httpx.AsyncBaseTransport:
        """The transport, made on first use: an aiohttp session needs a running loop."""
        loop = asyncio.get_running_loop()
        if self._closed:
            raise PermanentProviderError(f"http adapter for {self.url} is closed")
        if self._transport is None:
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            )
            if self.transport_name == "aiohttp":
                self._transport = AiohttpTransport(limits=limits)
            else:
                self._transport = httpx.AsyncHTTPTransport(limits=limits, http2=self.http2)
            self._loop = loop
        elif loop is not self._loop:
            raise PermanentProviderError(
                "http adapter used from another event loop; create one adapter per loop"
            )
        return self._transport

    async def aclose(self) -> None:
        self._closed = True
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()

    # -- detect ------------------------------------------------------------

    def encode(self, frame: Frame) -> EncodedRequest:
        threshold = self.config.confidence_threshold
        if self.dialect == "deepstack":
            return encode_deepstack(frame, threshold, self.config.api_key, self._boundary)
        return encode_detectflow(frame, threshold)

    async def detect(self, frame: Frame) -> list[RawDetection]:
        request = self.encode(frame)
        response = await self._send("POST", self._http_url, request.content, request.content_type)
        status = response.status_code
        if not 200 <= status < 300:
            raise _status_error(status, response.content, self.url)
        body = parse_json(response.content, status)
        if self.dialect == "deepstack":
            return decode_deepstack(body, status)
        return decode_detectflow(body, status)

    async def _send(
        self, method: str, url: httpx.URL, content: bytes = b"", content_type: str | None = None
    ) -> httpx.Response:
        """One request straight to the transport, whole body read, connection released.

        No ``httpx.AsyncClient`` in between: its cookie, auth, redirect and
        event-hook layers cost more CPU per request than the transport itself
        (bench/http_clients.py) and this adapter needs none of them.
        """
        transport = self._pool()
        headers = self._headers
        if content_type:
            headers = self._post_headers.get(content_type) or {
                **headers,
                "Content-Type": content_type,
            }
        request = httpx.Request(
            method, url, content=content, headers=headers, extensions=self._extensions
        )
        try:
            async with asyncio.timeout(self.timeout):
                response = await transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                return response
        except (
            TimeoutError,
            httpx.TransportError,
            httpx.StreamError,
            aiohttp.ClientError,
            OSError,
        ) as exc:
            raise self._classify(exc, url) from None

    def _classify(
        self, exc: BaseException, url: httpx.URL
    ) -> TransientProviderError | PermanentProviderError:
        # httpx_aiohttp maps a refused connection to ConnectTimeout; look at
        # the aiohttp error underneath to tell a timeout from a refusal.
        cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else None
        timed_out = isinstance(exc, TimeoutError) or (
            isinstance(exc, httpx.TimeoutException)
            and (cause is None or isinstance(cause, TimeoutError))
        )
        if timed_out:
            return TransientProviderError(
                f"provider at {url} did not answer within {self.timeout:g} s"
            )
        if isinstance(exc, httpx.UnsupportedProtocol):
            return PermanentProviderError(f"cannot call {url}: {exc}")
        reason = str(cause or exc) or type(cause or exc).__name__
        return TransientProviderError(f"could not reach provider at {url}: {reason}")

    # -- health ------------------------------------------------------------

    async def health(self) -> ProbeResult:
        """CodeProject.AI's ping when the server has one, else a probe frame."""
        if self.dialect != "deepstack":
            return await super().health()
        ping = self._http_url.copy_with(path=_PING_PATH, query=None, fragment=None)
        start = time.perf_counter()
        try:
            response = await self._send("GET", ping)
        except (TransientProviderError, PermanentProviderError) as exc:
            elapsed = (time.perf_counter() - start) * 1000
            return ProbeResult(False, elapsed, "Connection failed", exc.message)
        elapsed = (time.perf_counter() - start) * 1000
        if 200 <= response.status_code < 300:
            return ProbeResult(True, elapsed, "Connection successful (server ping)")
        if response.status_code in (404, 405):  # plain DeepStack has no ping route
            return await super().health()
        error = _status_error(response.status_code, response.content, str(ping))
        return ProbeResult(False, elapsed, "Connection failed", error.message)


def _status_error(
    status: int, content: bytes, url: str
) -> TransientProviderError | PermanentProviderError:
    detail = error_detail(content)
    message = f"provider at {url} answered HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429 or status >= 500 or is_queue_full(detail):
        return TransientProviderError(message, status=status)
    return PermanentProviderError(message, status=status)


def _dialect(options: Mapping[str, Any]) -> Dialect:
    name = options.get("dialect", "detectflow")
    for dialect in DIALECTS:
        if name == dialect:
            return dialect
    raise PermanentProviderError(
        f"unknown http dialect {name!r}; use one of: {', '.join(DIALECTS)}"
    )


def _endpoint(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
        port = parsed.port
        valid = (
            parsed.scheme in ("http", "https")
            and bool(parsed.host)
            and (port is None or 0 < port < 65536)
        )
    except (httpx.InvalidURL, TypeError):
        valid = False
    if not valid:
        raise PermanentProviderError(
            f"endpoint_url must be an http:// or https:// URL with a host, got {url!r}"
        )
    return parsed


def _positive_int(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PermanentProviderError(f"option {key} must be a positive integer, got {value!r}")
    return value


def _require_h2() -> None:
    if importlib.util.find_spec("h2") is None:
        raise PermanentProviderError("http2 needs the h2 package: pip install 'httpx[http2]'")


@hookimpl
def detectflow_provider_types() -> list[type[ProviderAdapter]]:
    return [HttpAdapter]
