"""Credentials out of anything shown: URLs and the messages that quote them.

A provider URL may carry credentials (``http://user:secret@host/detect``,
``...?api_key=...``), and an adapter's error message quotes its URL, so a
failure would otherwise put the secret into events, WebSocket broadcasts,
the live cache, send-frame answers, test results and logs. Everything that
turns a provider failure into text passes it through :func:`redact_text`
once, where the text is made (:func:`detectflow.core.pipeline.failed_result`,
the provider test), so every later reader gets the clean copy.

Logs get the same treatment from :func:`install_log_redaction` (the server
installs it when it starts): every record's message and traceback, whatever
logger made it, since a library (httpx logs every request URL) may quote a
URL too.

The userinfo of any ``scheme://user:pass@`` becomes ``***@`` and the values
of query parameters named like credentials become ``***``; the rest of the
URL stays, since host, port and path are what an operator needs to debug.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from typing import Any

__all__ = ["REDACTED", "SECRET_PARAMETERS", "install_log_redaction", "redact_text"]

REDACTED = "***"

SECRET_PARAMETERS = (
    "access_token",
    "api_key",
    "api-key",
    "apikey",
    "auth",
    "authorization",
    "client_secret",
    "key",
    "passwd",
    "password",
    "pwd",
    "secret",
    "sig",
    "signature",
    "token",
    "x-api-key",
)
"""Query parameter names (any case) whose values are credentials."""

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s'\"<>]+@")
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;](?:" + "|".join(re.escape(p) for p in SECRET_PARAMETERS) + r")=)"
    r"[^&#;\s'\"<>]+",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """``text`` with every URL's userinfo and credential-like query values replaced."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    return _SECRET_QUERY.sub(rf"\g<name>{REDACTED}", text)


_installed = threading.Lock()
_factory_installed = False


def install_log_redaction() -> None:
    """Redact every log record's text as it is made, for every logger (idempotent).

    A record factory rather than a handler filter: it covers handlers added
    later and loggers that do not propagate. The message is rendered once
    (``msg % args``) and a traceback formatted once, as a handler would.
    """
    global _factory_installed
    with _installed:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            message = record.getMessage()
            clean = redact_text(message)
            if clean != message:
                record.msg, record.args = clean, None
            if record.exc_info and record.exc_info[1] is not None:
                text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
                record.exc_text = redact_text(text)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True
