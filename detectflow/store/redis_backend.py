"""The cache and bus on Redis, so several processes share live data.

Named ``redis_backend`` rather than ``redis`` so that nothing here can ever
shadow the ``redis`` package, whatever the import style of a caller.

Every key and channel gets a prefix (default ``detectflow:``) so several
deployments can share one Redis. Key names, channel names and TTLs belong to
:mod:`detectflow.store.live`; this module knows none of them.

Writes go out as one round trip per call (``set_many`` is one pipelined
``SET ... PX`` per key), because a round trip, not Redis, is what a frame
batch pays for. ``publish_many`` sends every message of a batch as the
arguments of one Lua script that publishes them in order: a dataflow batch
is a thousand messages or more (one per frame for its detections, one per
event; see :mod:`detectflow.store.live`), and redis-py's per-command
pipeline bookkeeping cost ~3x the CPU (``bench/flow_throughput.py``). A
server that refuses scripts gets the pipeline instead.

Subscriptions. ``Bus.subscribe`` is synchronous and its contract is that a
message published after it returns is delivered. ``redis.asyncio`` cannot
confirm a ``PSUBSCRIBE`` before a synchronous call returns, so each
subscription owns one plain connection read by its own thread: ``subscribe``
waits (at most ``subscribe_timeout`` seconds) for Redis to confirm the
patterns, then the thread hands messages, in order, to the subscriber's event
loop. If the connection drops, the thread re-subscribes with exponential
backoff and jitter and iteration simply continues; **messages published
while it is disconnected are lost** (Redis pub/sub keeps nothing), which is
acceptable for a live feed whose state is also in the cache. Once
re-subscribed it yields one :data:`~detectflow.store.cache.BUS_RECONNECTED`
note saying when the gap began and ended, so the server's hub can tell its
WebSocket clients (``lagged``). Like the
in-process bus, a subscriber that falls ``subscriber_queue`` messages behind
loses its oldest messages and counts them in ``dropped``.

Outages. Every cache and bus call raises
:class:`~detectflow.store.cache.CacheUnavailableError` when Redis cannot be
reached or refuses the command, never redis-py's own errors. After a
connection failure the cache (and the bus's publishing side) fails fast for
a pause that doubles from ``outage_backoff[0]`` to ``outage_backoff[1]``
seconds, and then lets ONE call through to try again: a Redis that drops
packets would otherwise cost every request and every dataflow batch a
connect timeout (2 s by default, twice with the retry), where the pause
costs nothing. A lost connection is still retried once at once on a fresh
one (a stale pooled socket, a restarted Redis) before it counts as a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar, cast

import redis
from redis.backoff import NoBackoff
from redis.connection import ConnectionPool, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from detectflow.core.serialize import isoformat
from detectflow.store.cache import BUS_RECONNECTED, CacheUnavailableError

__all__ = [
    "DEFAULT_OUTAGE_BACKOFF",
    "DEFAULT_PREFIX",
    "RedisBus",
    "RedisCache",
    "RedisSubscription",
    "RedisURLError",
    "escape_glob",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "detectflow:"

DEFAULT_OUTAGE_BACKOFF = (0.2, 5.0)
"""Seconds to fail fast after a connection failure: the first pause, and the most
it doubles to. The upper bound is also how long a recovered Redis may go unused."""

T = TypeVar("T")

# Defaults a URL may override (``?socket_timeout=...``): without timeouts a
# Redis that stops answering would hang a dataflow worker for good.
_DEFAULT_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}
# Ours to decide whatever the URL says: values are bytes, replies RESP2 arrays.
_FORCED_OPTIONS: dict[str, Any] = {"decode_responses": False, "protocol": 2}


_PUBLISH_ALL = "for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end"
"""Publishes ARGV's (channel, message) pairs in order; no keys, so any node may run it."""

_PASSWORD = re.compile(r"(//[^/@:]*:)[^@]*@")

_parse_url: Callable[[str], dict[str, Any]] = parse_url  # redis-py leaves it untyped


class RedisURLError(ValueError):
    """``DETECTFLOW_REDIS_URL`` is not a Redis URL detectflow can use."""


