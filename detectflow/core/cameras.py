"""A camera as configuration: what to read, how often, and how to show it.

:class:`Camera` is the one shape every layer shares: the ``cameras`` table
stores it, the REST API and the CLI edit it, the video source reads the
streams it names, and the objects step takes its zones from ``options``. A
camera fed through the API, Redis or MQTT has no ``url`` and still carries its
settings and status.

Credentials may sit in the URL (``rtsp://user:pass@host/stream``): the store
encrypts the URL at rest, and everything shown (responses, logs, events,
metrics) uses :func:`display_url`, which keeps the user and replaces the
password, since "which account" is what an operator debugs with.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from detectflow.core.frames import CAMERA_ID_PATTERN
from detectflow.core.models import utcnow
from detectflow.core.redact import REDACTED, SECRET_PARAMETERS, redact_text

__all__ = [
    "CAMERA_ID",
    "DEFAULT_FPS",
    "MAX_FPS",
    "URL_SCHEMES",
    "Camera",
    "check_camera_id",
    "check_camera_url",
    "check_fps",
    "display_url",
    "has_masked_secret",
    "unmask_url",
    "url_password",
    "with_password",
]

CAMERA_ID = CAMERA_ID_PATTERN
"""The camera ids every table uses (the frames' rule): safe in MQTT topics, paths
and metric labels."""

DEFAULT_FPS = 5.0
MAX_FPS = 60.0
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "file")
"""What the video source reads: RTSP and RTMP streams, MJPEG or other video over
HTTP(S), and local files."""


@dataclass(frozen=True, slots=True)
class Camera:
    """One camera. ``fps`` is how many frames a second are sampled for detection
    (the stream may run faster); ``provider`` names a provider config, else the
    routing rules choose; ``options`` holds the reader's settings (``transport``,
    ``realtime``, ``loop``, ``stall_seconds``, ``jpeg_quality``) beside the
    objects' zones, masks, lines and filters
    (:mod:`detectflow.core.object_config`). ``last_error`` is the reader's latest
    reason for not reading the camera (shown as given: readers redact it)."""

    id: str
    name: str = ""
    url: str | None = None
    enabled: bool = True
    fps: float = DEFAULT_FPS
    provider: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    last_error: str | None = None

    @property
    def shown_url(self) -> str | None:
        return None if self.url is None else display_url(self.url)


def check_camera_id(camera_id: str) -> str:
    """``camera_id`` if usable as an id; else :class:`ValueError` saying why."""
    if not CAMERA_ID.fullmatch(camera_id):
        raise ValueError(
            "camera id must be 1-128 characters of letters, digits, '_', '.', ':' or '-'"
        )
    return camera_id


def check_camera_url(url: str) -> str:
    """``url`` if the video source can read it; else :class:`ValueError` saying why."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in URL_SCHEMES:
        raise ValueError(f"camera url scheme must be one of {', '.join(URL_SCHEMES)}")
    if parts.scheme.lower() == "file":
        if not parts.path:
            raise ValueError("a file:// camera url needs a path")
    elif not parts.hostname:
        raise ValueError("camera url needs a host")
    return url


def check_fps(fps: float) -> float:
    """``fps`` if a usable sampling rate; else :class:`ValueError`."""
    if not (isinstance(fps, int | float) and math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise ValueError(f"fps must be a number above 0 and at most {MAX_FPS:g}")
    return float(fps)


def display_url(url: str) -> str:
    """``url`` as shown anywhere: the password (and credential query values)
    replaced by ``***``, the user, host, port and path kept."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{REDACTED}@{hostport}"
    query = redact_text(f"?{parts.query}")[1:] if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_password(url: str) -> str | None:
    """The password in ``url``'s userinfo (percent-encoded as written), or None."""
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return userinfo.partition(":")[2]


def with_password(url: str, password: str) -> str:
    """``url`` with its userinfo's password set to ``password`` (written as given).

    How a masked URL (``rtsp://user:***@host/...``, what :func:`display_url`
    shows) gets its stored password back when a fleet file is imported.
    """
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        raise ValueError("camera url has no user to give a password to")
    netloc = f"{userinfo.partition(':')[0]}:{password}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def has_masked_secret(url: str) -> bool:
    """Does ``url`` hold ``***`` where a credential goes (the password, or a
    credential-like query value)? Then it is a displayed URL, not a usable one."""
    if url_password(url) == REDACTED:
        return True
    for part in re.split("[&;]", urlsplit(url).query):
        name, _, value = part.partition("=")
        if value == REDACTED and name.lower() in SECRET_PARAMETERS:
            return True
    return False


def unmask_url(url: str, stored: str | None) -> str:
    """``url`` with the credentials ``***`` stands for taken from ``stored`` (the
    camera's URL as stored): how a fleet file exported without secrets is imported.

    The stored URL itself when ``url`` is its display form; else, a masked
    password gets the stored password (the host or path may have changed).
    ValueError when the masked credential cannot be restored.
    """
    if not has_masked_secret(url):
        return url
    if stored is not None and display_url(stored) == url:
        return stored
    password = None if stored is None else url_password(stored)
    if password is not None and url_password(url) == REDACTED:
        restored = with_password(url, password)
        if not has_masked_secret(restored):
            return restored
    raise ValueError(
        f"camera url has {REDACTED} for a credential and no stored camera url to take it "
        "from; write the credential, or ${NAME} to read it from the environment"
    )
