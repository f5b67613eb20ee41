"""PostgreSQL restarted under a running flow: the flow waits for it and loses nothing;
stopped under a running server: its health says 503 until it is back.

The restart is real (``pg_ctlcluster ... restart``), so every pooled
connection breaks mid-run. The server is shared with other tests: the
restart is a fast one, and the test makes sure it is back before it ends.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from detectflow import Frame, RawDetection, Settings
from detectflow.core.models import QueueStatus
from detectflow.core.plugins import PluginRegistry
from detectflow.flows import FlowMetrics, run_flow
from detectflow.store import Database
from tests import services
from tests.databases import migrated_database
from tests.flows.conftest import activate, enqueue, person
from tests.flows.flow_processes import unique_detections, wait_for
from tests.server.support import health_client

FRAMES = 1500  # ~8 s at 4 in flight x 20 ms: the restart lands mid-run


def _cluster() -> list[str]:
    versions = (
        sorted(p.name for p in Path("/etc/postgresql").iterdir())
        if Path("/etc/postgresql").is_dir()
        else []
    )
    return [versions[-1], "main"] if versions else []


def _pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *_cluster(), action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _pg_answers() -> bool:
    try:
        with psycopg.connect(
            f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} "
            f"user={services.POSTGRES_USER} dbname={services.POSTGRES_ADMIN_DB}",
            connect_timeout=1,
        ):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture
def restartable() -> Iterator[None]:
    if shutil.which("pg_ctlcluster") is None or not _cluster():
        pytest.skip("no local PostgreSQL cluster to restart (pg_ctlcluster)")
    yield
    # Whatever happened, leave the shared server running.
    deadline = time.monotonic() + 30
    while not _pg_answers() and time.monotonic() < deadline:
        if subprocess.run(["pg_ctlcluster", *_cluster(), "status"], check=False).returncode:
            _pg_ctl("start")
        time.sleep(0.5)
    assert _pg_answers(), "PostgreSQL did not come back after the test's restart"


@pytest.mark.slow
@pytest.mark.postgres
def test_flow_survives_a_postgres_restart_and_loses_nothing(
    restartable: None,
    settings: Settings,
    registry: PluginRegistry,
    postgres_url: str,
    secret_key: str,
) -> None:
    async def slow(frame: Frame) -> list[RawDetection]:
        await asyncio.sleep(0.02)
        return person(frame)

    pg = Database(postgres_url, secret_key=secret_key)
    pg.upgrade()
    stop = threading.Event()
    metrics = FlowMetrics()
    errors: list[BaseException] = []
    narrow = settings.with_overrides(max_in_flight=4, batch_size=8)

    def run() -> None:
        try:
            run_flow(narrow, database=pg, registry=registry, stop=stop, metrics=metrics)
        except BaseException as exc:  # the test reports it
            errors.append(exc)

    try:
        activate(pg, slow)
        queued = enqueue(pg, FRAMES)
        flow = threading.Thread(target=run, name="flow-under-test")
        flow.start()
        try:
            wait_for(lambda: metrics.snapshot().frames >= 40, timeout=30, what="the run to start")
            _pg_ctl("restart")
            assert metrics.snapshot().frames < FRAMES, "the restart came after the run ended"

            def all_done() -> bool:
                if errors:
                    raise AssertionError(f"the flow stopped: {errors[0]!r}")
                try:
                    return pg.queue_stats().get(QueueStatus.COMPLETED, 0) == FRAMES
                except Exception:  # still reconnecting
                    return False

            wait_for(all_done, timeout=60, what="every frame to complete after the restart")
        finally:
            stop.set()
            flow.join(30)
        assert not flow.is_alive()
        assert not errors
        stats = pg.queue_stats()
        assert stats[QueueStatus.COMPLETED] == len(queued)
        assert stats.get(QueueStatus.FAILED, 0) == stats.get(QueueStatus.PENDING, 0) == 0
        total, distinct = unique_detections(pg)
        assert total == distinct == 2 * FRAMES
    finally:
        pg.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_health_is_503_while_postgres_is_stopped_and_200_once_it_is_back(
    restartable: None, tmp_path: Path, postgres_url: str, secret_key: str
) -> None:
    # Stops the shared server for a few seconds: run it when nobody else needs it.
    with (
        migrated_database(postgres_url, secret_key) as database,
        health_client(database, tmp_path) as client,
    ):
        before = client.get("/api/v1/health")
        _pg_ctl("stop")
        try:
            stopped = client.get("/api/v1/health")
        finally:
            _pg_ctl("start")
        wait_for(_pg_answers, timeout=30, what="PostgreSQL to start again")
        # The pool's broken connections are replaced on the next checkouts.
        wait_for(
            lambda: client.get("/api/v1/health").status_code == 200,
            timeout=30,
            what="health to be 200 again",
        )
        after = client.get("/api/v1/health").json()["data"]
    assert before.status_code == 200
    assert stopped.status_code == 503
    data = stopped.json()["data"]
    assert data["status"] == "down" and data["parts"]["database"]["status"] == "down"
    assert data["parts"]["cache"]["status"] == "ok"  # the rest is still reported
    assert after["parts"]["database"]["status"] == "ok"
