"""Typed, bounded reading of query strings and JSON bodies.

Every value a client sends goes through here, so a wrong type, an
out-of-range number, an unknown field or a malformed body is always a 4xx
envelope listing *all* the problems at once, never a traceback and never a
silently ignored typo. No validation library: the API is small enough that
a few explicit readers are clearer than a schema layer.

Two checks run before any reader, once for every request:
:func:`query_control_errors` on query strings (with the path parameters'
bounds, by :func:`detectflow.server.endpoints.check_request`), and
:func:`parse_json` on every JSON body and WebSocket message. PostgreSQL
refuses NUL in text, and a 1,000-deep array overflows the parser's
recursion, so both are refused here with a 4xx rather than found by the
database or the interpreter as a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import ClientDisconnect, HTTPConnection, Request

from detectflow.server.errors import ApiError

__all__ = [
    "CONTROL_CHARACTERS",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_CHARS",
    "MAX_OFFSET",
    "Body",
    "Cursor",
    "Query",
    "decode_cursor",
    "encode_cursor",
    "parse_json",
    "query_control_errors",
    "read_json",
    "validation_error",
]

MAX_OFFSET = 10_000
"""Offsets stop here: an OFFSET reads every row it skips, so deep pages go by
``?cursor=`` (``meta.next_cursor``), which reads only the page. (Far below
SQLite's integer limit, which a larger OFFSET overflows.)"""
_CURSOR_MAX_LENGTH = 400


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a keyset page starts: after the row (created_at, id), as page number ``page``.

    Opaque to clients (``meta.next_cursor``, given back as ``?cursor=``); the
    page number rides along so ``meta.page`` keeps counting on keyset pages.
    """

    page: int
    created_at: datetime
    id: str


def encode_cursor(cursor: Cursor) -> str:
    """URL-safe base64 of ``[page, created_at, id]`` (no padding)."""
    raw = json.dumps([cursor.page, cursor.created_at.isoformat(), cursor.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> Cursor:
    """The inverse of :func:`encode_cursor`; ValueError for anything it did not make."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        page, created_at, ident = json.loads(raw)
        when = datetime.fromisoformat(created_at)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValueError("is not a cursor from meta.next_cursor") from None
    if isinstance(page, bool) or not isinstance(page, int) or page < 2:
        raise ValueError("is not a cursor from meta.next_cursor")
    if not isinstance(ident, str) or not ident or when.tzinfo is None:
        raise ValueError("is not a cursor from meta.next_cursor")
    return Cursor(page, when, ident)


MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a body or message may have; ours need 3."""
MAX_MESSAGE_CHARS = 64 * 1024
"""Longest WebSocket message the server reads."""
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
"""Unicode's Cc category: never part of an identifier, and NUL breaks PostgreSQL text."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class _Fields:
    """Collects field errors so one response can name every bad field."""

    location = ""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def error(self, name: str, message: str) -> None:
        self.errors.append({"field": f"{self.location}.{name}", "message": message})

    def _raise_if_errors(self) -> None:
        if self.errors:
            raise validation_error(self.errors)


class Query(_Fields):
    """Reads query parameters; :meth:`check` also rejects parameters never read."""

    location = "query"

    def __init__(self, request: Request) -> None:
        super().__init__()
        self._params = request.query_params
        self._read: set[str] = set()

    def _raw(self, name: str) -> str | None:
        self._read.add(name)
        values = self._params.getlist(name)
        if not values:
            return None
        if len(values) > 1:
            self.error(name, "given more than once")
            return None
        return values[0]

    def text(
        self,
        name: str,
        *,
        max_length: int = 200,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        raw = self._raw(name)
        if raw is None or raw == "":
            return None
        if len(raw) > max_length:
            self.error(name, f"must be at most {max_length} characters")
            return None
        if pattern is not None and not pattern.fullmatch(raw):
            self.error(name, "has characters that are not allowed")
            return None
        return raw

    def choice(self, name: str, choices: Collection[str]) -> str | None:
        raw = self._raw(name)
        if raw is None or raw == "":
            return None
        if raw not in choices:
            self.error(name, f"must be one of {', '.join(sorted(choices))}")
            return None
        return raw

    def integer(self, name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            self.error(name, f"must be an integer, got {raw[:40]!r}")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            self.error(name, _range_message(minimum, maximum))
            return default
        return value

    def number(
        self, name: str, *, default: float, minimum: float, maximum: float | None = None
    ) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            self.error(name, f"must be a number, got {raw[:40]!r}")
            return default
        if math.isnan(value) or value < minimum or (maximum is not None and value > maximum):
            self.error(name, _range_message(minimum, maximum))
            return default
        return value

    def cursor(self, name: str = "cursor") -> Cursor | None:
        """A keyset cursor made by :func:`encode_cursor`, or None when absent."""
        raw = self._raw(name)
        if raw is None or raw == "":
            return None
        if len(raw) > _CURSOR_MAX_LENGTH:
            self.error(name, f"must be at most {_CURSOR_MAX_LENGTH} characters")
            return None
        try:
            return decode_cursor(raw)
        except ValueError as exc:
            self.error(name, str(exc))
            return None

    def boolean(self, name: str, *, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        self.error(name, "must be true or false")
        return default

    def check(self) -> None:
        for name in sorted(set(self._params.keys()) - self._read):
            self.error(name, "unknown parameter")
        self._raise_if_errors()


class Body(_Fields):
    """Reads fields of a JSON object strictly: JSON types must match exactly
    (``true`` is not an integer, ``"5"`` is not a number, ``null`` is not an
    absent field); :meth:`check` also rejects fields never read."""

    location = "body"

    def __init__(self, data: Any) -> None:
        super().__init__()
        if not isinstance(data, dict):
            raise ApiError(422, "validation_error", "request body must be a JSON object")
        self.data: dict[str, Any] = data
        self._read: set[str] = set()

    def has(self, name: str) -> bool:
        self._read.add(name)
        return name in self.data

    def _get(self, name: str, required: bool) -> Any:
        """The value, or None when absent. ``null`` is refused: no field the readers
        below serve is nullable (a caller that allows null checks for it first)."""
        self._read.add(name)
        if name not in self.data:
            if required:
                self.error(name, "is required")
            return None
        if self.data[name] is None:
            self.error(name, "must not be null")
        return self.data[name]

    def text(
        self,
        name: str,
        *,
        required: bool = False,
        min_length: int = 0,
        max_length: int = 200,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(name, f"must be a string, got {_kind(value)}")
            return None
        if not min_length <= len(value) <= max_length:
            self.error(name, f"must be {min_length}-{max_length} characters long")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.error(name, "has characters that are not allowed")
            return None
        return value

    def integer(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(name, f"must be an integer, got {_kind(value)}")
            return None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.error(name, _range_message(minimum, maximum))
            return None
        return value

    def number(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
    ) -> float | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(name, f"must be a number, got {_kind(value)}")
            return None
        number = float(value)
        too_low = minimum is not None and (
            number <= minimum if exclusive_minimum else number < minimum
        )
        if too_low or (maximum is not None and number > maximum):
            low = f"greater than {minimum}" if exclusive_minimum else f"at least {minimum}"
            high = f" and at most {maximum}" if maximum is not None else ""
            self.error(name, f"must be {low}{high}")
            return None
        return number

    def boolean(self, name: str, *, required: bool = False) -> bool | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.error(name, f"must be true or false, got {_kind(value)}")
            return None
        return value

    def mapping(self, name: str, *, required: bool = False) -> dict[str, Any] | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(name, f"must be an object, got {_kind(value)}")
            return None
        return value

    def check(self) -> None:
        for name in sorted(set(self.data) - self._read):
            self.error(name, "unknown field")
        self._raise_if_errors()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _range_message(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"must be between {minimum} and {maximum}"
    if minimum is not None:
        return f"must be at least {minimum}"
    return f"must be at most {maximum}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _shown(name: str) -> str:
    """A client's name, printable in a message whatever it holds."""
    return name.encode("unicode_escape").decode("ascii")[:64]


def query_control_errors(conn: HTTPConnection) -> list[dict[str, str]]:
    """A field error for every query parameter whose name or value has a control character."""
    return [
        {"field": f"query.{_shown(name)}", "message": "has control characters"}
        for name, value in conn.query_params.multi_items()
        if CONTROL_CHARACTERS.search(name) or CONTROL_CHARACTERS.search(value)
    ]


def validation_error(errors: list[dict[str, str]]) -> ApiError:
    """The 422 for field errors: every one named in the message and in ``details``."""
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return ApiError(422, "validation_error", f"invalid request: {summary}", errors)


_SPECIAL = re.compile(rb'[\[\]{}"\\]')
"""The only bytes that decide nesting: brackets, quotes and the escapes inside strings."""


def _too_deep(raw: bytes, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit``, found without parsing
    (the parser is what a deep document overflows). Brackets inside strings do
    not count.

    A document with no more than ``limit`` opening brackets cannot be too
    deep, and counting them runs at memory speed: a send-frame body (one
    object, ~200 KB of base64) is cleared in microseconds, where scanning it
    cost ~2.5 ms a request. Only other documents are walked, visiting just
    the bytes that matter.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    in_string = False
    skip = -1
    for match in _SPECIAL.finditer(raw):
        at = match.start()
        if at < skip:  # the byte a backslash escaped
            continue
        byte = raw[at]
        if in_string:
            if byte == 0x5C:  # backslash: the next byte is escaped
                skip = at + 2
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _nul_field(data: Any, location: str) -> str | None:
    """The dotted path of the first string (key or value) holding NUL, if any."""
    stack: list[tuple[str, Any]] = [(location, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return where
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{where}.{_shown(key)}"
                if "\x00" in key:
                    return name
                stack.append((name, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def parse_json(raw: bytes | str, *, location: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse one JSON document a client sent: 400 when it is not JSON or nests
    deeper than ``max_depth``, 422 when any string in it holds NUL."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _too_deep(data, max_depth):
        raise ApiError(
            400,
            "too_deeply_nested",
            f"JSON nests arrays/objects deeper than {max_depth} levels",
        )
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        what = "request body" if location == "body" else "message"
        raise ApiError(400, "invalid_json", f"{what} is not valid JSON: {exc}") from None
    if b"\\u0000" in data:  # NUL can only arrive escaped: a raw one is invalid JSON
        where = _nul_field(value, location)
        if where is not None:
            raise validation_error([{"field": where, "message": "has a NUL character"}])
    return value


async def read_json(request: Request, *, max_bytes: int, allow_empty: bool = False) -> Any:
    """Read and parse a JSON body of at most ``max_bytes``.

    The declared Content-Length is checked before reading anything and the
    running total while reading, so a client that lies about the length, or
    sends none (chunked), still cannot make the server buffer more than the
    limit. With ``allow_empty`` an empty body reads as ``{}`` (all fields optional).
    """
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise ApiError(
                415,
                "unsupported_media_type",
                f"expected Content-Type application/json, got {media or 'nothing'!r}",
            )
    too_large = ApiError(413, "payload_too_large", f"request body is larger than {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", "Content-Length is not a number") from None
        if length > max_bytes:
            raise too_large
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "bad_request", "client disconnected while sending the body") from None
    raw = b"".join(chunks)
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "invalid_json", "request body is empty; expected a JSON object")
    return parse_json(raw)
