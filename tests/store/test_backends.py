from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from detectflow.core.settings import Settings
from detectflow.store.backends import close_cache_and_bus, open_cache_and_bus
from detectflow.store.cache import Bus, Cache
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.redis_backend import DEFAULT_PREFIX, RedisBus, RedisCache, RedisURLError
from tests import services


def test_without_a_redis_url_the_in_process_twins_are_used(tmp_path: Path) -> None:
    cache, bus = open_cache_and_bus(Settings(data_dir=tmp_path))
    assert isinstance(cache, MemoryCache) and isinstance(bus, MemoryBus)
    close_cache_and_bus(cache, bus)  # nothing to close: must not fail


def assert_namespaced(cache: Cache, bus: Bus, prefix: str) -> None:
    """Both are Redis, share ``prefix``, and what each writes lands under it (then closed)."""
    key = f"k-{uuid.uuid4().hex}"  # the shared test database may hold the same prefix
    try:
        assert isinstance(cache, RedisCache) and isinstance(bus, RedisBus)
        assert cache.prefix == bus.prefix == prefix
        cache.set_many({key: b"v"}, ttl_seconds=5)
        with redis.Redis.from_url(services.REDIS_URL) as admin, admin.pubsub() as listener:
            assert admin.get(f"{prefix}{key}") == b"v"
            admin.delete(f"{prefix}{key}")
            listener.subscribe(f"{prefix}{key}")
            assert listener.get_message(timeout=5)["type"] == "subscribe"
            bus.publish(key, b"hello")
            message = listener.get_message(timeout=5)
            assert message is not None
            assert (message["channel"], message["data"]) == (f"{prefix}{key}".encode(), b"hello")
    finally:
        close_cache_and_bus(cache, bus)


@pytest.mark.redis
def test_with_a_redis_url_both_are_redis_and_share_the_prefix(tmp_path: Path) -> None:
    prefix = f"detectflow-test-{uuid.uuid4().hex[:12]}:"
    cache, bus = open_cache_and_bus(
        Settings(data_dir=tmp_path, redis_url=services.REDIS_URL), prefix=prefix
    )
    assert_namespaced(cache, bus, prefix)


@pytest.mark.redis
def test_the_default_prefix_namespaces_detectflow(tmp_path: Path) -> None:
    assert DEFAULT_PREFIX == "detectflow:"
    cache, bus = open_cache_and_bus(Settings(data_dir=tmp_path, redis_url=services.REDIS_URL))
    assert_namespaced(cache, bus, "detectflow:")


@pytest.mark.redis
def test_the_prefix_comes_from_the_environment(tmp_path: Path) -> None:
    prefix = f"site-b-{uuid.uuid4().hex[:12]}:"
    settings = Settings.from_env(
        {"DETECTFLOW_REDIS_URL": services.REDIS_URL, "DETECTFLOW_REDIS_PREFIX": prefix},
        data_dir=tmp_path,
    )
    cache, bus = open_cache_and_bus(settings)
    assert_namespaced(cache, bus, prefix)


def test_a_malformed_redis_url_fails_at_open_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RedisURLError, match="not a usable Redis URL 'http://example'"):
        open_cache_and_bus(Settings(data_dir=tmp_path, redis_url="http://example"))
