"""The webhook publisher: signed POSTs of events to every subscription that wants them.

The flow offers its results (:meth:`WebhookPublisher.offer`: a filter and a
hand-off, never a wait); one thread runs an event loop that

- reloads the subscriptions every ``refresh_seconds`` (and runs the SSRF guard
  of provider URLs on each URL again, as a name may have been re-pointed);
- turns each wanted event into one delivery per matching subscription: a POST
  of the event's JSON, signed (:mod:`detectflow.publish.signing`), retried
  after each wait of ``retry_seconds`` (5 tries over ~10 minutes by default),
  then recorded ``failed`` with the last reason;
- records every outcome in ``webhook_deliveries``, in batches.

At most ``queue_size`` events wait and at most ``queue_size`` deliveries are
in progress (retries included); past that, events are dropped, counted and
recorded as ``dropped`` deliveries, so a dead receiver costs the flow nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import aiohttp

from detectflow.adapters.urls import UnsafeProviderUrlError, check_provider_url
from detectflow.core.models import FrameResult, utcnow
from detectflow.core.object_events import OBJECT_ENDED, OBJECT_STARTED, OBJECT_UPDATED
from detectflow.core.serialize import event_to_dict
from detectflow.core.settings import Settings
from detectflow.publish.handoff import Handoff
from detectflow.publish.signing import signature_headers
from detectflow.store.webhooks import Delivery, Webhook

__all__ = [
    "DEFAULT_EVENT_TYPES",
    "WebhookEvent",
    "WebhookPublisher",
    "WebhookStore",
    "webhook_events",
]

log = logging.getLogger(__name__)

DEFAULT_EVENT_TYPES = (OBJECT_STARTED, OBJECT_UPDATED, OBJECT_ENDED)
"""What a subscription gets unless it names other types (the per-frame event types,
``detection_completed`` and the rest, are there to be named)."""

_DELIVERY_NAMESPACE = uuid.UUID("1b0f5c2e-7d43-4f4e-8d0e-5b1f0e6c9a21")
_WRITE_EVERY = 0.2  # seconds between batches of delivery records
_CONNECTIONS = 100
"""POSTs in progress at once (aiohttp's default limit): a try's timeout starts once
it has a connection, not while it waits for one behind a burst."""


class WebhookStore(Protocol):
    """What the publisher needs of :class:`detectflow.store.Database`."""

    def list_webhooks(self) -> list[Webhook]: ...

    def save_webhook_deliveries(self, records: Sequence[Delivery]) -> int: ...


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    id: str
    type: str
    camera_id: str
    body: bytes


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def webhook_events(result: FrameResult, wanted: frozenset[str]) -> list[WebhookEvent]:
    """The result's events of the ``wanted`` types, as the JSON a receiver gets."""
    out: list[WebhookEvent] = []
    if result.objects is not None:
        for e in result.objects.events:
            if e.type in wanted:
                body = {
                    "id": e.id,
                    "type": e.type,
                    "camera_id": e.camera_id,
                    "object_id": e.object_id,
                    "frame_id": e.frame_id,
                    "time": e.time,
                    "changes": list(e.changes),
                    "before": e.before,
                    "after": e.after,
                }
                out.append(WebhookEvent(e.id, e.type, e.camera_id, _dumps(body)))
    for d in result.events:
        if d.event_type in wanted:
            body = {
                "id": d.id,
                "type": d.event_type,
                "camera_id": d.camera_id,
                "time": d.created_at.timestamp(),
                "event": event_to_dict(d),
            }
            out.append(WebhookEvent(d.id, d.event_type, d.camera_id, _dumps(body)))
    return out


def _delivery_id(webhook_id: str, event_id: str) -> str:
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, f"{webhook_id}:{event_id}"))


def _delivery(
    webhook_id: str,
    event: WebhookEvent,
    status: str,
    *,
    attempts: int = 0,
    error: str | None = None,
    code: int | None = None,
    created: datetime | None = None,
    wait: float | None = None,
) -> Delivery:
    """A delivery's record now; its id is the same for the same webhook and event,
    so a replayed event updates its row instead of adding one."""
    now = utcnow()
    return Delivery(
        id=_delivery_id(webhook_id, event.id),
        webhook_id=webhook_id,
        event_id=event.id,
        event_type=event.type,
        status=status,
        attempts=attempts,
        last_error=error,
        response_code=code,
        next_attempt_at=None if wait is None else now + timedelta(seconds=wait),
        delivered_at=now if status == "delivered" else None,
        created_at=created or now,
        updated_at=now,
    )


