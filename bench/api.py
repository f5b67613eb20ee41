"""The API under real uvicorn: live-detections latency and WebSocket fan-out.

1. ``GET /api/v1/detections/live?camera_id=X`` on ``detectflow serve`` (a
   subprocess, Redis cache, SQLite database) with a warm cache: the bench
   writes X's live entry through :class:`LiveView` and stretches its TTL so
   it stays warm for the whole run. Next to it, in the same run and under
   the same ``uvicorn.run`` settings, a bare Starlette route returning the
   same JSON bytes. A load process (keep-alive HTTP/1.1 on raw asyncio
   protocols, so the client's own cost stays small on a 2-core machine)
   measures p50/p99 and req/s at 1 client and req/s at 32 clients.
   Targets: p50 <= 1 ms, p99 <= 5 ms at 1 client; ratio to bare >= 0.5.
2. ``--ws-clients`` (default 1,000) WebSocket clients on one server, all
   subscribed to one camera; the bench publishes one detection on the Redis
   bus (``published_at`` stamped at publish) ``--broadcasts`` times, and each
   client timestamps the broadcast when its bytes arrive (a raw protocol
   again). Next to it, in the same run, a bare Starlette WebSocket endpoint
   relaying the same bus messages to the same clients. Targets: p99
   publish-to-receipt <= 50 ms and >= 0.8 of bare (bare p99 / ours).

    .venv/bin/python -m bench.api [--seconds 4] [--ws-clients 1000] [--broadcasts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import gc
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

try:
    from bench._common import free_port, measure, stop_processes, wait_up
except ImportError:  # run as python bench/api.py
    from _common import free_port, measure, stop_processes, wait_up  # type: ignore[no-redef]

from detectflow.core.frames import make_frame
from detectflow.core.models import BBox, Detection, FrameResult
from detectflow.core.serialize import frame_detections_message
from detectflow.samples import sample_frame
from detectflow.store.live import LiveView, detections_channel, live_key
from detectflow.store.redis_backend import RedisBus, RedisCache

__all__ = ["main"]

API = "/api/v1/detections"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


# -- servers ----------------------------------------------------------------------------


def _bare_server(port: int, body_file: str) -> None:
    """A bare Starlette route answering the recorded bytes, run as ``serve`` runs uvicorn."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    body = Path(body_file).read_bytes()

    async def live(request: Request) -> Response:
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route(f"{API}/live", live, methods=["GET"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _bare_ws_server(port: int, redis_url: str) -> None:
    """The floor of WebSocket fan-out: a bare Starlette endpoint that subscribes each
    client on its first message and, for every frame message on the Redis bus, sends
    each detection's text (made once, as the hub does) to every client at once."""
    import redis.asyncio as aioredis
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from detectflow.core.serialize import detection_messages

    clients: set[WebSocket] = set()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()  # the subscribe message
        await websocket.send_text(json.dumps({"type": "subscribed"}))
        clients.add(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            clients.discard(websocket)

    async def relay() -> None:
        bus = aioredis.from_url(redis_url)
        pubsub = bus.pubsub()
        await pubsub.psubscribe("*detections*")
        async for item in pubsub.listen():
            if item["type"] != "pmessage":
                continue
            for message in detection_messages(json.loads(item["data"])):
                text = json.dumps(message)
                await asyncio.gather(*(c.send_text(text) for c in list(clients)))

    async def lifespan(app: Starlette) -> Any:
        task = asyncio.create_task(relay())
        yield
        task.cancel()

    app = Starlette(routes=[WebSocketRoute(f"{API}/ws/{{client_id}}", endpoint)], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _warm(redis_url: str, camera: str) -> None:
    """Publish one frame's detections the way the dataflow does, then keep them warm."""
    frame = make_frame(camera, sample_frame(camera, 0), max_bytes=1 << 20)
    detections = tuple(
        Detection(
            id=f"{camera}-{i}",
            camera_id=camera,
            frame_id=frame.frame_id,
            detection_type=label,
            label=label,
            confidence=0.9 - 0.1 * i,
            bbox=BBox(0.1 * i, 0.1, 0.2, 0.3),
            frame_timestamp=frame.timestamp,
        )
        for i, label in enumerate(("person", "face", "vehicle"))
    )
    result = FrameResult(frame, detections, (), None, 1, 5)
    with RedisCache(redis_url) as cache, RedisBus(redis_url) as bus:
        LiveView(cache, bus).publish([result])
        raw = cache.get(live_key(camera))
        assert raw is not None
        cache.set_many({live_key(camera): raw}, 600)  # LIVE_TTL is 3 s: outlive the bench


# -- WebSocket fan-out ------------------------------------------------------------------


def _frame(payload: bytes) -> bytes:
    """A masked client text frame."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0xFE]) + size.to_bytes(2)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class _WsClient(asyncio.Protocol):
    """Handshake, subscribe, then timestamp each broadcast when its bytes arrive."""

    def __init__(self, path: str, camera: str, ready: Any, got: list[tuple[float, bytes]]):
        self.path, self.camera, self.ready, self.got = path, camera, ready, got
        self.buffer = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"no upgrade: {self.buffer[:200]!r}")
            self.buffer = self.buffer[end + 4 :]
            self.upgraded = True
            assert self.transport is not None
            message = {"type": "subscribe", "camera_id": self.camera}
            self.transport.write(_frame(json.dumps(message).encode()))
        while len(self.buffer) >= 2:
            size, at = self.buffer[1] & 0x7F, 2
            if size == 126:
                size, at = int.from_bytes(self.buffer[2:4]), 4
            elif size == 127:
                size, at = int.from_bytes(self.buffer[2:10]), 10
            if len(self.buffer) < at + size:
                return
            payload, self.buffer = self.buffer[at : at + size], self.buffer[at + size :]
            if not self.ready.done():
                self.ready.set_result(None)  # the subscription reply
            else:
                self.got.append((arrived, payload))


async def _fan_out(
    port: int, camera: str, clients: int, conn: Connection
) -> list[tuple[float, bytes]]:
    loop = asyncio.get_running_loop()
    got: list[tuple[float, bytes]] = []
    transports = []
    for batch in range(0, clients, 100):
        readies = []
        for n in range(batch, min(clients, batch + 100)):
            ready = loop.create_future()
            t, _ = await loop.create_connection(
                functools.partial(_WsClient, f"{API}/ws/bench-{n}", camera, ready, got),
                "127.0.0.1",
                port,
            )
            transports.append(t)
            readies.append(ready)
        await asyncio.wait_for(asyncio.gather(*readies), 30)
    # The load generator's own GC pauses (1,000 clients' objects) would show up
    # as delivery latency; freeze what exists so the figure measures the server.
    gc.collect()
    gc.freeze()
    conn.send("ready")
    expected = await loop.run_in_executor(None, conn.recv)
    deadline = time.monotonic() + 10
    while len(got) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for t in transports:
        t.close()
    return got


def _fan_out_process(port: int, camera: str, clients: int, conn: Connection) -> None:
    conn.send(asyncio.run(_fan_out(port, camera, clients, conn)))


def _broadcast(redis_url: str, port: int, clients: int, rounds: int) -> dict[str, float]:
    camera = f"bench-ws-{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=_fan_out_process, args=(port, camera, clients, theirs))
    process.start()
    assert ours.recv() == "ready"
    frame = make_frame(camera, sample_frame(camera, 0), max_bytes=1 << 20)
    with RedisBus(redis_url) as bus:
        for n in range(rounds):
            time.sleep(0.5)
            detection = Detection(
                id=f"{camera}-{n}",
                camera_id=camera,
                frame_id=frame.frame_id,
                detection_type="person",
                label="person",
                confidence=0.9,
                bbox=BBox(0.1, 0.1, 0.2, 0.3),
            )
            # As the dataflow publishes: one message per frame (here of one detection).
            message = frame_detections_message([detection], published_at=datetime.now(UTC))
            bus.publish(detections_channel(camera), json.dumps(message).encode())
    ours.send(clients * rounds)
    got = ours.recv()
    process.join(30)
    lags: list[float] = []
    pairs: list[tuple[float, bytes]] = []
    for arrived, payload in got:
        message = json.loads(payload)
        if message.get("type") == "detection":
            lag = arrived - datetime.fromisoformat(message["published_at"]).timestamp()
            lags.append(lag)
            pairs.append((lag, payload))
    rounds_p99 = []
    for n in range(rounds):
        mine = sorted(lag for lag, p in pairs if f'"{camera}-{n}"'.encode() in p)
        if mine:
            rounds_p99.append(mine[min(len(mine) - 1, int(len(mine) * 0.99))] * 1000)
    print("fan-out p99 per broadcast (ms): " + ", ".join(f"{v:.1f}" for v in rounds_p99))
    lags.sort()
    return {
        "delivered": len(lags),
        "expected": clients * rounds,
        "p50": lags[len(lags) // 2] * 1000 if lags else float("nan"),
        "p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000 if lags else float("nan"),
        "max": lags[-1] * 1000 if lags else float("nan"),
    }


# -- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per load measurement")
    parser.add_argument("--ws-clients", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=5)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument(
        "--bare-server", nargs=2, metavar=("PORT", "BODY_FILE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--bare-ws-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_ws_server:
        _bare_ws_server(args.bare_ws_server, args.redis_url)
        return {}
    if args.bare_server:
        _bare_server(int(args.bare_server[0]), args.bare_server[1])
        return {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.ws_clients * 2 + 256
    if soft < wanted:  # the servers and the load process inherit it
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))

    from cryptography.fernet import Fernet

    camera = f"bench-{uuid.uuid4().hex[:8]}"
    path = f"{API}/live?camera_id={camera}"
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTFLOW_")}
        env.update(
            DETECTFLOW_DATA_DIR=tmp,
            DETECTFLOW_REDIS_URL=args.redis_url,
            DETECTFLOW_SECRET_KEY=Fernet.generate_key().decode(),
            DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD="1",
        )
        ports = {"detectflow": free_port(), "bare": free_port()}
        log = Path(tmp) / "server.log"
        processes: list[subprocess.Popen[bytes]] = []
        try:
            with log.open("ab") as out:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "detectflow.cli",
                            "serve",
                            "--port",
                            str(ports["detectflow"]),
                        ],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            base = f"http://127.0.0.1:{ports['detectflow']}"
            wait_up(processes[0], f"{base}/api/v1/health", log)
            _warm(args.redis_url, camera)
            answer = httpx.get(base + path)
            data = answer.json()["data"]
            assert data["cache_hit"] and data["total_detections"] == 3, answer.text
            body_file = Path(tmp) / "body.json"
            body_file.write_bytes(answer.content)
            with log.open("ab") as out:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "bench.api",
                            "--bare-server",
                            str(ports["bare"]),
                            str(body_file),
                        ],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            wait_up(processes[1], f"http://127.0.0.1:{ports['bare']}/", log)
            for name, port in ports.items():
                get = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
                one = measure(port, get, 1, args.seconds)
                many = measure(port, get, 32, args.seconds)
                figures[name] = {"one": one, "many": many}
                print(
                    f"{name:>10} GET /live warm cache, 1 client: p50 {one['p50']:.2f} ms, "
                    f"p99 {one['p99']:.2f} ms, {one['rps']:.0f} req/s; "
                    f"32 clients: {many['rps']:.0f} req/s (p50 {many['p50']:.2f} ms, "
                    f"p99 {many['p99']:.2f} ms)"
                )
            df, bare = figures["detectflow"], figures["bare"]
            ratio1 = df["one"]["rps"] / bare["one"]["rps"]
            ratio32 = df["many"]["rps"] / bare["many"]["rps"]
            print(
                f"ratio to bare Starlette (req/s): 1 client {ratio1:.2f}, 32 clients {ratio32:.2f}"
            )
            print(
                f"targets: p50 <= 1 ms {'met' if df['one']['p50'] <= 1 else 'MISSED'}, "
                f"p99 <= 5 ms {'met' if df['one']['p99'] <= 5 else 'MISSED'}, "
                f"ratio >= 0.5 {'met' if min(ratio1, ratio32) >= 0.5 else 'MISSED'}"
            )
            fan = _broadcast(args.redis_url, ports["detectflow"], args.ws_clients, args.broadcasts)
            figures["fan_out"] = fan
            print(
                f"WebSocket fan-out, {args.ws_clients} clients x {args.broadcasts} broadcasts: "
                f"delivered {fan['delivered']}/{fan['expected']}, publish-to-receipt "
                f"p50 {fan['p50']:.1f} ms, p99 {fan['p99']:.1f} ms, max {fan['max']:.1f} ms"
            )
            ports["bare-ws"] = free_port()
            with log.open("ab") as out:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "bench.api",
                            "--bare-ws-server",
                            str(ports["bare-ws"]),
                            "--redis-url",
                            args.redis_url,
                        ],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            wait_up(processes[-1], f"http://127.0.0.1:{ports['bare-ws']}/", log)
            bare_fan = _broadcast(
                args.redis_url, ports["bare-ws"], args.ws_clients, args.broadcasts
            )
            figures["fan_out_bare"] = bare_fan
            print(
                f"bare Starlette fan-out, same clients and broadcasts: delivered "
                f"{bare_fan['delivered']}/{bare_fan['expected']}, p50 {bare_fan['p50']:.1f} ms, "
                f"p99 {bare_fan['p99']:.1f} ms, max {bare_fan['max']:.1f} ms"
            )
            ratio = bare_fan["p99"] / fan["p99"]
            figures["fan_out_ratio"] = ratio
            print(f"fan-out p99 ratio to bare (bare p99 / ours): {ratio:.2f}")
            print(
                f"targets: p99 <= 50 ms {'met' if fan['p99'] <= 50 else 'MISSED'}, "
                f">= 0.8 of bare {'met' if ratio >= 0.8 else 'MISSED'}"
            )
        finally:
            stop_processes(processes)
    return figures


if __name__ == "__main__":
    main()
