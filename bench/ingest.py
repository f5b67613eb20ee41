"""send-frame under real uvicorn: queue mode and inline mode against a bare route.

One ``detectflow serve`` process on PostgreSQL (a throwaway database) with
an admin key on every request, and beside it, under the same ``uvicorn.run``
settings, a bare Starlette route that parses the same JSON, base64-decodes
the frame and answers 202. A load process (keep-alive HTTP/1.1 on raw
asyncio protocols, cheap on the client side) sends the same 640x480 JPEG
to each:

- ``?mode=queue``: the frame is durably queued (202);
- inline: detected by a loopback HTTP provider that answers at once (a
  process of its own) and recorded (200);
- the bare route (202).

At 1 and 16 clients it prints frames/s, p50/p99 and the server's CPU per
frame (from ``/proc/<pid>/stat`` over the run), and the ratios to the bare
route. Targets: queue >= 0.5 of bare at 16 clients and <= 1 ms CPU per
frame; inline >= 0.3 of bare and p50 <= 5 ms at 1 client.

    .venv/bin/python -m bench.ingest [--seconds 4] [--clients 1,16]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg

try:
    from bench._common import (
        active_provider,
        admin_key,
        free_port,
        http_provider,
        measure,
        stop_processes,
        wait_up,
    )
except ImportError:  # run as python bench/ingest.py
    from _common import (  # type: ignore[no-redef]
        active_provider,
        admin_key,
        free_port,
        http_provider,
        measure,
        stop_processes,
        wait_up,
    )

from detectflow.samples import sample_frame

__all__ = ["main"]

API = "/api/v1/detections"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _bare_server(port: int) -> None:
    """Parse the JSON, decode the frame, answer 202: the floor of any ingest route."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def send_frame(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        image = base64.b64decode(body["frame_data"], validate=True)
        return JSONResponse({"data": {"queued": True, "bytes": len(image)}}, status_code=202)

    app = Starlette(routes=[Route(f"{API}/send-frame", send_frame, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _jpeg(camera: str) -> bytes:
    """A 640x480 JPEG (~18 KB; cameras send JPEG): the sample frame re-encoded with
    Pillow, which the dev install has (the kserve extra)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(sample_frame(camera, 0, 640, 480))).convert("RGB").save(
        out, "JPEG", quality=75
    )
    return out.getvalue()


def _commit_floor(dbname: str, image: bytes, seconds: float) -> dict[str, float]:
    """One client's INSERT of a frame-sized row and COMMIT, over and over, on the same
    PostgreSQL: the floor under a 200 ("its detections are stored") or a 202 ("durably
    queued") at one client, since each waits for a WAL flush; p50/p99 in ms."""
    import statistics
    import time

    times = []
    with psycopg.connect(f"{PG_ADMIN.rsplit(' ', 1)[0]} dbname={dbname}") as conn:
        conn.execute("CREATE TABLE commit_floor (id bigint PRIMARY KEY, image bytea)")
        conn.commit()
        deadline = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            conn.execute("INSERT INTO commit_floor VALUES (%s, %s)", (n, image))
            conn.commit()
            times.append((time.perf_counter() - started) * 1000)
            n += 1
    times.sort()
    return {"p50": statistics.median(times), "p99": times[int(len(times) * 0.99)]}


def _request(port: int, path: str, body: bytes, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per load measurement")
    parser.add_argument("--clients", default="1,16", help="client counts, comma-separated")
    parser.add_argument(
        "--only", action="append", choices=("queue", "inline", "bare"), help="only these paths"
    )
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server:
        _bare_server(args.bare_server)
        return {}
    from cryptography.fernet import Fernet

    counts = [int(c) for c in args.clients.split(",")]
    camera = f"bench-{uuid.uuid4().hex[:6]}"
    frame = base64.b64encode(_jpeg(camera)).decode()
    dbname = f"detectflow_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    figures: dict[str, Any] = {}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, http_provider(0.0) as provider_url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTFLOW_")}
            env.update(
                DETECTFLOW_DATA_DIR=tmp,
                DETECTFLOW_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}",
                DETECTFLOW_SECRET_KEY=Fernet.generate_key().decode(),
                DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD="1",
                DETECTFLOW_AUTH_MODE="required",
            )
            log = Path(tmp) / "server.log"
            ports = {"detectflow": free_port(), "bare": free_port()}
            commands = {
                "detectflow": [sys.executable, "-m", "detectflow.cli", "serve"],
                "bare": [sys.executable, "-m", "bench.ingest", "--bare-server"],
            }
            with log.open("ab") as out:
                for name, command in commands.items():
                    processes.append(
                        subprocess.Popen(
                            [
                                *command,
                                *(["--port"] if name == "detectflow" else []),
                                str(ports[name]),
                            ],
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )
            base = f"http://127.0.0.1:{ports['detectflow']}"
            wait_up(processes[0], f"{base}/api/v1/health", log)
            wait_up(processes[1], f"http://127.0.0.1:{ports['bare']}/", log)
            key = admin_key(env)
            active_provider(base, key, provider_name="loopback", endpoint_url=provider_url)
            body = json.dumps({"camera_id": camera, "frame_data": frame}).encode()
            paths = {
                "queue": (processes[0].pid, ports["detectflow"], f"{API}/send-frame?mode=queue"),
                "inline": (processes[0].pid, ports["detectflow"], f"{API}/send-frame"),
                "bare": (processes[1].pid, ports["bare"], f"{API}/send-frame"),
            }
            for name, (pid, port, path) in paths.items():
                if args.only and name not in args.only and name != "bare":
                    continue
                request = _request(port, path, body, key if name != "bare" else None)
                figures[name] = {}
                for clients in counts:
                    got = measure(port, request, clients, args.seconds, server_pid=pid)
                    figures[name][clients] = got
                    print(
                        f"{name:>7}, {clients:>2} client(s): {got['rps']:7.0f} frames/s, "
                        f"p50 {got['p50']:6.2f} ms, p99 {got['p99']:6.2f} ms, "
                        f"server CPU {got['cpu_ms']:.2f} ms/frame"
                    )
            floor = _commit_floor(dbname, base64.b64decode(frame), min(args.seconds, 4.0))
            figures["commit_floor"] = floor
            print(
                f"  commit floor (INSERT a frame-sized row + COMMIT, 1 client): "
                f"p50 {floor['p50']:.2f} ms, p99 {floor['p99']:.2f} ms"
            )
            bare = figures["bare"]
            for name in [n for n in ("queue", "inline") if n in figures]:
                ratios = ", ".join(
                    f"{c} client(s) {figures[name][c]['rps'] / bare[c]['rps']:.2f}" for c in counts
                )
                print(f"{name} / bare (frames/s): {ratios}")
            many, one = max(counts), min(counts)
            checks = {}
            if "queue" in figures:
                queue_ratio = figures["queue"][many]["rps"] / bare[many]["rps"]
                checks[f"queue >= 0.5 of bare at {many} clients"] = queue_ratio >= 0.5
                checks["queue <= 1 ms server CPU/frame"] = figures["queue"][many]["cpu_ms"] <= 1.0
            if "inline" in figures:
                inline_ratio = figures["inline"][one]["rps"] / bare[one]["rps"]
                checks[f"inline >= 0.3 of bare at {one} client"] = inline_ratio >= 0.3
                checks[f"inline p50 <= 5 ms at {one} client"] = figures["inline"][one]["p50"] <= 5
            for what, met in checks.items():
                print(f"target {what}: {'met' if met else 'MISSED'}")
    finally:
        stop_processes(processes)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return figures


if __name__ == "__main__":
    main()
