"""The REST wire of the open inference protocol, on httpx.

``GET {model}`` is the metadata, ``GET {model}/ready`` the readiness,
``POST {model}/infer`` the inference with the binary tensor extension (see
:mod:`.tensors`; option ``binary_data=false`` sends JSON tensors for servers
without it). As in the ``http_api`` adapter, requests go straight to an
``httpx_aiohttp`` transport without an ``httpx.AsyncClient``: the client's
cookie, auth and redirect layers cost more CPU per call than the transport
(bench/http_clients.py) and none is needed here.

Statuses: 429 and 5xx are transient (a model server answers 503 while a
model loads), other 4xx permanent; a refused or dropped connection and a
timeout are transient.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from detectflow.adapters.kserve.endpoint import ModelEndpoint
from detectflow.adapters.kserve.metadata import ModelMetadata, metadata_from_json
from detectflow.adapters.kserve.tensors import (
    HEADER_LENGTH,
    InferRequest,
    InferResult,
    decode_rest_response,
    encode_rest_request,
)
from detectflow.core.errors import PermanentProviderError, ProviderError, TransientProviderError

__all__ = ["RestClient"]

_USER_AGENT = "detectflow-kserve-adapter"
_CHUNK = 1 << 20
"""Bodies past this go out in chunks of it: aiohttp warns that one large bytes
write may hold the event loop, and an image batch is several megabytes."""


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    view = memoryview(body)
    for start in range(0, len(view), _CHUNK):
        yield bytes(view[start : start + _CHUNK])


class RestClient:
    """One model behind one keep-alive pool, bound to the loop of its first call."""

    def __init__(
        self,
        endpoint: ModelEndpoint,
        *,
        timeout: float,
        api_key: str | None = None,
        binary: bool = True,
        max_connections: int = 256,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.binary = binary
        self.max_connections = max_connections
        self.model_url = httpx.URL(endpoint.model_url)
        self._ready_url = httpx.URL(endpoint.model_url + "/ready")
        self._infer_url = httpx.URL(endpoint.model_url + "/infer")
        self._headers = {"User-Agent": _USER_AGENT}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)}
        self._transport: AiohttpTransport | None = None
        self._closed = False

    def _pool(self) -> AiohttpTransport:
        if self._closed:
            raise PermanentProviderError(f"kserve client for {self.model_url} is closed")
        if self._transport is None:
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            )
            self._transport = AiohttpTransport(limits=limits)
        return self._transport

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        content: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = {**self._headers, **(headers or {})}
        if len(content) > _CHUNK:
            all_headers["Content-Length"] = str(len(content))
        request = httpx.Request(
            method,
            url,
            content=_chunks(content) if len(content) > _CHUNK else content,
            headers=all_headers,
            extensions=self._extensions,
        )
        transport = self._pool()
        try:
            async with asyncio.timeout(self.timeout):
                response = await transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                return response
        except TimeoutError:
            raise TransientProviderError(
                f"model server at {url} did not answer within {self.timeout:g} s"
            ) from None
        except (httpx.TransportError, httpx.StreamError, aiohttp.ClientError, OSError) as exc:
            cause = exc.__cause__ or exc
            if isinstance(cause, TimeoutError):
                raise TransientProviderError(
                    f"model server at {url} did not answer within {self.timeout:g} s"
                ) from None
            reason = str(cause) or type(cause).__name__
            raise TransientProviderError(
                f"could not reach model server at {url}: {reason}"
            ) from None

    async def metadata(self) -> ModelMetadata:
        response = await self._send("GET", self.model_url)
        _check(response, "model metadata")
        try:
            body = json.loads(response.content)
        except ValueError:
            raise PermanentProviderError("malformed model metadata: not JSON") from None
        return metadata_from_json(body)

    async def ready(self) -> bool:
        response = await self._send("GET", self._ready_url)
        status = response.status_code
        if 200 <= status < 300:
            return True
        if status == 429 or status >= 500:  # up, but not (yet) serving this model
            return False
        _check(response, "model readiness")  # 404: no such model, a permanent error
        return False

    async def infer(self, request: InferRequest) -> InferResult:
        body, header_length = encode_rest_request(request, binary=self.binary)
        headers = {
            "Content-Type": "application/octet-stream" if self.binary else "application/json"
        }
        if header_length is not None:
            headers[HEADER_LENGTH] = str(header_length)
        response = await self._send("POST", self._infer_url, body, headers)
        _check(response, "infer")
        length = response.headers.get(HEADER_LENGTH)
        try:
            json_length = int(length) if length is not None else None
        except ValueError:
            raise PermanentProviderError(
                f"malformed infer answer: {HEADER_LENGTH} {length!r}"
            ) from None
        return decode_rest_response(response.content, json_length)

    async def aclose(self) -> None:
        self._closed = True
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()


def _check(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = _error_detail(response.content)
    message = f"{what} answered HTTP {status}" + (f": {detail}" if detail else "")
    error: ProviderError
    if status == 429 or status >= 500:
        error = TransientProviderError(message, status=status)
    else:
        error = PermanentProviderError(message, status=status)
    raise error


def _error_detail(content: bytes) -> str:
    """The ``{"error": "..."}`` (or FastAPI's ``{"detail": ...}``) of an answer, if any."""
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return content[:200].decode("utf-8", "replace").strip()
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if body.get(key):
                return str(body[key])[:500]
    return ""
