"""The DeepStack gateway against calling the provider directly, in the same run.

A zero-latency provider (``detectflow simulate``, its own process) and
``detectflow serve --deepstack-api`` (SQLite, the in-process cache and bus,
reads-open auth as an NVR without a key sees it) with that provider active.
32 keep-alive clients (a process of their own) post the same 640x480 JPEG
the way DeepStack clients do (multipart, ``image`` + ``min_confidence``,
built by detectflow's own deepstack encoder):

- *direct*: to the provider's ``/v1/vision/detection``;
- *gateway*: to detectflow's ``/v1/vision/detection?camera=...``, which
  calls that provider and records every result (SQL, live view, bus);
- *gateway, store=0*: the same, detecting only, to show what recording costs.

It prints req/s, p50/p99 and each server's CPU per request, and the ratio
gateway / direct. Target: >= 0.7 (detectflow adds a hop, storage and the
live publish).

    .venv/bin/python -m bench.gateway [--seconds 4] [--clients 32]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

try:
    from bench._common import (
        active_provider,
        admin_key,
        free_port,
        measure,
        stop_processes,
        wait_up,
    )
except ImportError:  # run as python bench/gateway.py
    from _common import (  # type: ignore[no-redef]
        active_provider,
        admin_key,
        free_port,
        measure,
        stop_processes,
        wait_up,
    )

from detectflow.adapters._http_dialects import DEEPSTACK_DETECT_PATH, encode_deepstack
from detectflow.core.frames import make_frame

__all__ = ["main"]

TARGET = 0.7


def _jpeg(width: int = 640, height: int = 480) -> bytes:
    image = Image.new("RGB", (width, height))
    for x in range(0, width, 8):  # some structure, so the JPEG has a realistic size
        for y in range(0, height, 8):
            image.putpixel((x, y), (x % 256, y % 256, (x * y) % 256))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _request(port: int, path: str, image: bytes) -> bytes:
    frame = make_frame("bench", image, max_bytes=len(image) + 1)
    encoded = encode_deepstack(frame, 0.0, None, "benchboundary")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: {encoded.content_type}\r\nContent-Length: {len(encoded.content)}\r\n\r\n"
    )
    return head.encode() + encoded.content


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per load measurement")
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args(argv)
    image = _jpeg()
    camera = f"bench-{uuid.uuid4().hex[:6]}"
    figures: dict[str, Any] = {"image_bytes": len(image), "clients": args.clients}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTFLOW_")}
            env.update(DETECTFLOW_DATA_DIR=tmp, DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD="1")
            log = Path(tmp) / "servers.log"
            sim_port, port = free_port(), free_port()
            cli = [sys.executable, "-m", "detectflow.cli"]
            with log.open("ab") as out:
                for command in (
                    [*cli, "simulate", "--port", str(sim_port), "--latency", "0"],
                    [*cli, "serve", "--port", str(port), "--deepstack-api"],
                ):
                    processes.append(
                        subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
                    )
            simulator, server = processes
            wait_up(simulator, f"http://127.0.0.1:{sim_port}/health", log)
            wait_up(server, f"http://127.0.0.1:{port}/api/v1/health", log)
            active_provider(
                f"http://127.0.0.1:{port}",
                admin_key(env),
                provider_name="simulator",
                endpoint_url=f"http://127.0.0.1:{sim_port}{DEEPSTACK_DETECT_PATH}",
                options={"dialect": "deepstack"},
            )
            path = f"{DEEPSTACK_DETECT_PATH}?camera={camera}"
            cases = {
                "direct": (simulator.pid, sim_port, DEEPSTACK_DETECT_PATH),
                "gateway": (server.pid, port, path),
                "gateway_store0": (server.pid, port, path + "&store=0"),
            }
            for name, (pid, target, route) in cases.items():
                got = measure(
                    target,
                    _request(target, route, image),
                    args.clients,
                    args.seconds,
                    server_pid=pid,
                )
                figures[name] = got
                print(
                    f"{name:>15}, {args.clients} clients: {got['rps']:7.0f} req/s, "
                    f"p50 {got['p50']:6.2f} ms, p99 {got['p99']:6.2f} ms, "
                    f"server CPU {got['cpu_ms']:.2f} ms/request"
                )
            stored = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/detections/statistics",
                params={"camera_id": camera},
            ).json()["data"]["total_detections"]
            figures["stored_detections"] = stored
    finally:
        stop_processes(processes)
    direct = figures["direct"]["rps"]
    figures["ratio"] = figures["gateway"]["rps"] / direct
    figures["ratio_store0"] = figures["gateway_store0"]["rps"] / direct
    print(f"detections stored by the gateway run: {figures['stored_detections']}")
    print(
        f"gateway / direct (req/s): {figures['ratio']:.2f}; store=0: {figures['ratio_store0']:.2f}"
    )
    print(
        f"target gateway >= {TARGET} of direct: {'met' if figures['ratio'] >= TARGET else 'MISSED'}"
    )
    return figures


if __name__ == "__main__":
    main()
