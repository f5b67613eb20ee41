"""Riding out a database that goes away for a while (a PostgreSQL restart or failover).

A restart breaks every pooled connection; :func:`retry_lost_connection`
runs a write again with exponential backoff until the database answers
(``pool_pre_ping`` hands out fresh connections once it does), and gives up
only after ``give_up_after`` seconds. Other errors (a constraint, bad SQL)
are raised at once: retrying them cannot help.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

__all__ = ["is_lost_connection", "retry_lost_connection"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_lost_connection(exc: BaseException) -> bool:
    """True for errors that mean "the database is not reachable right now"."""
    if isinstance(exc, DisconnectionError | OperationalError | InterfaceError):
        # Refused, reset and shut-down connections (psycopg's OperationalError,
        # wrapped by SQLAlchemy under the same name); a constraint or bad SQL
        # is an IntegrityError or ProgrammingError and is not retried.
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def retry_lost_connection(
    call: Callable[[], T],
    *,
    what: str,
    give_up_after: float,
    base: float = 0.1,
    cap: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, again and again while the database is unreachable, then its result.

    The backoff doubles from ``base`` up to ``cap`` with full jitter; after
    ``give_up_after`` seconds the last error is raised (the flow stops and
    a restart resumes it).
    """
    deadline = time.monotonic() + give_up_after
    attempt = 0
    while True:
        try:
            result = call()
        except Exception as exc:
            if not is_lost_connection(exc) or time.monotonic() >= deadline:
                raise
            delay = min(cap, base * 2**attempt) * (0.5 + random.random() / 2)
            attempt += 1
            if attempt == 1:
                log.warning("%s: database unreachable (%s); retrying", what, _first_line(exc))
            sleep(min(delay, max(0.0, deadline - time.monotonic())))
            continue
        if attempt:
            log.warning("%s: database reachable again after %d retr(ies)", what, attempt)
        return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