def _may_matter(result: FrameResult, wanted: frozenset[str]) -> bool:
    """The flow thread's whole share of the work: a glance at the event types."""
    if result.objects is not None and any(e.type in wanted for e in result.objects.events):
        return True
    return any(d.event_type in wanted for d in result.events)


class WebhookPublisher:
    """Delivers the events of the results it is offered; thread-safe ``offer``."""

    def __init__(
        self,
        store: WebhookStore,
        *,
        retry_seconds: Sequence[float] = (15.0, 45.0, 120.0, 420.0),
        timeout: float = 10.0,
        refresh_seconds: float = 5.0,
        queue_size: int = 10_000,
        allow_link_local: bool = False,
    ) -> None:
        self.store = store
        self.retry_seconds = tuple(retry_seconds)
        self.timeout = timeout
        self.refresh_seconds = refresh_seconds
        self.queue_size = queue_size
        self.allow_link_local = allow_link_local
        self.delivered = 0
        self.failed = 0
        self._overflow: deque[FrameResult] = deque(maxlen=1000)  # to record as dropped
        self._handoff: Handoff[FrameResult] = Handoff(queue_size, on_overflow=self._overflow.extend)
        self._subscriptions: tuple[Webhook, ...] = ()
        self._refused: dict[str, str] = {}  # webhook id -> why the SSRF guard refuses its URL
        self._wanted: frozenset[str] = frozenset()
        self._records: list[Delivery] = []
        self._thread = threading.Thread(target=self._main, name="detectflow-webhooks")
        self._lock = threading.Lock()
        self._started = False
        self._grace = 10.0
        self._slots = asyncio.Semaphore(_CONNECTIONS)  # made again on the worker's loop

    @classmethod
    def from_settings(cls, settings: Settings, store: WebhookStore) -> WebhookPublisher | None:
        if not settings.webhooks:
            return None
        return cls(
            store,
            retry_seconds=settings.webhook_retry_seconds,
            timeout=settings.webhook_timeout_seconds,
            refresh_seconds=settings.webhook_refresh_seconds,
            queue_size=settings.publish_queue_size,
            allow_link_local=settings.allow_link_local_provider_urls,
        )

    @property
    def dropped(self) -> int:
        """Results whose events were dropped because ``queue_size`` were waiting."""
        return self._handoff.dropped

    @property
    def tries(self) -> int:
        return len(self.retry_seconds) + 1

    def start(self) -> None:
        """Load the subscriptions (so the first results are matched) and start the worker."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self._load(self.store.list_webhooks())
        self._thread.start()

    def offer(self, results: Sequence[FrameResult]) -> None:
        """Hand over the results that carry a wanted event; never blocks."""
        wanted = self._wanted
        if wanted:
            found = [r for r in results if _may_matter(r, wanted)]
            if found:
                self._handoff.offer(found)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the deliveries in progress for up to ``timeout`` s; record the rest
        failed (the flow stopped), then stop (idempotent)."""
        self._grace = timeout
        self._handoff.close()
        if self._thread.is_alive():
            self._thread.join(timeout + 5.0)

    # -- the worker ------------------------------------------------------

    def _load(self, subscriptions: list[Webhook]) -> None:
        live = tuple(s for s in subscriptions if s.enabled)
        self._subscriptions = live
        self._wanted = frozenset(t for s in live for t in s.event_types)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        # aiohttp straight: measured in bench/publish.py, httpx's request and response
        # models over the same aiohttp transport cost ~0.4 ms a delivery, which held
        # deliveries to a third of a bare aiohttp POST loop's rate.
        connector = aiohttp.TCPConnector(limit=_CONNECTIONS)
        self._slots = asyncio.Semaphore(_CONNECTIONS)
        async with aiohttp.ClientSession(
            connector=connector, trust_env=False, auto_decompress=False
        ) as client:
            tasks: set[asyncio.Task[None]] = set()
            background = [
                asyncio.create_task(self._refresh_every()),
                asyncio.create_task(self._write_every()),
            ]
            await self._check_urls()
            try:
                await self._feed(client, tasks)
                if tasks:
                    _, late = await asyncio.wait(tasks, timeout=self._grace)
                    for task in late:
                        task.cancel()
                    await asyncio.gather(*late, return_exceptions=True)
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                self._record_dropped()
                await self._write()

    async def _feed(self, client: aiohttp.ClientSession, tasks: set[asyncio.Task[None]]) -> None:
        handoff = self._handoff
        while True:
            room = self.queue_size - len(tasks)
            if room <= 0:
                await asyncio.wait(tasks, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
                if handoff.closed and len(tasks) >= self.queue_size:  # stopping, still full
                    self._record_dropped()  # those that overflowed, for that reason
                    self._overflow.extend(handoff.take(0))
                    self._record_dropped("the flow stopped before it was sent")
                    return
                continue
            batch = await asyncio.to_thread(handoff.take, 0.2, room)
            self._record_dropped()
            if not batch:
                if handoff.closed:
                    return
                continue
            for result in batch:
                for event in webhook_events(result, self._wanted):
                    for sub in self._subscriptions:
                        if sub.wants(event.type, event.camera_id):
                            task = asyncio.create_task(self._deliver(client, sub, event))
                            tasks.add(task)
                            task.add_done_callback(tasks.discard)

    async def _deliver(
        self, client: aiohttp.ClientSession, sub: Webhook, event: WebhookEvent
    ) -> None:
        created = utcnow()
        delivery_id = _delivery_id(sub.id, event.id)

        def record(status: str, attempts: int, error: str | None, code: int | None) -> None:
            wait = self.retry_seconds[attempts - 1] if status == "retrying" else None
            self._records.append(
                _delivery(
                    sub.id,
                    event,
                    status,
                    attempts=attempts,
                    error=error,
                    code=code,
                    created=created,
                    wait=wait,
                )
            )

        refused = self._refused.get(sub.id)
        if refused is not None:
            self.failed += 1
            record("failed", 0, refused, None)
            return
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "detectflow-webhooks",
            "X-Detectflow-Event": event.type,
            "X-Detectflow-Delivery": delivery_id,
        }
        error: str = "not tried"
        code: int | None = None
        attempt = 0
        try:
            for attempt in range(1, self.tries + 1):
                error, code = await self._try(client, sub, event, headers)
                if not error:
                    self.delivered += 1
                    record("delivered", attempt, None, code)
                    return
                if attempt < self.tries:
                    record("retrying", attempt, error, code)
                    await asyncio.sleep(self.retry_seconds[attempt - 1])
        except asyncio.CancelledError:
            error = f"the flow stopped before try {attempt + 1} of {self.tries} ({error})"
        self.failed += 1
        record("failed", attempt, error, code)

    async def _try(
        self,
        client: aiohttp.ClientSession,
        sub: Webhook,
        event: WebhookEvent,
        headers: dict[str, str],
    ) -> tuple[str, int | None]:
        """One POST: ("", status) when the receiver took it, else (why not, status)."""
        signed = {**headers, **signature_headers(sub.secret, event.body)}
        try:
            async with (
                self._slots,
                asyncio.timeout(self.timeout),
                client.post(sub.url, data=event.body, headers=signed, allow_redirects=False) as r,
            ):
                await r.read()
        except TimeoutError:
            return f"no answer within {self.timeout:g} s", None
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:500], None
        if 200 <= r.status < 300:
            return "", r.status
        return f"HTTP {r.status} {r.reason or ''}".strip(), r.status

    def _record_dropped(self, reason: str | None = None) -> None:
        """Overflowed results become ``dropped`` deliveries."""
        reason = reason or f"delivery queue full ({self.queue_size} events waiting)"
        while self._overflow:
            result = self._overflow.popleft()
            for event in webhook_events(result, self._wanted):
                for sub in self._subscriptions:
                    if sub.wants(event.type, event.camera_id):
                        self._records.append(_delivery(sub.id, event, "dropped", error=reason))

    async def _refresh_every(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                self._load(await asyncio.to_thread(self.store.list_webhooks))
                await self._check_urls()
            except Exception:  # the database is away: keep the last known subscriptions
                log.exception("webhooks: reloading the subscriptions failed")

    async def _check_urls(self) -> None:
        refused: dict[str, str] = {}
        for sub in self._subscriptions:
            try:
                await check_provider_url(sub.url, allow_link_local=self.allow_link_local)
            except UnsafeProviderUrlError as exc:
                refused[sub.id] = exc.message
        self._refused = refused

    async def _write_every(self) -> None:
        while True:
            await asyncio.sleep(_WRITE_EVERY)
            await self._write()

    async def _write(self) -> None:
        records, self._records = self._records, []
        if not records:
            return
        try:
            await asyncio.to_thread(self.store.save_webhook_deliveries, records)
        except Exception:  # kept for the next batch: the database may be back by then
            log.exception("webhooks: recording %d delivery outcome(s) failed", len(records))
            self._records[:0] = records[-self.queue_size :]
