"""One error envelope for every failure the API reports.

Clients get ``{"error": {"code", "message", "details"?}}`` with a status that
says whose fault it was: 4xx for anything about the request (bad JSON, wrong
types, unknown routes), 5xx only for our own faults, and never a traceback.
Handlers raise :class:`ApiError`; Starlette's own ``HTTPException`` (404 for
unknown routes, 405) is rewritten into the same envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ApiError",
    "CatchAllMiddleware",
    "error_response",
    "exception_handlers",
    "not_found",
]

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error meant for the client: its status, a stable code and a message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} {ident!r} not found")


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    code = _CODES.get(status, "error")
    try:
        default = HTTPStatus(status).phrase
    except ValueError:
        default = "Error"
    message = exc.detail if exc.detail and exc.detail != default else default
    if status == 404:
        message = f"no route for {request.method} {request.url.path}"
    elif status == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method {request.method} not allowed on {request.url.path}" + (
            f"; allowed: {allowed}" if allowed else ""
        )
    if status in (204, 304):
        return Response(status_code=status, headers=exc.headers)
    return error_response(status, code, message, headers=exc.headers)


def exception_handlers() -> dict[Any, Any]:
    """Handlers for ``Starlette(exception_handlers=...)``."""
    return {ApiError: _api_error, HTTPException: _http_exception}


class CatchAllMiddleware:
    """Turn any unexpected exception of an HTTP request into a logged 500 envelope.

    Starlette's ``ServerErrorMiddleware`` re-raises after answering, which
    makes servers log the traceback twice and test clients raise; this one
    logs once and ends the request cleanly. If the response had already
    started, there is nothing valid left to send, so it re-raises.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = error_response(500, "internal_error", "internal server error")
            await response(scope, receive, send)