def escape_glob(text: str) -> str:
    """``text`` as a literal inside a PSUBSCRIBE pattern (a prefix may hold ``*``)."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _redacted(url: str) -> str:
    """``url`` with any password masked; a regex, since the URL may not even parse."""
    return _PASSWORD.sub(r"\1***@", url)


def _pool(
    url: str,
    *,
    retries: int,
    defaults: Mapping[str, Any] | None = None,
    forced: Mapping[str, Any] | None = None,
) -> ConnectionPool:
    """A connection pool for ``url``; a bad URL fails here, not at first use.

    ``retries`` without backoff: a failed command is retried on a fresh
    connection that many times (one covers a pooled socket gone stale), then
    fails fast, since a stalled cache write stalls a dataflow worker.
    """
    if not isinstance(url, str):
        raise RedisURLError(f"a Redis URL must be a string, not {type(url).__name__}")
    try:
        options = {
            **_DEFAULT_OPTIONS,
            **(defaults or {}),
            **_parse_url(url.strip()),
            **_FORCED_OPTIONS,
            **(forced or {}),
        }
        options["retry"] = Retry(NoBackoff(), retries)
        pool = ConnectionPool(**options)
        # Unknown query options only fail when a connection is made: make one now
        # (no socket is opened) so they are reported with the URL.
        pool.connection_class(**pool.connection_kwargs)
    except (TypeError, ValueError) as exc:
        raise RedisURLError(
            f"not a usable Redis URL {_redacted(url)!r} ({exc}); "
            "expected redis://[user:password@]host:6379/0, rediss://... or unix:///path"
        ) from None
    return pool


class _Outage:
    """Whether Redis is known to be unreachable, and when to try it again.

    A small circuit breaker shared by the threads of one client: closed while
    calls succeed; after a connection failure, calls fail at once until the
    pause is over, then one call (the probe) goes through while the others
    still fail fast; the probe's success closes it, its failure doubles the pause.
    """

    def __init__(
        self, where: str, backoff: tuple[float, float], clock: Callable[[], float]
    ) -> None:
        low, high = backoff
        if not 0 < low <= high:
            raise ValueError("need 0 < outage_backoff[0] <= outage_backoff[1]")
        self._where = where
        self._low, self._high = low, high
        self._clock = clock
        self._lock = threading.Lock()
        self._pause = 0.0
        self._retry_at = 0.0
        self._probing = False
        self.error: str | None = None
        """Why the last call failed, while Redis is down (None while it is up)."""
        self.down_since: float | None = None
        """Wall-clock time of the first failure of this outage (None while up)."""

    def check(self) -> None:
        """Raise :class:`CacheUnavailableError` unless this call may go to Redis."""
        if self.error is None:
            return
        with self._lock:
            if self.error is None:
                return
            if self._probing or self._clock() < self._retry_at:
                raise CacheUnavailableError(f"Redis at {self._where} is unreachable: {self.error}")
            self._probing = True

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            first = self.error is None
            self._probing = False
            self._pause = min(self._high, max(self._low, self._pause * 2))
            self._retry_at = self._clock() + self._pause
            self.error = str(exc) or type(exc).__name__
            if first:
                self.down_since = time.time()
        if first:
            log.warning(
                "Redis at %s is unreachable (%s); failing fast, trying again in %.1fs",
                self._where,
                self.error,
                self._pause,
            )

    def succeeded(self) -> None:
        if self.error is None:
            return
        with self._lock:
            if self.error is None:
                return
            down_for = time.time() - (self.down_since or time.time())
            self.error, self.down_since = None, None
            self._pause, self._retry_at, self._probing = 0.0, 0.0, False
        log.warning("Redis at %s answers again after %.1fs", self._where, down_for)

    def run(self, call: Callable[[], T]) -> T:
        """``call()``, with redis-py's and the socket's errors as CacheUnavailableError."""
        self.check()
        try:
            result = call()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self.failed(exc)
            raise CacheUnavailableError(f"Redis at {self._where} is unreachable: {exc}") from exc
        except RedisError as exc:
            # Redis answered (READONLY, OOM, ...): no reason to fail fast, but the
            # caller degrades the same way.
            self._release_probe()
            raise CacheUnavailableError(f"Redis at {self._where} refused: {exc}") from exc
        except BaseException:
            self._release_probe()
            raise
        self.succeeded()
        return result

    def _release_probe(self) -> None:
        with self._lock:
            self._probing = False


def _where(pool: ConnectionPool) -> str:
    """host:port (or the socket path) of a pool, for messages: never its credentials."""
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, not {type(prefix).__name__}")
    return prefix


class RedisCache:
    """The :class:`~detectflow.store.cache.Cache` on Redis; thread-safe (one pool)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        outage_backoff: tuple[float, float] = DEFAULT_OUTAGE_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix = _check_prefix(prefix)
        pool = _pool(url, retries=1)
        self._client = redis.Redis(connection_pool=pool)
        self.outage = _Outage(_where(pool), outage_backoff, clock)
        """Whether Redis is known to be down (``outage.error``), for health reports."""

    def get(self, key: str) -> bytes | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        names = [self.prefix + k for k in keys]
        # decode_responses is forced off, so values are bytes.
        return cast(list[bytes | None], self.outage.run(lambda: self._client.mget(names)))

    def set_many(self, items: Mapping[str, bytes], ttl_seconds: float) -> None:
        if not ttl_seconds > 0 or math.isinf(ttl_seconds):
            raise ValueError(f"ttl_seconds must be > 0 and finite, got {ttl_seconds}")
        if not items:
            return
        ttl_ms = max(1, round(ttl_seconds * 1000))
        pipe = self._client.pipeline(transaction=False)
        for key, value in items.items():
            pipe.set(self.prefix + key, bytes(value), px=ttl_ms)
        self.outage.run(pipe.execute)

    def delete(self, key: str) -> None:
        self.outage.run(lambda: self._client.delete(self.prefix + key))

    def ping(self) -> None:
        self.outage.run(self._client.ping)

    def close(self) -> None:
        """Close the pool's sockets; the cache must not be used afterwards."""
        self._client.close()
        self._client.connection_pool.disconnect()  # a pool passed in is not closed by close()

    def __enter__(self) -> RedisCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisBus:
    """The :class:`~detectflow.store.cache.Bus` on Redis pub/sub.

    ``publish``/``publish_many`` are thread-safe (one pool). Each
    :meth:`subscribe` opens a connection of its own, read by its own thread.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        subscriber_queue: int = 10_000,
        subscribe_timeout: float = 2.0,
        reconnect_min_seconds: float = 0.05,
        reconnect_max_seconds: float = 5.0,
        health_check_seconds: float = 30.0,
        outage_backoff: tuple[float, float] = DEFAULT_OUTAGE_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if subscriber_queue < 1:
            raise ValueError("subscriber_queue must be >= 1")
        if not 0 < reconnect_min_seconds <= reconnect_max_seconds:
            raise ValueError("need 0 < reconnect_min_seconds <= reconnect_max_seconds")
        if health_check_seconds <= 0 or subscribe_timeout < 0:
            raise ValueError("health_check_seconds must be > 0 and subscribe_timeout >= 0")
        self.prefix = _check_prefix(prefix)
        self._url = url
        pool = _pool(url, retries=1)
        self._client = redis.Redis(connection_pool=pool)
        self.outage = _Outage(_where(pool), outage_backoff, clock)
        """Whether publishing is known to fail (``outage.error``), for health reports."""
        self._subscriber_queue = subscriber_queue
        self._subscribe_timeout = subscribe_timeout
        self._backoff = (reconnect_min_seconds, reconnect_max_seconds)
        self._health_check = health_check_seconds
        self._lock = threading.Lock()
        self._subscriptions: set[RedisSubscription] = set()
        self._publish_all: Any = self._client.register_script(_PUBLISH_ALL)
        self._scripts_refused = False

    def publish(self, channel: str, message: bytes) -> None:
        self.outage.run(lambda: self._client.publish(self.prefix + channel, bytes(message)))

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        self.outage.run(lambda: self._publish_many(messages))

    def ping(self) -> None:
        self.outage.run(self._client.ping)

    def _publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not self._scripts_refused:
            args: list[str | bytes] = []
            for channel, message in messages:
                args.append(self.prefix + channel)
                args.append(bytes(message))
            try:
                self._publish_all(keys=[], args=args)
                return
            except ResponseError as exc:  # scripting disabled or denied by an ACL
                log.warning("Redis refused the publish script (%s); pipelining instead", exc)
                self._scripts_refused = True
        pipe = self._client.pipeline(transaction=False)
        for channel, message in messages:
            pipe.publish(self.prefix + channel, bytes(message))
        pipe.execute()

    def subscribe(self, patterns: Sequence[str]) -> RedisSubscription:
        """Subscribe the running event loop to channels matching the glob ``patterns``.

        Waits for Redis to confirm, so what is published afterwards arrives.
        If Redis cannot be reached it returns anyway (after at most
        ``subscribe_timeout``) and keeps trying in the background.
        """
        if isinstance(patterns, str):
            raise TypeError("patterns must be a sequence of strings, not one string")
        wanted = list(dict.fromkeys(patterns))
        if not wanted:
            raise ValueError("subscribe needs at least one pattern")
        loop = asyncio.get_running_loop()
        # An idle subscription is checked by our own PING, not by a socket
        # timeout (that only bounds the handshake and a reply cut halfway), and
        # redis-py's health check would read a pmessage as a bad PONG: off.
        pool = _pool(
            self._url,
            retries=0,
            defaults={"socket_timeout": self._health_check},
            forced={"health_check_interval": 0},
        )
        sub = RedisSubscription(
            pool,
            [escape_glob(self.prefix) + p for p in wanted],
            prefix=self.prefix,
            loop=loop,
            maxsize=self._subscriber_queue,
            backoff=self._backoff,
            health_check_seconds=self._health_check,
            on_exit=self._forget,
        )
        with self._lock:
            self._subscriptions.add(sub)
        sub._start(self._subscribe_timeout)
        return sub

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    def _forget(self, sub: RedisSubscription) -> None:
        with self._lock:
            self._subscriptions.discard(sub)

    def close(self) -> None:
        """Close the publishing pool and stop any subscription still open."""
        with self._lock:
            open_subs = list(self._subscriptions)
        for sub in open_subs:
            sub._stop(join=True)
        self._client.close()
        self._client.connection_pool.disconnect()  # a pool passed in is not closed by close()

    def __enter__(self) -> RedisBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisSubscription:
    """One PSUBSCRIBE connection, its reader thread, and a bounded queue for one loop."""

    def __init__(
        self,
        pool: ConnectionPool,
        patterns: Sequence[str],
        *,
        prefix: str,
        loop: asyncio.AbstractEventLoop,
        maxsize: int,
        backoff: tuple[float, float],
        health_check_seconds: float,
        on_exit: Callable[[RedisSubscription], None] | None = None,
    ) -> None:
        self.patterns = tuple(patterns)
        """The patterns as sent to Redis (prefixed)."""
        self._pool = pool
        self._prefix = prefix.encode()
        self._loop = loop
        self._maxsize = maxsize
        self._backoff = backoff
        self._health_check = health_check_seconds
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self._failure: BaseException | None = None
        self._stopping = threading.Event()
        self._confirmed = threading.Event()
        self._socket_lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, name="detectflow-redis-subscription", daemon=True
        )
        self.dropped = 0
        """Messages discarded because this subscriber fell ``maxsize`` behind."""
        self.reconnects = 0
        """Times the connection was lost or could not be made and was retried."""
        self.connection_id: int | None = None
        """Redis's ``CLIENT ID`` of the current connection (for operators and tests)."""
        self._lost_at: float | None = None

    @property
    def connected(self) -> bool:
        """Subscribed now (False before the first confirmation and while reconnecting)."""
        return self.connection_id is not None

    # -- the subscriber's side (its event loop) ---------------------------------

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        while True:
            with self._lock:
                if self._queue:
                    return self._queue.popleft()
                if self._failure is not None:
                    raise self._failure
                if self._closed:
                    raise StopAsyncIteration
                self._ready.clear()
            await self._ready.wait()

    async def aclose(self) -> None:
        """Stop delivery at once, unsubscribe and close the connection."""
        with self._lock:
            self._closed = True
            self._queue.clear()
        self._ready.set()
        self._stop(join=False)
        if self._thread.is_alive():
            await asyncio.wrap_future(self._done)

    # -- the reader thread ------------------------------------------------------

    def _start(self, wait: float) -> None:
        self._thread.start()
        self._confirmed.wait(wait)

    def _stop(self, *, join: bool) -> None:
        """Ask the reader to end; safe from any thread, any number of times."""
        self._stopping.set()
        with self._socket_lock:
            if self._socket is not None:
                # Wakes the reader from a blocking read; it closes the socket.
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)
        if join and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        low, high = self._backoff
        delay = low
        try:
            while not self._stopping.is_set():
                try:
                    self._serve()
                    return
                except (RedisError, OSError) as exc:
                    if self._stopping.is_set():
                        return
                    if self.connection_id is not None:
                        delay = low  # it was up: start the backoff over
                    if self._lost_at is None:
                        self._lost_at = time.time()
                    self.connection_id = None
                    self.reconnects += 1
                    self._confirmed.set()  # subscribe() need not wait any longer
                    pause = random.uniform(delay / 2, delay)
                    log.warning(
                        "Redis subscription %s lost (%s); re-subscribing in %.2fs "
                        "(messages published meanwhile are lost)",
                        list(self.patterns),
                        exc,
                        pause,
                    )
                    if self._stopping.wait(pause):
                        return
                    delay = min(delay * 2, high)
        except BaseException as exc:  # a bug, not the network: hand it to the subscriber
            with self._lock:
                self._failure = exc
            self._wake()
        finally:
            with self._lock:
                self._closed = True  # the subscriber drains what is queued, then stops
            self._wake()
            self._confirmed.set()
            self._pool.disconnect()
            if self._on_exit is not None:
                self._on_exit(self)
            self._done.set_result(None)

    def _serve(self) -> None:
        """Connect, subscribe and read until stopped; raises when the connection fails."""
        conn = self._pool.connection_class(**self._pool.connection_kwargs)
        try:
            conn.connect()
            with self._socket_lock:
                self._socket = getattr(conn, "_sock", None)
            if self._stopping.is_set():
                return
            conn.send_command("CLIENT", "ID")
            client_id = conn.read_response()
            conn.send_command("PSUBSCRIBE", *self.patterns)
            for _ in self.patterns:
                reply = conn.read_response()
                if not (isinstance(reply, list) and reply and reply[0] == b"psubscribe"):
                    raise RedisError(f"unexpected reply to PSUBSCRIBE: {reply!r}")
            self.connection_id = int(client_id)
            if self._lost_at is not None:
                self._enqueue((BUS_RECONNECTED, _gap_note(self._lost_at, time.time())))
                self._lost_at = None
            self._confirmed.set()
            self._read(conn)
        finally:
            with self._socket_lock:
                self._socket = None
            conn.disconnect()

    def _read(self, conn: Any) -> None:
        awaiting_pong = False
        while not self._stopping.is_set():
            if not conn.can_read(timeout=self._health_check):
                if awaiting_pong:
                    raise RedisError(f"no answer to PING within {self._health_check}s")
                conn.send_command("PING")
                awaiting_pong = True
                continue
            reply = conn.read_response(disconnect_on_error=False)
            awaiting_pong = False
            if isinstance(reply, list) and len(reply) == 4 and reply[0] == b"pmessage":
                self._deliver(reply[2], reply[3])

    def _deliver(self, raw_channel: bytes, payload: bytes) -> None:
        if raw_channel.startswith(self._prefix):
            raw_channel = raw_channel[len(self._prefix) :]
        self._enqueue((raw_channel.decode("utf-8", "replace"), bytes(payload)))

    def _enqueue(self, item: tuple[str, bytes]) -> None:
        with self._lock:
            if self._closed:
                return
            was_empty = not self._queue
            if len(self._queue) >= self._maxsize:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(item)
        if was_empty:
            self._wake()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the subscriber's loop is closed: nobody will read
            self._stop(join=False)


def _gap_note(lost_at: float, reconnected_at: float) -> bytes:
    """The :data:`~detectflow.store.cache.BUS_RECONNECTED` message body."""

    def stamp(t: float) -> str:
        return isoformat(datetime.fromtimestamp(t, UTC))

    return json.dumps({"lost_at": stamp(lost_at), "reconnected_at": stamp(reconnected_at)}).encode()
