"""RedisBus.publish_many: one script call per batch, and the pipeline where scripts are refused."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from detectflow.store.redis_backend import RedisBus
from tests import services

pytestmark = pytest.mark.redis


def received(
    url: str, prefix: str, send: list[tuple[str, bytes]], bus: RedisBus
) -> list[tuple[bytes, bytes]]:
    """Publish through ``bus`` while a plain redis-py subscriber listens; what it heard."""
    with redis.Redis.from_url(url) as client:
        pubsub = client.pubsub()
        try:
            pubsub.psubscribe(prefix + "*")
            assert pubsub.get_message(timeout=2)["type"] == "psubscribe"
            bus.publish_many(send)
            heard: list[tuple[bytes, bytes]] = []
            deadline = time.monotonic() + 5
            while len(heard) < len(send) and time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.5)
                if message and message["type"] == "pmessage":
                    heard.append((message["channel"], message["data"]))
            return heard
        finally:
            pubsub.close()


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


def test_a_batch_arrives_complete_and_in_order(prefix: str) -> None:
    url = services.REDIS_URL
    send = [(f"c:{i % 3}", f"m{i}".encode()) for i in range(300)]
    with RedisBus(url, prefix=prefix) as bus:
        heard = received(url, prefix, send, bus)
    assert heard == [((prefix + c).encode(), m) for c, m in send]


@pytest.fixture
def no_script_url() -> Iterator[str]:
    """A real Redis user that may do anything but run scripts (an ACL, as some hosts set)."""
    user = f"df-noscript-{uuid.uuid4().hex[:6]}"
    with redis.Redis.from_url(services.REDIS_URL) as admin:
        admin.execute_command(
            "ACL", "SETUSER", user, "on", "nopass", "~*", "&*", "+@all", "-@scripting"
        )
        try:
            yield services.REDIS_URL.replace("redis://", f"redis://{user}:x@")
        finally:
            admin.execute_command("ACL", "DELUSER", user)


def test_a_server_refusing_scripts_gets_the_pipeline(
    prefix: str, no_script_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    send = [(f"c:{i}", f"m{i}".encode()) for i in range(5)]
    with RedisBus(no_script_url, prefix=prefix) as bus:
        heard = received(services.REDIS_URL, prefix, send, bus)
        assert heard == [((prefix + c).encode(), m) for c, m in send]
        assert "refused the publish script" in caplog.text
        again = received(services.REDIS_URL, prefix, send[:2], bus)
    assert len(again) == 2
    assert caplog.text.count("refused the publish script") == 1  # decided once
