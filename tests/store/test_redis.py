"""The Redis cache and bus beyond the shared suite (tests/store/test_cache.py).

Prefixes, TTLs as Redis stores them, URLs, reconnects after a killed
connection and a restarted server, and live data shared between separate
instances, processes and a running server. Everything talks to the real Redis
(db 15), each test under a prefix of its own, and deletes only that prefix.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from detectflow.core.frames import parse_timestamp
from detectflow.core.serialize import detection_messages
from detectflow.core.settings import Settings
from detectflow.store.cache import BUS_RECONNECTED, CacheUnavailableError
from detectflow.store.live import LiveView
from detectflow.store.redis_backend import (
    DEFAULT_PREFIX,
    RedisBus,
    RedisCache,
    RedisURLError,
    escape_glob,
)
from tests import services
from tests.clock import Clock
from tests.redis_server import RedisServer
from tests.server.support import TestClient
from tests.store.builders import frame, result

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

URL = services.REDIS_URL


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def admin() -> Iterator[redis.Redis]:
    with redis.Redis.from_url(URL) as client:
        yield client


@pytest.fixture
def prefix(admin: redis.Redis) -> Iterator[str]:
    value = f"detectflow-test-{uuid.uuid4().hex[:12]}:"
    yield value
    for key in admin.scan_iter(match=f"{escape_glob(value)}*"):
        admin.delete(key)


@pytest.fixture
def cache(prefix: str) -> Iterator[RedisCache]:
    with RedisCache(URL, prefix=prefix) as c:
        yield c


@pytest.fixture
def bus(prefix: str) -> Iterator[RedisBus]:
    with RedisBus(URL, prefix=prefix) as b:
        yield b


async def _next(sub: AsyncIterator[tuple[str, bytes]], timeout: float = 3.0) -> tuple[str, bytes]:
    with anyio.fail_after(timeout):
        return await anext(aiter(sub))


async def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await anyio.sleep(0.01)


async def _expect_gap_note(sub: AsyncIterator[tuple[str, bytes]]) -> None:
    """The next item is the note of a re-subscription, with its gap in order."""
    channel, body = await _next(sub)
    assert channel == BUS_RECONNECTED
    note = json.loads(body)
    assert parse_timestamp(note["lost_at"]) <= parse_timestamp(note["reconnected_at"])


# -- cache -------------------------------------------------------------------


def test_keys_are_stored_under_the_prefix_and_prefixes_do_not_mix(
    cache: RedisCache, admin: redis.Redis, prefix: str
) -> None:
    cache.set_many({"live:cam-1": b"v"}, ttl_seconds=30)
    assert admin.get(f"{prefix}live:cam-1") == b"v"
    assert admin.get("live:cam-1") is None
    with RedisCache(URL, prefix=prefix + "other:") as other:
        assert other.get("live:cam-1") is None
        other.set_many({"live:cam-1": b"w"}, ttl_seconds=30)
    assert cache.get("live:cam-1") == b"v"


def test_every_key_gets_the_ttl_in_milliseconds(
    cache: RedisCache, admin: redis.Redis, prefix: str
) -> None:
    cache.set_many({"a": b"1", "b": b"2", "c": b"3"}, ttl_seconds=3)
    cache.set_many({"tiny": b"x"}, ttl_seconds=0.0001)  # rounds up to Redis's 1 ms, not 0
    for key in ("a", "b", "c"):
        assert 2500 < admin.pttl(f"{prefix}{key}") <= 3000
    time.sleep(0.01)
    assert cache.get("tiny") is None


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_set_many_refuses_a_ttl_redis_cannot_keep(cache: RedisCache, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        cache.set_many({"k": b"v"}, ttl_seconds=ttl)
    assert cache.get("k") is None


def test_empty_calls_make_no_round_trip(free_port: int) -> None:
    # Nothing listens on free_port: any round trip would raise.
    url = f"redis://127.0.0.1:{free_port}/0"
    with RedisCache(url) as c, RedisBus(url) as b:
        assert c.get_many([]) == []
        c.set_many({}, ttl_seconds=1)
        b.publish_many([])


def test_an_unreachable_redis_is_a_cache_unavailable_error_naming_it(free_port: int) -> None:
    with (
        RedisCache(f"redis://:hunter2@127.0.0.1:{free_port}/0") as c,
        RedisBus(f"redis://:hunter2@127.0.0.1:{free_port}/0") as b,
    ):
        for call in (lambda: c.get("k"), lambda: c.set_many({"k": b"v"}, 1), c.ping, b.ping):
            with pytest.raises(CacheUnavailableError, match=f"127.0.0.1:{free_port}") as info:
                call()
            assert "hunter2" not in str(info.value)
        with pytest.raises(CacheUnavailableError):
            b.publish_many([("c", b"m")])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/0",
        "127.0.0.1:6379",
        "redis://127.0.0.1:6379/0?prefix=x",
        "redis://127.0.0.1:6379/0?socket_timeout=soon",
        "redis://:hunter2@127.0.0.1:notaport/0",
    ],
)
def test_a_bad_url_is_a_clear_error_that_hides_the_password(url: str) -> None:
    for cls in (RedisCache, RedisBus):
        with pytest.raises(RedisURLError, match="not a usable Redis URL") as info:
            cls(url)
        assert "hunter2" not in str(info.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60).map(lambda s: "redis://" + s) | st.text(max_size=60))
def test_any_url_either_opens_or_is_a_redis_url_error(url: str) -> None:
    try:
        cache = RedisCache(url)
    except RedisURLError:
        return
    cache.close()


# -- bus ---------------------------------------------------------------------


async def test_channels_carry_the_prefix_and_it_is_stripped_on_delivery(
    bus: RedisBus, admin: redis.Redis, prefix: str
) -> None:
    sub = bus.subscribe(["detections:*"])
    try:
        raw = admin.pubsub()  # type: ignore[no-untyped-call]
        raw.psubscribe(f"{escape_glob(prefix)}*")
        with anyio.fail_after(2):
            while raw.get_message(timeout=0.05) is None:
                pass
        bus.publish("detections:cam-1", b"x")
        assert await _next(sub) == ("detections:cam-1", b"x")
        with anyio.fail_after(2):
            while (message := raw.get_message(timeout=0.05)) is None:
                pass
        assert message["channel"] == f"{prefix}detections:cam-1".encode()
        raw.close()
    finally:
        await sub.aclose()


async def test_a_prefix_with_glob_characters_is_matched_literally(prefix: str) -> None:
    star = prefix + "a*b:"
    with RedisBus(URL, prefix=star) as mine, RedisBus(URL, prefix=prefix + "aXb:") as theirs:
        sub = mine.subscribe(["c"])
        try:
            theirs.publish("c", b"not for me")
            mine.publish("c", b"mine")
            assert await _next(sub) == ("c", b"mine")
        finally:
            await sub.aclose()


async def test_subscribe_validates_its_arguments(bus: RedisBus) -> None:
    with pytest.raises(TypeError, match="sequence of strings"):
        bus.subscribe("detections:*")
    with pytest.raises(ValueError, match="at least one pattern"):
        bus.subscribe([])
    assert bus.subscriber_count == 0


def test_subscribe_needs_a_running_loop(bus: RedisBus) -> None:
    with pytest.raises(RuntimeError):
        bus.subscribe(["c"])
    assert bus.subscriber_count == 0


async def test_aclose_closes_the_subscription_connection(bus: RedisBus, admin: redis.Redis) -> None:
    sub = bus.subscribe(["c"])
    connection_id = sub.connection_id
    assert connection_id is not None
    assert admin.client_list(client_id=[connection_id])
    await sub.aclose()
    assert admin.client_list(client_id=[connection_id]) == []
    assert bus.subscriber_count == 0


async def test_closing_the_bus_ends_an_open_subscription(prefix: str) -> None:
    bus = RedisBus(URL, prefix=prefix)
    sub = bus.subscribe(["c"])
    bus.publish("c", b"before")
    assert await _next(sub) == ("c", b"before")
    bus.close()
    with anyio.fail_after(3):
        assert [item async for item in sub] == []
    assert bus.subscriber_count == 0
    await sub.aclose()


async def test_a_killed_subscription_reconnects_and_keeps_delivering_in_order(
    prefix: str, admin: redis.Redis
) -> None:
    with RedisBus(URL, prefix=prefix, reconnect_min_seconds=0.01) as bus:
        sub = bus.subscribe(["c:*"])
        try:
            bus.publish("c:1", b"before")
            assert await _next(sub) == ("c:1", b"before")
            first_id = sub.connection_id
            assert first_id is not None
            assert admin.client_kill_filter(_id=str(first_id)) == 1
            await _wait_for(lambda: sub.connection_id not in (None, first_id))
            assert sub.reconnects == 1
            await _expect_gap_note(sub)
            bus.publish_many([(f"c:{i}", str(i).encode()) for i in range(50)])
            assert [int(m) for _, m in [await _next(sub) for _ in range(50)]] == list(range(50))
        finally:
            await sub.aclose()


async def test_a_subscription_outlives_a_redis_that_is_down_then_restarts(
    own_redis: RedisServer,
) -> None:
    own_redis.stop()
    with RedisBus(own_redis.url, reconnect_min_seconds=0.01, reconnect_max_seconds=0.05) as bus:
        started = time.monotonic()
        sub = bus.subscribe(["c"])  # Redis is not running yet: returns, keeps trying
        assert time.monotonic() - started < 1
        own_redis.start()
        try:
            await _wait_for(lambda: sub.connection_id is not None)
            assert sub.reconnects >= 1
            await _expect_gap_note(sub)  # it never reached Redis: it may have missed some
            bus.publish("c", b"first life")
            assert await _next(sub) == ("c", b"first life")
            own_redis.stop()
            await _wait_for(lambda: sub.connection_id is None)
            assert not sub.connected
            own_redis.start()
            await _wait_for(lambda: sub.connection_id is not None)
            assert sub.connected
            await _expect_gap_note(sub)
            await _wait_for(_publishes(bus))  # the publishing side fails fast for a while
            assert await _next(sub) == ("c", b"second life")
        finally:
            await sub.aclose()


def _publishes(bus: RedisBus) -> Callable[[], bool]:
    def attempt() -> bool:
        try:
            bus.publish("c", b"second life")
        except CacheUnavailableError:
            return False
        return True

    return attempt


async def test_an_idle_subscription_is_pinged_and_a_silent_redis_is_left(
    own_redis: RedisServer,
) -> None:
    url = own_redis.url
    with RedisBus(url, health_check_seconds=0.05, reconnect_min_seconds=0.01) as bus:
        sub = bus.subscribe(["c"])
        try:
            await anyio.sleep(0.3)  # several PING/PONG rounds while idle
            assert sub.reconnects == 0
            with redis.Redis.from_url(url) as other:
                other.execute_command("CLIENT", "PAUSE", "400", "ALL")  # PINGs go unanswered
            await _wait_for(lambda: sub.reconnects >= 1, timeout=2)
            await _wait_for(lambda: sub.connection_id is not None)  # back once unpaused
            await _expect_gap_note(sub)
            bus.publish("c", b"after the pause")
            assert await _next(sub) == ("c", b"after the pause")
        finally:
            await sub.aclose()


# -- outages: fail fast, then probe --------------------------------------------


def _reaches_redis(call: Callable[[], object]) -> bool:
    """Call, which must fail: True if it went to Redis, False if it failed fast."""
    with pytest.raises(CacheUnavailableError, match="unreachable") as info:
        call()
    return info.value.__cause__ is not None  # the socket's error, when one was made


def test_after_a_failure_calls_fail_fast_until_the_pause_then_one_probes(
    own_redis: RedisServer,
) -> None:
    clock = Clock()
    own_redis.stop()
    with RedisCache(own_redis.url, outage_backoff=(1.0, 4.0), clock=clock) as cache:
        assert _reaches_redis(lambda: cache.get("k"))  # a real connection refused
        assert cache.outage.error is not None and cache.outage.down_since is not None
        own_redis.start()
        # Redis is back, but within the pause nothing is sent (it would answer).
        assert not _reaches_redis(lambda: cache.set_many({"k": b"v"}, ttl_seconds=30))
        clock.now += 1.0
        cache.outage.check()  # the pause is over: one caller may probe (this one)...
        assert not _reaches_redis(cache.ping)  # ...while every other one still fails fast
        cache.outage.succeeded()  # the probe's answer
        cache.set_many({"k": b"v"}, ttl_seconds=30)
        assert cache.outage.error is None
        assert cache.get("k") == b"v"
        own_redis.stop()
        assert _reaches_redis(cache.ping)  # a new outage is noticed by the next call
        own_redis.start()
        clock.now += 1.0
        cache.ping()  # the probe itself succeeds: all is well again
        assert cache.outage.error is None


def test_each_failed_probe_doubles_the_pause_up_to_the_most(free_port: int) -> None:
    clock = Clock()
    url = f"redis://127.0.0.1:{free_port}/0"  # nothing listens there
    with RedisCache(url, outage_backoff=(1.0, 4.0), clock=clock) as cache:
        assert _reaches_redis(lambda: cache.get("k"))
        pauses = []
        for _ in range(4):
            waited = 0.0
            while True:
                clock.now += 0.5
                waited += 0.5
                if _reaches_redis(lambda: cache.get("k")):
                    break
            pauses.append(waited)
    assert pauses == [1.0, 2.0, 4.0, 4.0]


# -- sharing between instances, processes and a server -----------------------

_PUBLISHER = """
import sys
from detectflow.store.redis_backend import RedisBus
with RedisBus(sys.argv[1], prefix=sys.argv[2]) as bus:
    bus.publish_many([("detections:cam-x", b'{"n": 1}'), ("detections:cam-x", b'{"n": 2}')])
