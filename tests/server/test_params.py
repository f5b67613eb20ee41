"""Query and body readers: properties over arbitrary input (Hypothesis)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from detectflow.server.errors import ApiError
from detectflow.server.params import (
    CONTROL_CHARACTERS,
    MAX_JSON_DEPTH,
    Body,
    Cursor,
    Query,
    decode_cursor,
    encode_cursor,
    parse_json,
    query_control_errors,
    read_json,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def _request(query: dict[str, str] | None = None, chunks: list[bytes] | None = None) -> Request:
    parts = list(chunks or [])
    headers = [(b"content-type", b"application/json")]

    async def receive() -> dict[str, Any]:
        if parts:
            body = parts.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(parts)}
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": headers,
        "query_string": urlencode(query or {}).encode(),
    }
    return Request(scope, receive)


@given(json_values)
def test_body_integer_accepts_exactly_in_range_integers(value: Any) -> None:
    body = Body({"n": value})
    got = body.integer("n", minimum=-5, maximum=5)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and -5 <= value <= 5:
        assert got == value and not body.errors
    else:
        assert got is None and [e["field"] for e in body.errors] == ["body.n"]


@given(json_values)
def test_body_number_accepts_exactly_in_range_numbers(value: Any) -> None:
    body = Body({"x": value})
    got = body.number("x", minimum=0.0, maximum=1.0)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and 0.0 <= value <= 1.0:
        assert got == float(value) and not body.errors
    else:
        assert got is None and len(body.errors) == 1


@given(json_values)
def test_body_text_and_boolean_check_types_strictly(value: Any) -> None:
    body = Body({"s": value, "b": value})
    text = body.text("s", max_length=10)
    flag = body.boolean("b")
    assert text == (value if isinstance(value, str) and len(value) <= 10 else None)
    assert flag == (value if isinstance(value, bool) else None)
    assert len(body.errors) == (text is None) + (flag is None)  # null is an error too


@given(st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=5))
def test_body_check_names_every_field_never_read(data: dict[str, Any]) -> None:
    body = Body({"known": 1, **data})
    body.has("known")
    unknown = sorted(set(data) - {"known"})
    if unknown:
        with pytest.raises(ApiError) as caught:
            body.check()
        assert caught.value.status == 422
        assert [d["field"] for d in caught.value.details] == [f"body.{k}" for k in unknown]
    else:
        body.check()


@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_body_must_be_an_object(value: Any) -> None:
    with pytest.raises(ApiError) as caught:
        Body(value)
    assert caught.value.status == 422


@given(st.text(max_size=12))
def test_query_integer_parses_or_reports(raw: str) -> None:
    query = Query(_request({"limit": raw}))
    got = query.integer("limit", default=100, minimum=1, maximum=1000)
    try:
        parsed: int | None = int(raw.strip())
    except ValueError:
        parsed = None
    if parsed is not None and 1 <= parsed <= 1000:
        assert got == parsed and not query.errors
    else:
        assert got == 100 and [e["field"] for e in query.errors] == ["query.limit"]


@given(st.text(max_size=12))
def test_query_number_never_accepts_nan_or_out_of_range(raw: str) -> None:
    query = Query(_request({"min_confidence": raw}))
    got = query.number("min_confidence", default=0.5, minimum=0.0, maximum=1.0)
    if query.errors:
        assert got == 0.5
    else:
        assert not math.isnan(got) and 0.0 <= got <= 1.0


@given(st.text(max_size=8))
def test_query_boolean_knows_only_true_and_false_words(raw: str) -> None:
    query = Query(_request({"use_cache": raw}))
    got = query.boolean("use_cache", default=True)
    word = raw.strip().lower()
    if word in {"1", "true", "yes", "on"}:
        assert got is True and not query.errors
    elif word in {"0", "false", "no", "off"}:
        assert got is False and not query.errors
    else:
        assert len(query.errors) == 1


def test_query_check_rejects_unknown_and_repeated_parameters() -> None:
    request = _request()
    request.scope["query_string"] = b"limit=1&limit=2&colour=red"
    query = Query(request)
    query.integer("limit", default=1, minimum=1)
    with pytest.raises(ApiError) as caught:
        query.check()
    assert [d["field"] for d in caught.value.details] == ["query.limit", "query.colour"]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


@given(json_values, st.integers(min_value=1, max_value=7))
def test_read_json_round_trips_any_json_in_any_chunking(value: Any, pieces: int) -> None:
    raw = json.dumps(value).encode()
    size = max(1, len(raw) // pieces)
    chunks = [raw[i : i + size] for i in range(0, len(raw), size)]
    if _has_nul(value):  # NUL anywhere, key or value: refused
        with pytest.raises(ApiError) as caught:
            anyio.run(lambda: read_json(_request(chunks=chunks), max_bytes=len(raw)))
        assert caught.value.status == 422 and "NUL" in caught.value.details[0]["message"]
    else:
        got = anyio.run(lambda: read_json(_request(chunks=chunks), max_bytes=len(raw)))
        assert got == value


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


nested = st.recursive(
    st.text(alphabet='[]{}\\"ab', max_size=6) | st.integers(),
    lambda children: (
        st.lists(children, max_size=2)
        | st.dictionaries(st.text(alphabet='[]{"', max_size=3), children, max_size=2)
    ),
    max_leaves=40,
)


@given(nested, st.integers(min_value=0, max_value=12))
def test_parse_json_refuses_exactly_what_nests_deeper_than_the_limit(
    value: Any, limit: int
) -> None:
    """Brackets inside strings (and escaped quotes) never count toward the depth."""
    raw = json.dumps(value)
    if _depth(value) > limit:
        with pytest.raises(ApiError) as caught:
            parse_json(raw, max_depth=limit)
        assert (caught.value.status, caught.value.code) == (400, "too_deeply_nested")
    else:
        assert parse_json(raw, max_depth=limit) == value


def test_parse_json_refuses_a_100000_deep_document_without_recursing() -> None:
    with pytest.raises(ApiError) as caught:
        parse_json("[" * 100_000 + "]" * 100_000)
    assert caught.value.code == "too_deeply_nested"
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None


def test_a_nul_is_named_by_where_it_is() -> None:
    with pytest.raises(ApiError) as caught:
        parse_json('{"a": [1, {"b\\u0000": 2}]}')
    assert caught.value.details == [{"field": "body.a[1].b\\x00", "message": "has a NUL character"}]
    assert parse_json('{"a": "\\\\u0000"}') == {"a": "\\u0000"}  # an escaped backslash


@given(st.text(max_size=10), st.text(max_size=10))
def test_query_control_characters_are_refused_by_name(name: str, value: str) -> None:
    request = _request({name or "n": value})
    errors = query_control_errors(request)
    bad = CONTROL_CHARACTERS.search(name or "n") or CONTROL_CHARACTERS.search(value)
    assert len(errors) == (1 if bad else 0)


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=199))
def test_read_json_is_413_past_the_limit_and_400_for_non_json(raw: bytes, limit: int) -> None:
    async def read() -> Any:
        return await read_json(_request(chunks=[raw[:50], raw[50:]]), max_bytes=limit)

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    try:
        expected = json.loads(raw, parse_constant=no_constants)
        valid = True
    except ValueError:
        valid = False
    if len(raw) > limit:
        with pytest.raises(ApiError) as caught:
            anyio.run(read)
        assert caught.value.status == 413
    elif not valid:
        with pytest.raises(ApiError) as caught:
            anyio.run(read)
        assert caught.value.status == 400
    else:
        assert anyio.run(read) == expected


# -- keyset cursors -------------------------------------------------------------------

_cursors = st.builds(
    Cursor,
    page=st.integers(min_value=2, max_value=2**40),
    created_at=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    id=st.text(min_size=1, max_size=64),
)


@given(_cursors)
def test_a_cursor_decodes_to_what_was_encoded(cursor: Cursor) -> None:
    token = encode_cursor(cursor)
    assert decode_cursor(token) == cursor
    assert token.isascii() and "=" not in token and "/" not in token and "+" not in token


@given(st.text(max_size=80))
def test_decoding_anything_else_is_a_value_error_or_a_cursor(text: str) -> None:
    try:
        cursor = decode_cursor(text)
    except ValueError:
        return
    assert cursor.page >= 2 and cursor.id and cursor.created_at.tzinfo is not None
