"""The Redis Streams source (``--source redis://host:6379/0?stream=frames``).

Each stream entry is one frame: fields ``camera_id`` and ``image`` (raw
bytes), optional ``frame_id``, ``frame_number``, ``timestamp`` (RFC 3339)
and ``priority``; other fields are ignored. Entries are read through a
consumer group (created with ``MKSTREAM`` from the stream's start when
missing), so any number of workers and processes share a stream and each
entry goes to one of them.

Delivery is at least once. An entry is acknowledged (``XACK``) only after
its result is stored: the frame carries ``redis_stream`` and ``redis_id`` in
its attributes and the source's :class:`RedisAcknowledger` runs
after the :class:`~detectflow.flows.sinks.ResultWriter`. An entry whose
write failed stays pending; a consumer that died leaves its entries pending
too, and they are taken over with ``XAUTOCLAIM`` once idle for
``claim_idle`` seconds (default 60; it must exceed the slowest frame's
processing time, or a live consumer's frame is processed twice, which the
idempotent sinks make harmless but costs a provider call). Invalid entries
become failed results with the reason and are acknowledged once recorded.

An entry that keeps killing the workers that take it (a frame that crashes
a provider plugin, say) would be claimed, crash its new worker and be
claimed again forever. Once Redis has delivered an entry more than
``max_deliveries`` times (default 5; 0 for no limit) it is not detected
again: it is recorded as failed with the reason, and acknowledged.

One partition per stream key: ``stream`` names one key, several
(comma-separated) or a pattern (``frames:*``, discovered with ``SCAN`` and
rescanned every few seconds); key ``i`` is read by worker ``i % workers``.

URL options: ``stream`` (required), ``group`` (``detectflow``),
``consumer`` (host-pid; each worker appends its index), ``count`` (the
most entries read at once, ``DETECTFLOW_BATCH_SIZE``), ``block_ms`` (wait
this long for entries while no frame is in flight; default 0: poll every
``DETECTFLOW_POLL_INTERVAL_SECONDS``), ``claim_idle`` (seconds),
``max_deliveries``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.exceptions import RedisError, ResponseError

from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import make_frame
from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, FrameResult, strip_image
from detectflow.core.pipeline import failed_result
from detectflow.core.settings import Settings
from detectflow.flows.source_common import (
    Batch,
    SourceOptions,
    SourceReader,
    SourceUnavailableError,
    SourceURLError,
    fallback_frame_id,
    invalid_result,
    optional_fields,
)

if TYPE_CHECKING:
    from detectflow.flows.engine import DetectEngine

__all__ = [
    "RedisAcknowledger",
    "RedisSourceOptions",
    "RedisStreamReader",
    "detectflow_frame_sources",
    "entry_to_frame",
    "parse_redis_source_url",
    "redis_source_factory",
]

log = logging.getLogger(__name__)

STREAM_ATTR = "redis_stream"
ID_ATTR = "redis_id"
_RESCAN_SECONDS = 5.0
_PATTERN_CHARS = frozenset("*?[")
_OPTIONS = {"stream", "group", "consumer", "count", "block_ms", "claim_idle", "max_deliveries"}


@dataclass(frozen=True, slots=True)
class RedisSourceOptions:
    connection_url: str  # the URL without detectflow's options
    streams: tuple[str, ...]
    pattern: str | None
    group: str
    consumer: str
    count: int
    block_ms: int
    claim_idle: float
    max_deliveries: int = 5


def parse_redis_source_url(url: str, settings: Settings) -> RedisSourceOptions:
    """``redis[s]://[user:pass@]host:port/db?stream=KEYS|PATTERN&group=...``."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise SourceURLError(f"not a redis source URL: {url!r}")
    if not parts.hostname:
        raise SourceURLError(f"redis source URL has no host: {url!r}")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise SourceURLError(f"redis source URL has a bad port: {exc}") from None
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise SourceURLError(f"redis source URL path must be a database number: {db!r}")
    options = SourceOptions("redis", parts.query, _OPTIONS)
    names = [s.strip() for s in options.text("stream", "").split(",") if s.strip()]
    if not names:
        raise SourceURLError("redis source needs stream=KEY[,KEY...] or stream=PATTERN")
    patterns = [n for n in names if _PATTERN_CHARS & set(n)]
    if patterns and len(names) > 1:
        raise SourceURLError("redis source takes either one stream pattern or a list of keys")
    group = options.text("group", "detectflow").strip()
    if not group:
        raise SourceURLError("redis source option group may not be empty")
    consumer = options.text("consumer", f"{socket.gethostname()}-{os.getpid()}").strip()
    if not consumer:
        raise SourceURLError("redis source option consumer may not be empty")
    return RedisSourceOptions(
        connection_url=urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
        streams=() if patterns else tuple(dict.fromkeys(names)),
        pattern=patterns[0] if patterns else None,
        group=group,
        consumer=consumer,
        count=options.number("count", settings.batch_size, int, 1, 100_000),
        block_ms=options.number("block_ms", 0, int, 0, 60_000),
        claim_idle=options.number("claim_idle", 60.0, float, 0.0, 30 * 86_400),
        max_deliveries=options.number("max_deliveries", 5, int, 0, 1_000_000),
    )


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidFrameError(f"{name} is not UTF-8 text") from None


