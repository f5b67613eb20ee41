"""Typed, bounded reading of query strings and JSON bodies.

Every value a client sends goes through here, so a wrong type, an
out-of-range number, an unknown field or a malformed body is always a 4xx
envelope listing *all* the problems at once, never a traceback and never a
silently ignored typo. No validation library: the API is small enough that
a few explicit readers are clearer than a schema layer.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from typing import Any

from starlette.requests import ClientDisconnect, Request

from detectflow.server.errors import ApiError

__all__ = ["Body", "Query", "read_json"]

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
            summary = "; ".join(f"{e['field']}: {e['message']}" for e in self.errors)
            raise ApiError(422, "validation_error", f"invalid request: {summary}", self.errors)


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
    (``true`` is not an integer, ``"5"`` is not a number); :meth:`check` also
    rejects fields never read."""

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
        self._read.add(name)
        if name not in self.data:
            if required:
                self.error(name, "is required")
            return None
        if self.data[name] is None and required:
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
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
