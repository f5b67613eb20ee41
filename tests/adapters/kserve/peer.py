"""Start KServe's own model server (from .venv-kserve) on loopback, as a subprocess.

The peer's stack (fastapi, kubernetes, pandas, its own protobuf) never
enters detectflow's interpreter: the server runs :mod:`peer_models` with
.venv-kserve's Python, which ``scripts/setup`` makes. Without it the tests
that need it are skipped, loudly; under ``CI=true`` they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PEER_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
MODELS_SCRIPT = Path(__file__).with_name("peer_models.py")
START_TIMEOUT = 90.0  # importing kserve takes seconds on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Peer:
    http_port: int
    grpc_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def rest_url(self, model: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/v2/models/{model}"

    def grpc_url(self, model: str) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}/{model}"

    def url(self, wire: str, model: str) -> str:
        return self.rest_url(model) if wire == "rest" else self.grpc_url(model)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def require_peer() -> None:
    """Skip (or, under CI, fail) when .venv-kserve is missing."""
    if PEER_PYTHON.exists():
        return
    message = f"the KServe peer is not installed at {PEER_PYTHON} (scripts/setup makes it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def running_peer(models: str, env: Mapping[str, str] | None = None) -> Iterator[Peer]:
    """Run the named models (comma separated); stop the server afterwards."""
    require_peer()
    http_port, grpc_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="kserve-peer-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(PEER_PYTHON),
                    str(MODELS_SCRIPT),
                    "--models",
                    models,
                    "--http_port",
                    str(http_port),
                    "--grpc_port",
                    str(grpc_port),
                    # 8 MiB by default: below one batch of 640x640 FP32 images
                    "--grpc_max_receive_message_length",
                    str(64 << 20),
                    "--grpc_max_send_message_length",
                    str(64 << 20),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    **(env or {}),
                    "PYTHONUNBUFFERED": "1",
                    # the opencv model wraps the plugin's detector, from this checkout
                    "PYTHONPATH": os.pathsep.join(
                        [str(ROOT), str(ROOT / "plugins" / "detectflow-opencv")]
                    ),
                },
                cwd=tmp,
            )
        peer = Peer(http_port, grpc_port, process, log)
        try:
            _wait_ready(peer)
            yield peer
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(peer: Peer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    url = f"http://127.0.0.1:{peer.http_port}/v2/health/ready"
    while time.monotonic() < deadline:
        if peer.process.poll() is not None:
            raise RuntimeError(f"the KServe peer exited early:\n{peer.output()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                rest_ready = response.status == 200
            with socket.create_connection(("127.0.0.1", peer.grpc_port), timeout=1):
                if rest_ready:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the KServe peer did not get ready in {START_TIMEOUT} s:\n{peer.output()}")