def entry_time(entry_id: str) -> datetime:
    """When Redis appended the entry: the milliseconds part of its id (``1712-0``)."""
    millis, _, _ = entry_id.partition("-")
    return datetime.fromtimestamp(int(millis) / 1000, tz=UTC)


def entry_to_frame(
    key: str, entry_id: str, fields: dict[bytes, bytes], *, max_bytes: int
) -> Frame | FrameResult:
    """A stream entry as a validated frame, or a failed result saying what is wrong."""
    attributes = {STREAM_ATTR: key, ID_ATTR: entry_id}
    raw_camera = fields.get(b"camera_id")
    camera = raw_camera.decode("utf-8", "replace") if raw_camera is not None else ""
    try:
        if raw_camera is None:
            raise InvalidFrameError("entry has no camera_id field")
        image = fields.get(b"image")
        if image is None:
            raise InvalidFrameError("entry has no image field")
        text = {
            name: _text(fields[name.encode()], name)
            for name in ("frame_id", "frame_number", "timestamp", "priority")
            if name.encode() in fields
        }
        fields_given = optional_fields(text)
        # Stored rows are keyed by (id, time): a redelivered entry must carry the
        # same time as its first delivery, so an entry with no timestamp takes
        # its id's, the moment Redis appended it (milliseconds since the epoch).
        fields_given.setdefault("timestamp", entry_time(entry_id))
        return make_frame(
            _text(raw_camera, "camera_id"),
            image,
            max_bytes=max_bytes,
            attributes=attributes,
            **fields_given,
        )
    except InvalidFrameError as exc:
        return invalid_result(
            camera,
            str(exc),
            frame_id=fallback_frame_id("redis", key, entry_id),
            attributes=attributes,
        )


