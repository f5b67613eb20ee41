"""The fleet file: cameras as TOML, both directions in one module.

``detectflow camera export`` writes what :func:`dump_cameras` makes and
``detectflow camera import`` reads it back with :func:`load_cameras`, so a
fleet can be kept in version control. One ``[[cameras]]`` table per camera::

    [[cameras]]
    id = "front-door"
    name = "Front door"
    url = "rtsp://viewer:${FRONT_DOOR_PASSWORD}@10.0.0.5:554/stream1"
    enabled = true
    fps = 5.0
    provider = "3f2b..."          # optional: a provider config id

    [cameras.options]
    transport = "tcp"

    [cameras.options.zones.dock]
    polygon = [[0.6, 0.0], [1.0, 0.0], [1.0, 1.0], [0.6, 1.0]]

Credentials: an export shows URLs as ``display_url`` does (password
``***``) unless asked for secrets. On import, ``${NAME}`` in a URL is
replaced by the environment variable ``NAME`` (a file in git names the
secret, the deployment supplies it), and a ``***`` keeps the credential
stored for that camera (:func:`~detectflow.core.cameras.unmask_url`), so an
exported file imports back unchanged.

TOML has no null: a field left out takes its default, and ``options`` never
holds null (the API refuses it for this reason). Python's ``tomllib`` reads;
the writer is the small subset this file needs (strings, numbers, booleans,
arrays, tables), checked by a round-trip property test.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from typing import Any

from detectflow.core.cameras import Camera

__all__ = ["CAMERAS_KEY", "dump_cameras", "expand_env", "load_cameras"]

CAMERAS_KEY = "cameras"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER = """\
# detectflow cameras. `detectflow camera import FILE` makes the cameras table
# match this file (`--prune` also removes cameras it does not name).
# In a url, ${NAME} is read from the environment variable NAME at import, and
# *** keeps the credential stored for that camera.
"""


def dump_cameras(cameras: Sequence[Camera], *, with_secrets: bool = False) -> str:
    """The fleet file for ``cameras``; URLs with their credentials only when
    ``with_secrets`` (a backup, not a file for version control)."""
    out = [_HEADER]
    for camera in cameras:
        out.append(f"\n[[{CAMERAS_KEY}]]\n")
        fields: dict[str, Any] = {"id": camera.id, "name": camera.name}
        if camera.url is not None:
            fields["url"] = camera.url if with_secrets else camera.shown_url
        fields["enabled"] = camera.enabled
        fields["fps"] = camera.fps
        if camera.provider is not None:
            fields["provider"] = camera.provider
        if camera.options:
            fields["options"] = dict(camera.options)
        out.append(_table([CAMERAS_KEY], fields))
    return "".join(out)


def _table(path: list[str], values: Mapping[str, Any], *, header: bool = False) -> str:
    """``values`` as ``key = value`` lines, then each non-empty sub-table. A header
    is written only above lines: a table holding only tables is implied by theirs."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}\n")
    text = "".join(lines)
    if header and lines:
        text = f"\n[{'.'.join(_key(k) for k in path)}]\n" + text
    for key, table in tables:
        text += _table([*path, key], table, header=True)
    return text


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no place in a fleet file")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items())
        return f"{{ {inner} }}" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ValueError(f"a {type(value).__name__} has no place in a fleet file (TOML has no null)")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def load_cameras(text: str) -> list[dict[str, Any]]:
    """The camera tables of a fleet file, as written (validated by the caller,
    as the API validates a body). ValueError for a file that is not TOML or not
    this shape, naming where."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not TOML: {exc}") from None
    unknown = sorted(set(document) - {CAMERAS_KEY})
    if unknown:
        raise ValueError(f"unknown top-level key(s) {', '.join(unknown)}; expected [[cameras]]")
    entries = document.get(CAMERAS_KEY, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("cameras: expected [[cameras]] tables")
    for index, entry in enumerate(entries):
        problem = _not_json(entry, f"cameras[{index}]")
        if problem is not None:
            raise ValueError(problem)
    return entries


def _not_json(value: Any, path: str) -> str | None:
    """What in ``value`` a JSON column cannot store: a TOML date or time, or NUL
    (which PostgreSQL refuses in text, and the API refuses in a body)."""
    if isinstance(value, datetime | date | time):
        return f"{path}: a date or time; camera settings are JSON values"
    if isinstance(value, str) and "\x00" in value:
        return f"{path}: has a NUL character"
    if isinstance(value, dict):
        for key, item in value.items():
            found = _not_json(key, f"{path} (a key)") or _not_json(item, f"{path}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for number, item in enumerate(value):
            found = _not_json(item, f"{path}[{number}]")
            if found:
                return found
    return None


def expand_env(url: str, env: Mapping[str, str]) -> str:
    """``url`` with each ``${NAME}`` replaced by the variable ``NAME`` of ``env``
    (the CLI passes the process environment); ValueError naming a variable not set."""
    missing = sorted({name for name in _ENV.findall(url) if name not in env})
    if missing:
        raise ValueError(f"environment variable(s) not set: {', '.join(missing)}")
    return _ENV.sub(lambda m: env[m[1]], url)
