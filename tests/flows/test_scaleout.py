"""Scale-out: a Bytewax cluster of ``flow run`` processes, and the options that form it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from detectflow import Settings
from detectflow.core.models import QueueStatus
from detectflow.core.plugins import PluginRegistry
from detectflow.flows import FlowError, FlowOptions, run_flow
from detectflow.flows.recovery import recovery_partitions
from detectflow.store import Database
from tests.flows.conftest import activate, enqueue, person
from tests.flows.flow_processes import FlowProcess, flow_env, provider, unique_detections, wait_for


def _ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_two_process_cluster_shares_the_queue(
    postgres_url: str, secret_key: str, tmp_path: Path
) -> None:
    pg = Database(postgres_url, secret_key=secret_key)
    pg.upgrade()
    try:
        queued = enqueue(pg, 300)
        addresses = ",".join(f"127.0.0.1:{port}" for port in _ports(2))
        env = flow_env(postgres_url, secret_key, tmp_path)
        processes = tuple(
            FlowProcess(
                f"p{n}",
                [
                    "--workers",
                    "2",
                    "--process-id",
                    str(n),
                    "--addresses",
                    addresses,
                    "--recovery-dir",
                    str(tmp_path / "recovery"),
                    "--snapshot-interval",
                    "1",
                ],
                env,
                tmp_path,
            )
            for n in range(2)
        )
        try:
            with provider(pg, latency=0.02):
                for p in processes:
                    p.start()
                wait_for(
                    lambda: pg.queue_stats().get(QueueStatus.COMPLETED, 0) == len(queued),
                    timeout=45,
                    what="the cluster to complete every queued frame",
                    processes=processes,
                )
                # One cluster: every process must hear SIGTERM before any can end.
                for p in processes:
                    p.terminate()
                for p in processes:
                    assert p.stop() == 0, p.output()
        finally:
            for p in processes:
                p.cleanup()
        stats = pg.queue_stats()
        assert stats.get(QueueStatus.PENDING, 0) == stats.get(QueueStatus.PROCESSING, 0) == 0
        total, distinct = unique_detections(pg)
        assert total == distinct > 0
        # 2 processes x 2 workers: one recovery partition per worker.
        assert recovery_partitions(tmp_path / "recovery") == 4
    finally:
        pg.dispose()


def test_threads_of_one_process_with_recovery_complete_every_frame(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry, tmp_path: Path
) -> None:
    activate(sqlite_db, person)
    queued = enqueue(sqlite_db, 40)

    metrics = run_flow(
        settings,
        FlowOptions(
            until_empty=True,
            workers=2,
            recovery_dir=tmp_path / "recovery",
            snapshot_interval=0.05,
        ),
        database=sqlite_db,
        registry=registry,
    )

    assert sqlite_db.queue_stats()[QueueStatus.COMPLETED] == len(queued)
    assert metrics.snapshot().completed == len(queued)
    assert recovery_partitions(tmp_path / "recovery") == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"process_id": 1}, "--process-id needs --addresses"),
        ({"addresses": ("127.0.0.1:1", "127.0.0.1:2")}, "--addresses needs --process-id"),
        ({"addresses": ("127.0.0.1:1",), "process_id": 1}, "--process-id must be 0..0"),
        ({"addresses": ("localhost",), "process_id": 0}, "host:port"),
        ({"workers": 0}, "workers must be at least 1"),
        ({"snapshot_interval": 0}, "snapshot interval"),
    ],
)
def test_bad_cluster_options_are_clear_errors(
    settings: Settings,
    sqlite_db: Database,
    registry: PluginRegistry,
    options: dict[str, object],
    message: str,
) -> None:
    flow = FlowOptions(until_empty=True, **options)  # type: ignore[arg-type]
    with pytest.raises(FlowError, match=message):
        run_flow(settings, flow, database=sqlite_db, registry=registry)


def test_unusable_recovery_dir_is_a_clear_error(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(FlowError, match="cannot use recovery directory"):
        run_flow(
            settings,
            FlowOptions(until_empty=True, recovery_dir=blocker / "recovery"),
            database=sqlite_db,
            registry=registry,
        )
