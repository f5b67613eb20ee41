"""Close WebSockets whose API key stops being valid.

REST checks the key on every request, but a WebSocket is checked once, when
it opens; without this a revoked key would keep streaming for as long as
the socket stays up. Each socket that authenticated holds a
:class:`Ticket` naming its key; :meth:`KeyWatch.run` looks up, every
``interval`` seconds, which of the watched keys still verify (one query for
all sockets, none while no socket holds a key) and sets the ticket of every
socket whose key was revoked or deleted. The socket then says why and
closes with 4401. Keys are revoked from other processes (``detectflow keys
revoke``), so polling the database is what every server sees alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import anyio
from anyio.abc import TaskStatus

from detectflow.server.state import in_thread
from detectflow.store.keys import ApiKey
from detectflow.store.repository import Database

__all__ = ["DEFAULT_INTERVAL_SECONDS", "KEY_WATCH_KEY", "KeyWatch", "Ticket"]

log = logging.getLogger(__name__)

KEY_WATCH_KEY = "detectflow_key_watch"
"""Where the lifespan state keeps the app's :class:`KeyWatch`."""
DEFAULT_INTERVAL_SECONDS = 2.0


class Ticket:
    """One socket's key; ``revoked`` is set once that key no longer verifies."""

    __slots__ = ("key", "revoked")

    def __init__(self, key: ApiKey | None) -> None:
        self.key = key
        self.revoked = anyio.Event()


class KeyWatch:
    def __init__(self, database: Database, *, interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._database = database
        self._interval = interval
        self._tickets: set[Ticket] = set()

    def watch(self, key: ApiKey | None) -> Ticket:
        """A ticket for a socket holding ``key`` (None: reads are open, nothing to watch)."""
        ticket = Ticket(key)
        self._tickets.add(ticket)
        return ticket

    def forget(self, ticket: Ticket) -> None:
        self._tickets.discard(ticket)

    def _watched(self) -> set[str]:
        return {t.key.id for t in self._tickets if t.key is not None}

    def revoke(self, live_ids: Iterable[str]) -> int:
        """Set the ticket of every socket whose key is not in ``live_ids``; how many."""
        live = set(live_ids)
        count = 0
        for ticket in list(self._tickets):
            if ticket.key is not None and ticket.key.id not in live:
                ticket.revoked.set()
                self._tickets.discard(ticket)
                count += 1
        return count

    async def check(self) -> int:
        """One look at the database; returns how many sockets lost their key."""
        if not self._watched():
            return 0
        keys = await in_thread(self._database.list_api_keys)
        return self.revoke(k.id for k in keys if not k.revoked)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Check every ``interval`` seconds until cancelled; a failed look is logged and retried."""
        task_status.started()
        failing = False
        while True:
            await anyio.sleep(self._interval)
            try:
                await self.check()
            except Exception:
                if not failing:  # once per outage, not every interval
                    log.warning(
                        "checking WebSocket keys failed; retrying every %ss",
                        self._interval,
                        exc_info=True,
                    )
                failing = True
            else:
                failing = False
