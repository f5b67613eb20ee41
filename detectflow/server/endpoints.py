"""Each endpoint declared once: path, handler, required scope and OpenAPI operation.

An :class:`Endpoint` holds a path template, its path parameters and one
:class:`Operation` per method. Everything else is derived from it, so
nothing can drift: the Starlette route (:attr:`Endpoint.route`), the scope
a request needs (checked by that route before the handler runs), and the
operation in ``/openapi.json`` (:func:`detectflow.server.openapi.build_spec`).
A route cannot exist without an operation, and an operation cannot exist
without the scope it needs: ``scope`` has no default.

Every HTTP request that reaches a handler has passed the same two checks at
the boundary, in this order: its API key against the operation's scope
(a 401/403 before anything about the request is examined), then its path
parameters and query string for control characters (a 422: PostgreSQL
refuses NUL in text, and no identifier here has a use for the others).
JSON bodies get their checks where they are read (:func:`params.read_json`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from detectflow.server.auth import authorize
from detectflow.server.errors import ApiError, error_response
from detectflow.server.params import CONTROL_CHARACTERS, query_control_errors, validation_error
from detectflow.store.keys import Scope as KeyScope

__all__ = [
    "BODY_ERRORS",
    "NO_CONTROL_PATTERN",
    "READ_ERRORS",
    "SEGMENT",
    "UUID_PATTERN",
    "Endpoint",
    "HttpHandler",
    "Operation",
    "PathParam",
    "Schema",
    "WebSocketHandler",
    "check_request",
    "http",
    "static_files",
    "websocket",
]

Schema = dict[str, Any]
HttpHandler = Callable[[Request], Awaitable[Response]]
WebSocketHandler = Callable[[WebSocket], Awaitable[None]]

READ_ERRORS = (422, 500)
"""Every handler checks its query string (unknown or malformed parameter: 422)."""
BODY_ERRORS = (400, 413, 415, 422, 500)

SEGMENT = "[^/]+"
"""Any one path segment: the router takes it, the boundary check refuses control characters."""
NO_CONTROL_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
"""What the boundary lets through, as the document tells clients."""
_DOCUMENTED_SEGMENT = "[^/\\u0000-\\u001f\\u007f-\\u009f]+"
UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
"""Ids this server makes (``str(uuid)``: lower-case hex)."""


def _convertor(pattern: str) -> Convertor[str]:
    """A Starlette convertor matching ``pattern`` (its ``regex`` is a class attribute)."""

    class PatternConvertor(Convertor[str]):
        regex = pattern

        def convert(self, value: str) -> str:
            return value

        def to_string(self, value: str) -> str:
            return value

    return PatternConvertor()


@dataclass(frozen=True, slots=True)
class PathParam:
    """A path parameter and its bounds, for the router, the boundary and the document.

    The router matches only ``pattern``: a path that does not match is
    another route or a 404, never a lookup of something that cannot exist
    (``GET /{detection_id}`` with ``live``). ``valid`` and ``max_length``
    are checked at the boundary with a 422 naming the parameter (a value
    that is the right kind of thing, but malformed).
    """

    name: str
    pattern: str = SEGMENT
    max_length: int | None = None
    valid: str | None = None
    description: str = ""

    def errors(self, value: str) -> list[str]:
        """What is wrong with ``value`` (the router already matched ``pattern``)."""
        if CONTROL_CHARACTERS.search(value):
            return ["has control characters"]
        if self.max_length is not None and len(value) > self.max_length:
            return [f"must be at most {self.max_length} characters"]
        if self.valid is not None and not re.fullmatch(self.valid, value):
            return [f"must match {self.valid}"]
        return []

    @property
    def convertor(self) -> str:
        """The name of the Starlette convertor for ``pattern`` (registered on first use)."""
        name = (
            "detectflow_" + hashlib.sha1(self.pattern.encode(), usedforsecurity=False).hexdigest()
        )
        register_url_convertor(name, _convertor(self.pattern))
        return name

    @property
    def schema(self) -> Schema:
        pattern = self.valid or (_DOCUMENTED_SEGMENT if self.pattern == SEGMENT else self.pattern)
        schema: Schema = {"type": "string", "minLength": 1, "pattern": f"^{pattern}$"}
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        return schema

    def document(self) -> Schema:
        param: Schema = {"name": self.name, "in": "path", "required": True, "schema": self.schema}
        if self.description:
            param["description"] = self.description
        return param


@dataclass(frozen=True, slots=True)
class Operation:
    """One method of an endpoint: who may call it, what runs, and what clients see.

    ``scope`` is the API-key scope the call needs (None: always open, even
    in the ``required`` auth mode); ``ok`` maps each success status to its
    schema (None: no JSON body). ``parameters`` are query parameters; path
    parameters belong to the endpoint.
    """

    method: str
    operation_id: str
    summary: str
    scope: KeyScope | None
    ok: Mapping[int, Schema | None]
    handler: HttpHandler | None = None
    errors: Sequence[int] = READ_ERRORS
    parameters: Sequence[Schema] = ()
    body: Schema | None = None
    body_required: bool = True
    tag: str = "detections"
    extra: Mapping[str, Any] = field(default_factory=dict)
    response_extras: Mapping[int, Schema] = field(default_factory=dict)
    """Added to a response object by status: its ``headers`` and ``links``."""


_PARAM = re.compile(r"{([^}:]+)}")


def check_request(request: Request, params: Sequence[PathParam]) -> None:
    """The boundary: a 422 naming every path parameter out of its bounds and
    every query parameter with a control character."""
    errors = [
        {"field": f"path.{p.name}", "message": message}
        for p in params
        for message in p.errors(str(request.path_params.get(p.name, "")))
    ]
    errors.extend(query_control_errors(request))
    if errors:
        raise validation_error(errors)


@dataclass(frozen=True, eq=False)
class Endpoint:
    """A path, its parameters, its operations, and the route built from them."""

    path: str
    operations: tuple[Operation, ...]
    params: tuple[PathParam, ...]
    route: BaseRoute


def _router_path(path: str, params: Sequence[PathParam]) -> str:
    by_name = {p.name: p for p in params}
    named = set(_PARAM.findall(path))
    if named != set(by_name):
        raise ValueError(f"{path}: path parameters {sorted(named)}, declared {sorted(by_name)}")
    return _PARAM.sub(lambda m: f"{{{m[1]}:{by_name[m[1]].convertor}}}", path)


def http(path: str, *operations: Operation, params: Sequence[PathParam] = ()) -> Endpoint:
    """An HTTP endpoint; each operation needs a handler. One route per path, so a
    405 names every allowed method."""
    by_method: dict[str, Operation] = {}
    for op in operations:
        if op.handler is None:
            raise ValueError(f"{op.method} {path} has no handler")
        by_method[op.method.upper()] = op

    async def endpoint(request: Request) -> Response:
        op = by_method[request.method if request.method != "HEAD" else "GET"]
        await authorize(request, op.scope)
        check_request(request, params)
        assert op.handler is not None
        return await op.handler(request)

    route = Route(
        _router_path(path, params),
        endpoint,
        methods=list(by_method),
        name=operations[0].operation_id,
    )
    return Endpoint(path, tuple(operations), tuple(params), route)


def websocket(
    path: str, handler: WebSocketHandler, operation: Operation, params: Sequence[PathParam] = ()
) -> Endpoint:
    """A WebSocket, documented as the GET that upgrades. Its handler authenticates
    (it must accept the socket first to say why it refuses)."""
    route = WebSocketRoute(_router_path(path, params), handler, name=operation.operation_id)
    return Endpoint(path, (operation,), tuple(params), route)


class _GuardedFiles:
    """Files under a mount, behind the same boundary checks as every route."""

    def __init__(self, app: ASGIApp, scope: KeyScope | None) -> None:
        self.app = app
        self.scope = scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            try:
                await authorize(request, self.scope)
                if CONTROL_CHARACTERS.search(scope["path"]):
                    raise validation_error(
                        [{"field": "path.path", "message": "has control characters"}]
                    )
            except ApiError as exc:
                response = error_response(
                    exc.status, exc.code, exc.message, exc.details, exc.headers
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def static_files(path: str, app: ASGIApp, operation: Operation, name: str) -> Endpoint:
    """Static files mounted at ``path``; documented as ``GET {path}/{path}``."""
    route = Mount(path, app=_GuardedFiles(app, operation.scope), name=name)
    return Endpoint(f"{path}/{{path}}", (operation,), (PathParam("path"),), route)