"""


async def test_a_message_published_in_another_process_reaches_this_one(
    bus: RedisBus, prefix: str
) -> None:
    sub = bus.subscribe(["detections:*"])
    try:
        done = await anyio.run_process([sys.executable, "-c", _PUBLISHER, URL, prefix], check=False)
        assert done.returncode == 0, done.stderr.decode()
        got = [await _next(sub), await _next(sub)]
        assert got == [("detections:cam-x", b'{"n": 1}'), ("detections:cam-x", b'{"n": 2}')]
    finally:
        await sub.aclose()


async def test_live_view_written_by_one_instance_is_read_by_another(prefix: str) -> None:
    camera = f"cam-{uuid.uuid4().hex[:6]}"
    f = frame(camera)
    with (
        RedisCache(URL, prefix=prefix) as writer_cache,
        RedisBus(URL, prefix=prefix) as writer_bus,
        RedisCache(URL, prefix=prefix) as reader_cache,
        RedisBus(URL, prefix=prefix) as reader_bus,
    ):
        reader = LiveView(reader_cache, reader_bus)
        sub = reader_bus.subscribe([f"detections:{camera}", "events:*"])
        try:
            assert reader.live(camera) is None
            written = result(f, detections=2)
            LiveView(writer_cache, writer_bus).publish([written])
            snapshot = reader.live(camera)
            assert snapshot is not None
            assert snapshot.camera_ids == (camera,)
            assert [d["id"] for d in snapshot.detections] == [d.id for d in written.detections]
            everything = reader.live()
            assert everything is not None and camera in everything.camera_ids
            messages = [await _next(sub) for _ in range(2)]
            assert [ch for ch, _ in messages] == [
                f"detections:{camera}",
                "events:detection_completed",
            ]
            broadcasts = detection_messages(json.loads(messages[0][1]))
            assert [m["detection_id"] for m in broadcasts] == [d.id for d in written.detections]
            assert {m["camera_id"] for m in broadcasts} == {camera}
        finally:
            await sub.aclose()


def test_a_server_streams_a_detection_published_by_another_bus(tmp_path: Path) -> None:
    from detectflow.server import create_app

    camera = f"cam-{uuid.uuid4().hex[:6]}"
    settings = Settings(data_dir=tmp_path, redis_url=URL, disable_plugin_autoload=True)
    message = {
        "type": "detection",
        "detection_id": f"d-{camera}",
        "camera_id": camera,
        "detection_type": "person",
        "confidence": 0.9,
        "timestamp": "2025-11-05T12:34:56Z",
    }
    with (
        TestClient(create_app(settings)) as client,
        RedisBus(URL, prefix=DEFAULT_PREFIX) as elsewhere,  # the server's default prefix
        client.websocket_connect(f"/api/v1/detections/ws/client-{camera}") as ws,
    ):
        ws.send_json({"type": "subscribe", "camera_id": camera})
        assert ws.receive_json()["type"] == "subscription"
        elsewhere.publish(f"detections:{camera}", json.dumps(message).encode())
        assert ws.receive_json() == message


def test_the_server_closes_the_redis_connections_it_opened(
    tmp_path: Path, admin: redis.Redis
) -> None:
    from detectflow.server import create_app

    name = f"detectflow-test-{uuid.uuid4().hex[:8]}"

    def connections(kind: str | None = None) -> int:
        listed = admin.client_list(_type=kind) if kind else admin.client_list()
        return len([c for c in listed if c["name"] == name])

    settings = Settings(
        data_dir=tmp_path, redis_url=f"{URL}?client_name={name}", disable_plugin_autoload=True
    )
    with TestClient(create_app(settings)) as client:
        assert connections("pubsub") == 1  # the hub's one subscription
        assert client.get("/api/v1/detections/live?camera_id=cam-1").status_code == 200
        assert connections() == 2  # and the cache's pooled connection
    deadline = time.monotonic() + 2  # Redis notices a closed socket on its next loop turn
    while connections() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert connections() == 0


async def test_subscribing_while_redis_is_down_returns_at_once_and_keeps_retrying(
    free_port: int,
) -> None:
    with RedisBus(f"redis://127.0.0.1:{free_port}/0", reconnect_min_seconds=0.01) as bus:
        started = time.monotonic()
        sub = bus.subscribe(["c"])
        assert time.monotonic() - started < 0.5
        await _wait_for(lambda: sub.reconnects >= 3)
        assert sub.connection_id is None
        await sub.aclose()
    assert bus.subscriber_count == 0
