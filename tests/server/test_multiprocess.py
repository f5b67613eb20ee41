"""Acceptance: two server processes, one dataflow process, 50 real WebSocket clients.

Everything runs as a deployment would: ``detectflow simulate`` (the provider),
``detectflow provider add --activate``, two ``detectflow serve`` processes
and one ``detectflow flow run --until-empty``, all on one PostgreSQL database
and one Redis. The servers never see the flow: every broadcast reaches them
over the Redis bus, so this proves the bus fan-out across processes.

Redis pub/sub ignores the database number, and the prefix is not settable
from the environment, so another test on the same Redis could publish on our
channels. Camera ids therefore carry a per-run tag, and clients subscribed to
"all cameras" count only this run's cameras.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import text

from detectflow.core.frames import make_frame
from detectflow.samples import sample_frame
from detectflow.store import Database
from tests import services

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

CLI = [sys.executable, "-m", "detectflow.cli"]
API = "/api/v1/detections"
CLIENTS = 50
CAMERAS = 4
FRAMES = 60
# Simulator confidences have 4 decimals; thresholds between steps avoid ties.
LOW, HIGH = 0.65005, 0.80005


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Process:
    """A CLI subprocess whose output lands in a log the failure message shows."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [*CLI, *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


@contextmanager
def _running(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Iterator[_Process]:
    process = _Process(name, args, env, log_dir)
    try:
        yield process
    finally:
        process.stop()


def _wait_until_up(process: _Process, url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited:\n{process.output()}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{process.name} not up at {url} after {timeout} s:\n{process.output()}")


@dataclass
class _Client:
    """One WebSocket client's subscription and the detections it received."""

    name: str
    base: str
    cameras: set[str] | None  # None: all cameras
    min_confidence: float
    received: list[str] = field(default_factory=list)
    other: list[dict[str, Any]] = field(default_factory=list)

    def wants(self, camera: str, confidence: float) -> bool:
        return (self.cameras is None or camera in self.cameras) and (
            confidence >= self.min_confidence
        )


def _clients(bases: list[str], cameras: list[str]) -> list[_Client]:
    """Five kinds, spread over both servers: all / all+floor / one / one+floor / two+floor."""
    made = []
    for i in range(CLIENTS):
        one = cameras[(i // 5) % len(cameras)]
        two = {one, cameras[(i // 5 + 1) % len(cameras)]}
        kind: tuple[set[str] | None, float] = [
            (None, 0.0),
            (None, HIGH),
            ({one}, 0.0),
            ({one}, LOW),
            (two, LOW),
        ][i % 5]
        made.append(_Client(f"c{i}", bases[i % len(bases)], kind[0], kind[1]))
    return made


async def _subscribe(client: _Client) -> Any:
    ws = await websockets.connect(f"ws://{client.base}{API}/ws/{client.name}")
    targets: list[str | None] = [None]
    if client.cameras is not None:
        targets = [*sorted(client.cameras)]
    for camera in targets:
        message: dict[str, Any] = {"type": "subscribe", "min_confidence": client.min_confidence}
        if camera is not None:
            message["camera_id"] = camera
        await ws.send(json.dumps(message))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["type"] == "subscription", reply
    return ws


async def _listen(ws: Any, client: _Client, ours: set[str]) -> None:
    async for raw in ws:
        message = json.loads(raw)
        if message.get("type") != "detection":
            client.other.append(message)  # events, lagged: kept to explain a failure
        elif message["camera_id"] in ours:
            client.received.append(message["detection_id"])


def _stored(database: Database, cameras: list[str]) -> list[tuple[str, str, float]]:
    with database.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, camera_id, confidence FROM detections WHERE camera_id = ANY(:c)"),
            {"c": cameras},
        ).all()
    return [(str(r[0]), str(r[1]), float(r[2])) for r in rows]


def test_every_client_gets_every_matching_detection_exactly_once(
    postgres_url: str, secret_key: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTFLOW_")}
    env.update(
        DETECTFLOW_DATABASE_URL=postgres_url,
        DETECTFLOW_REDIS_URL=services.REDIS_URL,
        DETECTFLOW_SECRET_KEY=secret_key,
        DETECTFLOW_DATA_DIR=str(tmp_path),
        DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD="1",
        DETECTFLOW_BATCH_SIZE="8",
        DETECTFLOW_POLL_INTERVAL_SECONDS="0.02",
    )
    tag = uuid.uuid4().hex[:8]
    cameras = [f"mp-{tag}-{n}" for n in range(CAMERAS)]
    database = Database(postgres_url, secret_key=secret_key)
    database.upgrade()
    sim_port, ports = _port(), [_port(), _port()]
    bases = [f"127.0.0.1:{p}" for p in ports]
    with ExitStack() as stack:
        stack.callback(database.dispose)
        sim = stack.enter_context(
            _running("simulate", ["simulate", "--port", str(sim_port)], env, tmp_path)
        )
        _wait_until_up(sim, f"http://127.0.0.1:{sim_port}/health")
        added = subprocess.run(
            [
                *CLI,
                "provider",
                "add",
                "--type",
                "http_api",
                "--url",
                f"http://127.0.0.1:{sim_port}/detect",
                "--confidence-threshold",
                "0.3",
                "--activate",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert added.returncode == 0, added.stderr
        servers = [
            stack.enter_context(_running(f"serve{n}", ["serve", "--port", str(p)], env, tmp_path))
            for n, p in enumerate(ports)
        ]
        for server, base in zip(servers, bases, strict=True):
            _wait_until_up(server, f"http://{base}/api/v1/health")
        clients = _clients(bases, cameras)

        async def scenario() -> None:
            sockets = await asyncio.gather(*(_subscribe(c) for c in clients))
            try:
                listeners = [
                    asyncio.create_task(_listen(ws, c, set(cameras)))
                    for ws, c in zip(sockets, clients, strict=True)
                ]
                for n in range(FRAMES):
                    camera = cameras[n % CAMERAS]
                    database.enqueue(make_frame(camera, sample_frame(camera, n), max_bytes=1 << 20))
                flow = _Process("flow", ["flow", "run", "--until-empty"], env, tmp_path)
                try:
                    code = await asyncio.to_thread(flow.popen.wait, 60)
                finally:
                    flow.stop()
                assert code == 0, flow.output()
                stored = _stored(database, cameras)
                wanted = [sum(c.wants(cam, conf) for _, cam, conf in stored) for c in clients]
                # Broadcasts trail the SQL write by a bus hop: wait for the counts, then
                # a little longer so a duplicate would have time to show up.
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and any(
                    len(c.received) < n for c, n in zip(clients, wanted, strict=True)
                ):
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)
                for task in listeners:
                    task.cancel()
            finally:
                await asyncio.gather(*(ws.close() for ws in sockets))

        asyncio.run(scenario())
        stored = _stored(database, cameras)
        for server in servers:
            assert server.popen.poll() is None, server.output()

    assert len(stored) >= FRAMES, "every frame yields at least one detection"
    assert {c for _, c, _ in stored} == set(cameras)
    confidences = [conf for _, _, conf in stored]
    assert min(confidences) < LOW < HIGH < max(confidences), "filters must cut something"
    for client in clients:
        expected = {i for i, cam, conf in stored if client.wants(cam, conf)}
        assert len(client.received) == len(set(client.received)), f"{client.name}: duplicates"
        assert set(client.received) == expected, (
            f"{client.name} on {client.base} ({client.cameras}, >= {client.min_confidence}): "
            f"missing {len(expected - set(client.received))}, "
            f"unexpected {len(set(client.received) - expected)}, other messages {client.other[:3]}"
        )
