"""What does pipelining buy the live sink on Redis?

One "frame batch" is what the live sink writes per batch: ``set_many`` of 3
live keys (TTL 3 s) and ``publish_many`` of 4 messages. Pipelined is the real
:class:`~detectflow.store.redis_backend.RedisCache` / ``RedisBus`` (one round
trip each, 2 per batch); unpipelined sends the same commands one by one
through the same kind of client (7 round trips per batch). Both run for
``--rounds`` alternating rounds of ``--seconds`` each against ``--url``
(default: db 15 on loopback, under a prefix of its own that is deleted
afterwards); the medians are printed. Loopback is the best case for
the unpipelined path: across a network every round trip costs more.

    .venv/bin/python -m bench.redis_pipeline [--url redis://127.0.0.1:6379/15] [--seconds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

import redis

from detectflow.store.live import LIVE_TTL
from detectflow.store.redis_backend import RedisBus, RedisCache, escape_glob

__all__ = ["main"]

_KEYS = {f"live:cam-{i}": b'{"detections":[{"confidence":0.9}]}' * 4 for i in range(3)}
_MESSAGES = [
    (f"detections:cam-{i % 3}", b'{"type":"detection","confidence":0.9}') for i in range(4)
]


def _rate(batch: Callable[[], None], seconds: float) -> float:
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(20):
            batch()
        count += 20
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--seconds", type=float, default=1.0, help="per round and variant")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    prefix = f"detectflow-bench-{uuid.uuid4().hex[:8]}:"
    ttl_ms = round(LIVE_TTL * 1000)
    with (
        RedisCache(args.url, prefix=prefix) as cache,
        RedisBus(args.url, prefix=prefix) as bus,
        redis.Redis.from_url(args.url) as plain,
    ):

        def pipelined() -> None:
            cache.set_many(_KEYS, LIVE_TTL)
            bus.publish_many(_MESSAGES)

        def one_by_one() -> None:
            for key, value in _KEYS.items():
                plain.set(prefix + key, value, px=ttl_ms)
            for channel, message in _MESSAGES:
                plain.publish(prefix + channel, message)

        try:
            for _ in range(50):  # open and warm the connections
                pipelined()
                one_by_one()
            # Alternate the two so background load on a shared machine hits both alike.
            rounds = [
                (_rate(pipelined, args.seconds), _rate(one_by_one, args.seconds))
                for _ in range(args.rounds)
            ]
        finally:
            for key in plain.scan_iter(match=f"{escape_glob(prefix)}*"):
                plain.delete(key)

    piped = statistics.median(p for p, _ in rounds)
    unpiped = statistics.median(u for _, u in rounds)
    print(
        f"redis: {args.url}; batch = set_many of {len(_KEYS)} keys + publish_many of "
        f"{len(_MESSAGES)} messages; median of {args.rounds} rounds of {args.seconds:g} s"
    )
    print(f"pipelined (2 round trips/batch): {piped:.0f} batches/s")
    print(f"one command at a time (7 round trips/batch): {unpiped:.0f} batches/s")
    print(f"ratio pipelined / one at a time: {piped / unpiped:.2f}")
    return {"pipelined": piped, "unpipelined": unpiped, "ratio": piped / unpiped}


if __name__ == "__main__":
    main()
