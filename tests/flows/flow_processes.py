"""Real ``detectflow flow run`` processes for the crash, scale-out and restart tests.

The processes run the same command a data engineer runs (through
``python -m detectflow.cli.flow``, the module ``detectflow flow run`` is
made of) against real PostgreSQL, Redis and Mosquitto, with the simulated
provider serving HTTP on loopback in the test process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from detectflow.core.ids import event_id, new_id
from detectflow.core.models import EventType, ProviderConfig
from detectflow.simulator import Simulator, SimulatorThread, run_in_thread
from detectflow.store import Database

__all__ = [
    "FLOW_RUN",
    "FlowProcess",
    "finished_frames",
    "flow_env",
    "provider",
    "unique_detections",
    "wait_for",
]

FLOW_RUN = [sys.executable, "-m", "detectflow.cli", "flow", "run"]
DONE_TYPES = (EventType.DETECTION_COMPLETED, EventType.DETECTION_FAILED)


def flow_env(database_url: str, secret_key: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a flow process: small batches so a run spans a kill."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTFLOW_")}
    env.update(
        DETECTFLOW_DATABASE_URL=database_url,
        DETECTFLOW_SECRET_KEY=secret_key,
        DETECTFLOW_DATA_DIR=str(data_dir),
        DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD="1",
        DETECTFLOW_MAX_IN_FLIGHT="8",
        DETECTFLOW_BATCH_SIZE="8",
        DETECTFLOW_POLL_INTERVAL_SECONDS="0.02",
        DETECTFLOW_RETRY_BASE_SECONDS="0.01",
        DETECTFLOW_RETRY_MAX_SECONDS="0.05",
    )
    env.update(extra)
    return env


@contextmanager
def provider(
    database: Database,
    *,
    latency: float,
    timeout_seconds: float = 5.0,
    max_retries: int = 3,
    **faults: float,
) -> Iterator[SimulatorThread]:
    """A SIMULATED provider on loopback, stored as the active http_api provider;
    ``faults`` are the simulator's rates (``error_rate``, ``timeout_rate``...)."""
    with run_in_thread(Simulator(latency=latency, seed=3, **faults)) as handle:  # type: ignore[arg-type]
        database.create_provider(
            ProviderConfig(
                id=new_id(),
                provider_name="simulator",
                provider_type="http_api",
                endpoint_url=handle.detect_url("detectflow"),
                timeout_seconds=timeout_seconds,
                max_retries=max_retries,
                is_active=True,
            )
        )
        yield handle


class FlowProcess:
    """One ``flow run`` process; its output goes to a log file the failure message shows."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_dir: Path,
        *,
        command: list[str] = FLOW_RUN,
    ) -> None:
        self.name = name
        self.command = command
        self.args = args
        self.env = env
        self.log = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._terminated = False

    def start(self) -> FlowProcess:
        self._terminated = False
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*self.command, *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(10)

    def terminate(self) -> None:
        """SIGTERM without waiting (a cluster's processes must all hear it first)."""
        if self.process is not None and self.process.poll() is None and not self._terminated:
            self._terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (finish the frames in flight), then wait for the exit code."""
        assert self.process is not None
        self.terminate()  # once: a second SIGTERM may find Bytewax's handler gone
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"{self.name} did not stop on SIGTERM:\n{self.output()}") from None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def wait_for(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    processes: tuple[FlowProcess, ...] = (),
) -> None:
    """Poll ``condition``; fail with the processes' output if it stays false."""
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [p for p in processes if p.process is not None and p.process.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {p.name} (rc={p.process and p.process.poll()}):\n{p.output()}"
                for p in processes
            )
            reason = f"{dead[0].name} exited" if dead else f"timed out after {timeout:g} s"
            raise AssertionError(f"waiting for {what}: {reason}\n{logs}")
        time.sleep(0.1)


def finished_frames(database: Database, frame_ids: list[str]) -> dict[str, list[str]]:
    """For each frame id, the completed/failed events stored for it."""
    by_id = {event_id(f, t): (f, str(t)) for f in frame_ids for t in DONE_TYPES}
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT id FROM detection_event_logs")).scalars().all()
    found: dict[str, list[str]] = {}
    for row in rows:
        if row in by_id:
            frame, kind = by_id[row]
            found.setdefault(frame, []).append(kind)
    return found


def unique_detections(database: Database) -> tuple[int, int]:
    """(detection rows, distinct (frame, type, box)): equal when no replay wrote a copy."""
    with database.engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM detections")).scalar_one()
        distinct = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT DISTINCT frame_id, detection_type, bbox_x, bbox_y,"
                " bbox_width, bbox_height FROM detections) AS d"
            )
        ).scalar_one()
    return int(total), int(distinct)