class _InFlight:
    """Entries handed on and not yet acknowledged, across this process's workers.

    ``XAUTOCLAIM`` cannot tell a dead consumer's entry from one of ours that
    is merely slow; this set lets a worker skip the entries this process is
    still working on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: set[tuple[str, str]] = set()

    def add(self, key: str, entry_id: str) -> bool:
        with self._lock:
            if (key, entry_id) in self._entries:
                return False
            self._entries.add((key, entry_id))
            return True

    def discard(self, pairs: Iterable[tuple[str, str]]) -> None:
        with self._lock:
            self._entries.difference_update(pairs)


class RedisStreamReader(SourceReader):
    """One worker's stream keys: its own pending entries first, then claims, then new ones."""

    source_name = "redis"

    def __init__(
        self,
        client: redis.Redis,
        options: RedisSourceOptions,
        engine: DetectEngine,
        settings: Settings,
        *,
        in_flight: _InFlight,
        worker_index: int = 0,
        worker_count: int = 1,
        until_empty: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(
            engine, settings, batch_size=options.count, until_empty=until_empty, stop=stop
        )
        self.client = client
        self.options = options
        self.worker_index = worker_index
        self.worker_count = worker_count
        self.consumer = f"{options.consumer}-{worker_index}"
        self.keys: list[str] = []
        self._in_flight = in_flight
        self._grouped: set[str] = set()
        self._history: dict[str, str] = {}  # key -> cursor through our own pending entries
        self._claims: dict[str, str] = {}  # key -> XAUTOCLAIM cursor of the current sweep
        self._backlog: deque[Frame | FrameResult] = deque()
        self._next_scan = 0.0
        self._next_claim = 0.0

    def _start(self) -> None:
        self._refresh_keys()

    def _take(self, granted: int) -> Batch | None:
        try:
            return self._take_entries(granted)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # A stream (and its group) was deleted under us: recreate and go on.
            log.warning("redis source: %s; recreating consumer groups", exc)
            self._grouped.clear()
            self._refresh_keys()
            return []

    def _take_entries(self, granted: int) -> Batch | None:
        now = time.monotonic()
        if self.options.pattern is not None and now >= self._next_scan:
            self._refresh_keys()
        if not self._backlog:
            if self._history:
                self._read_history(granted)
            elif now >= self._next_claim or self._claims:
                self._autoclaim(granted)
            if not self._backlog and not self._history:
                self._read_new(granted)
        batch: Batch = []
        while self._backlog and len(batch) < granted:
            batch.append(self._backlog.popleft())
        if batch or self._backlog or self._history or self._claims:
            return batch
        return None

    # -- keys and groups ------------------------------------------------------

    def _refresh_keys(self) -> None:
        if self.options.pattern is not None:
            found = self.client.scan_iter(match=self.options.pattern, count=500, _type="stream")
            names = sorted({_decode(k) for k in found})
            self._next_scan = time.monotonic() + _RESCAN_SECONDS
        else:
            names = list(self.options.streams)
        mine = [k for i, k in enumerate(names) if i % self.worker_count == self.worker_index]
        for key in mine:
            if key not in self._grouped:
                self._ensure_group(key)
                self._grouped.add(key)
                self._history[key] = "0"
        self.keys = mine

    def _ensure_group(self, key: str) -> None:
        try:
            self.client.xgroup_create(key, self.options.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- reading ----------------------------------------------------------------

    def _read_history(self, granted: int) -> None:
        """Entries delivered to this consumer name before (a restart) and never acked."""
        streams: dict[Any, Any] = {k: c for k, c in self._history.items() if k in self.keys}
        self._history = dict(streams)
        if not streams:
            return
        reply = self.client.xreadgroup(
            self.options.group, self.consumer, streams, count=max(1, granted // len(streams))
        )
        seen: set[str] = set()
        for key, entries in _stream_replies(reply):
            if not entries:
                continue
            seen.add(key)
            self._history[key] = _decode(entries[-1][0])
            self._accept(key, entries, fresh=True)
        for key in streams:
            if key not in seen:
                del self._history[key]

    def _autoclaim(self, granted: int) -> None:
        """Take over entries a dead consumer left pending for ``claim_idle``."""
        if not self._claims:
            self._claims = dict.fromkeys(self.keys, "0-0")
            self._next_claim = time.monotonic() + self._claim_every
        idle_ms = int(self.options.claim_idle * 1000)
        for key, cursor in list(self._claims.items()):
            if len(self._backlog) >= granted:
                break
            reply: list[Any] = self.client.xautoclaim(
                key,
                self.options.group,
                self.consumer,
                idle_ms,
                cursor,
                count=granted - len(self._backlog),
            )
            next_cursor, entries = _decode(reply[0]), reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                log.warning(
                    "%d pending entr(ies) of stream %r were deleted before being processed",
                    len(deleted),
                    key,
                )
            if entries:
                log.info("claimed %d idle pending entr(ies) of stream %r", len(entries), key)
                self._accept(key, entries, fresh=False, deliveries=self._deliveries(key, entries))
            if next_cursor == "0-0":
                del self._claims[key]
            else:
                self._claims[key] = next_cursor

    def _read_new(self, granted: int) -> None:
        if not self.keys:
            return
        block = None
        # Block only while nothing is in flight: a blocked worker emits no results.
        if self.options.block_ms > 0 and self.engine.outstanding <= granted:
            block = self.options.block_ms
        streams: dict[Any, Any] = dict.fromkeys(self.keys, ">")
        reply = self.client.xreadgroup(
            self.options.group,
            self.consumer,
            streams,
            count=max(1, granted // len(self.keys)),
            block=block,
        )
        for key, entries in _stream_replies(reply):
            self._accept(key, entries, fresh=True)

    def _deliveries(self, key: str, entries: Sequence[Any]) -> dict[str, int]:
        """How often Redis has delivered each claimed entry (XAUTOCLAIM counts as one).

        One exact XPENDING per entry, pipelined: a range could hold other
        consumers' entries between them. Claims are rare, so this costs little.
        """
        if not self.options.max_deliveries:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            for raw_id, _ in entries:
                pipe.xpending_range(key, self.options.group, min=raw_id, max=raw_id, count=1)
            replies: list[list[dict[str, Any]]] = pipe.execute()
        return {
            _decode(row["message_id"]): int(row["times_delivered"])
            for rows in replies
            for row in rows
        }

    def _accept(
        self,
        key: str,
        entries: Sequence[Any],
        *,
        fresh: bool,
        deliveries: dict[str, int] | None = None,
    ) -> None:
        deleted: list[str] = []
        limit = self.options.max_deliveries
        for raw_id, fields in entries:
            entry_id = _decode(raw_id)
            if not fields:
                deleted.append(entry_id)
                continue
            if not self._in_flight.add(key, entry_id) and not fresh:
                continue  # claimed back from ourselves: this process is still on it
            item = entry_to_frame(key, entry_id, fields, max_bytes=self.settings.max_frame_bytes)
            delivered = (deliveries or {}).get(entry_id, 0)
            if limit and delivered > limit and isinstance(item, Frame):
                item = strip_image(failed_result(item, _abandoned(delivered, limit)))
            self._backlog.append(item)
        if deleted:
            # Gone from the stream while pending: nothing is left to record.
            log.warning(
                "acknowledging %d entr(ies) of stream %r deleted before being processed",
                len(deleted),
                key,
            )
            self.client.xack(key, self.options.group, *deleted)

    @property
    def _claim_every(self) -> float:
        return min(max(self.options.claim_idle / 2, 0.05), 10.0)


def _abandoned(delivered: int, limit: int) -> str:
    return (
        f"abandoned after {delivered} deliveries: every worker that took this entry stopped "
        f"before storing a result (max_deliveries={limit})"
    )


class RedisAcknowledger:
    """``XACK`` the entries whose results were just stored (the sink calls this)."""

    def __init__(self, client: redis.Redis, group: str, in_flight: _InFlight) -> None:
        self.client = client
        self.group = group
        self.in_flight = in_flight

    def __call__(self, results: Sequence[FrameResult]) -> None:
        by_key: dict[str, list[str]] = {}
        for result in results:
            key = result.frame.attributes.get(STREAM_ATTR)
            entry_id = result.frame.attributes.get(ID_ATTR)
            if key is not None and entry_id is not None:
                by_key.setdefault(key, []).append(entry_id)
        if not by_key:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for key, ids in by_key.items():
                pipe.xack(key, self.group, *ids)
            pipe.execute()
        self.in_flight.discard((k, i) for k, ids in by_key.items() for i in ids)


def redis_source_factory(
    url: str,
    settings: Settings,
    *,
    engine: DetectEngine,
    until_empty: bool = False,
    stop: threading.Event | None = None,
) -> Any:
    """Build the source for ``url``; refuses bad options and an unreachable server clearly.

    One client (a thread-safe connection pool) serves every worker of the
    process and the acknowledgements; it is closed when the flow ends.
    """
    from detectflow.flows.dataflow import ReaderSource

    options = parse_redis_source_url(url, settings)
    client = redis.Redis.from_url(options.connection_url, decode_responses=False)
    try:
        client.ping()
    except RedisError as exc:
        client.close()
        raise SourceUnavailableError(f"cannot reach Redis for the redis source: {exc}") from None
    in_flight = _InFlight()

    def build(worker_index: int, worker_count: int) -> RedisStreamReader:
        return RedisStreamReader(
            client,
            options,
            engine,
            settings,
            in_flight=in_flight,
            worker_index=worker_index,
            worker_count=worker_count,
            until_empty=until_empty,
            stop=stop,
        )

    return ReaderSource(
        build, acknowledge=RedisAcknowledger(client, options.group, in_flight), close=client.close
    )


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_replies(reply: Any) -> list[tuple[str, Sequence[Any]]]:
    """XREADGROUP's answer as (key, entries) pairs, in RESP2 or RESP3 shape."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(_decode(k), v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(_decode(key), entries) for key, entries in reply]


@hookimpl
def detectflow_frame_sources() -> dict[str, Callable[..., Any]]:
    return {"redis": redis_source_factory, "rediss": redis_source_factory}
