"""Webhook signatures: what a delivery carries and how a receiver checks it.

``X-Detectflow-Signature: sha256=<hex>`` is the HMAC-SHA256, keyed with the
subscription's secret, of ``"<timestamp>.<raw body>"``, where ``timestamp``
is the ``X-Detectflow-Timestamp`` header (unix seconds). Signing the
timestamp with the body lets a receiver refuse replays of an old delivery
(:func:`verify`'s ``tolerance``). Both sides live here so what one writes
the other reads by construction.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "signature_headers", "verify"]

TIMESTAMP_HEADER = "X-Detectflow-Timestamp"
SIGNATURE_HEADER = "X-Detectflow-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` for ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers of a delivery of ``body`` signed now."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: str,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """A receiver's check: the signature matches and the timestamp is at most
    ``tolerance`` seconds from now (either way: clocks drift)."""
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature)
