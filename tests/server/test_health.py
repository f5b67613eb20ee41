"""/api/v1/health part by part: database, cache, bus, dataflow heartbeats, providers' breakers.

Redis outages are in test_outages.py; here the in-process cache and bus, a
real dataflow beside the server, and a PostgreSQL database dropped mid-run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from detectflow.core.models import utcnow
from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.flows import FlowOptions, run_flow
from detectflow.server.app import openapi_document
from detectflow.store import Database
from detectflow.store.entries import dump_entry
from detectflow.store.heartbeat import HEARTBEAT_INDEX_KEY, HEARTBEAT_STALE, heartbeat_key
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache
from tests.databases import drop_postgres, migrated_database, throwaway_postgres
from tests.server.support import TestClient, add_provider, health_client, sqlite_only

_HEALTH_SCHEMA = jsonschema_rs.Draft202012Validator(
    {"$ref": "#/components/schemas/Health", "components": openapi_document()["components"]}
)


def _health(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/api/v1/health")
    data: dict[str, Any] = response.json()["data"]
    _HEALTH_SCHEMA.validate(data)  # every answer is the documented one
    return response.status_code, data


@sqlite_only
def test_a_server_alone_is_degraded_and_says_why(client: TestClient) -> None:
    status, data = _health(client)
    assert status == 200 and data["status"] == "degraded"
    parts = data["parts"]
    assert parts["database"] == {"status": "ok", "message": None}
    assert parts["cache"] == {"status": "ok", "message": None, "backend": "in_process"}
    assert parts["bus"] == {
        "status": "ok",
        "message": None,
        "subscribed": True,
        "reconnections": 0,
    }
    assert parts["dataflow"]["status"] == "down" and parts["dataflow"]["workers"] == []
    assert "no dataflow worker" in parts["dataflow"]["message"]
    assert parts["providers"]["status"] == "down" and parts["providers"]["providers"] == []
    assert "no provider configured" in parts["providers"]["message"]


@pytest.fixture
def flow_beside(
    settings: Settings, database: Database, registry: PluginRegistry, cache: MemoryCache
) -> Iterator[Callable[[int], threading.Event]]:
    """Starts a real dataflow (SQL source) on the app's database and cache, in a thread."""
    threads: list[tuple[threading.Thread, threading.Event]] = []
    errors: list[BaseException] = []

    def start(workers: int) -> threading.Event:
        stop = threading.Event()

        def run() -> None:
            try:
                run_flow(
                    settings,
                    FlowOptions(workers=workers),
                    database=database,
                    live=LiveView(cache, MemoryBus()),
                    registry=registry,
                    stop=stop,
                )
            except BaseException as exc:  # surfaced after the test, not lost in the thread
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append((thread, stop))
        return stop

    yield start
    for thread, stop in threads:
        stop.set()
        thread.join(timeout=15)
    assert errors == [], f"a dataflow beside the server failed: {errors!r}"


@sqlite_only
def test_each_running_dataflow_worker_is_reported_and_forgotten_when_it_stops(
    client: TestClient, flow_beside: Callable[[int], threading.Event]
) -> None:
    add_provider(client)
    stop = flow_beside(2)
    deadline = utcnow() + timedelta(seconds=20)
    while len(_health(client)[1]["parts"]["dataflow"]["workers"]) < 2:
        assert utcnow() < deadline, "the workers never beat"
        time.sleep(0.05)
    status, data = _health(client)
    assert status == 200 and data["status"] == "ok", data["parts"]
    workers = data["parts"]["dataflow"]["workers"]
    assert sorted(w["worker_index"] for w in workers) == [0, 1]
    assert all(w["status"] == "ok" and w["worker_count"] == 2 for w in workers)
    stop.set()
    deadline = utcnow() + timedelta(seconds=20)
    while _health(client)[1]["parts"]["dataflow"]["workers"]:
        assert utcnow() < deadline, "the stopped workers are still listed"
        time.sleep(0.05)


@sqlite_only
def test_a_silent_worker_is_down(client: TestClient, cache: MemoryCache) -> None:
    add_provider(client)
    now = utcnow()
    silent_since = now - timedelta(seconds=HEARTBEAT_STALE + 5)

    def beat(worker: str, at: Any) -> dict[str, Any]:
        return {
            "worker": worker,
            "host": "box",
            "pid": 7,
            "worker_index": int(worker[-1]),
            "worker_count": 2,
            "started_at": (now - timedelta(hours=1)).isoformat(),
            "beat_at": at.isoformat(),
        }

    entries = {
        "box/7/w0": beat("box/7/w0", now),
        "box/7/w1": beat("box/7/w1", silent_since),
    }
    items = {heartbeat_key(w): dump_entry(b) for w, b in entries.items()}
    items[HEARTBEAT_INDEX_KEY] = dump_entry({w: b["beat_at"] for w, b in entries.items()})
    cache.set_many(items, 60)

    status, data = _health(client)
    dataflow = data["parts"]["dataflow"]
    assert status == 200 and dataflow["status"] == "degraded"
    assert [(w["worker"], w["status"]) for w in dataflow["workers"]] == [
        ("box/7/w0", "ok"),
        ("box/7/w1", "down"),
    ]
    assert dataflow["workers"][1]["age_seconds"] >= HEARTBEAT_STALE


@sqlite_only
def test_a_provider_whose_breaker_is_open_is_down(client: TestClient, cache: MemoryCache) -> None:
    edge = add_provider(client, provider_name="edge")
    cloud = add_provider(client, provider_name="cloud")
    # What the dataflow's breakers publish for every process to see.
    LiveView(cache, MemoryBus()).publish_breakers(
        [{"id": edge["id"], "breaker": "open", "failures": 5, "opened_at": None}]
    )
    providers = _health(client)[1]["parts"]["providers"]
    assert providers["status"] == "degraded"
    by_name = {p["name"]: (p["breaker"], p["status"]) for p in providers["providers"]}
    # Both count: an inactive config still serves cameras routing sends it.
    assert by_name == {"edge": ("open", "down"), "cloud": ("closed", "ok")}
    assert {p["id"] for p in providers["providers"]} == {edge["id"], cloud["id"]}


@pytest.mark.postgres
def test_health_is_503_once_the_database_is_gone_and_still_reports_the_rest(
    tmp_path: Path, secret_key: str
) -> None:
    # A throwaway database dropped mid-run: the shared PostgreSQL stays up for everyone.
    with (
        throwaway_postgres("detectflow_health") as url,
        migrated_database(url, secret_key) as database,
        health_client(database, tmp_path) as client,
    ):
        assert _health(client)[0] == 200
        drop_postgres(url)
        status, data = _health(client)
        again, _ = _health(client)
    assert status == 503 and again == 503
    assert data["status"] == "down"
    assert data["parts"]["database"] == {
        "status": "down",
        "message": "the database does not answer",
    }
    assert data["parts"]["cache"]["status"] == "ok"  # the other parts are still reported
    assert data["provider_configured"] is False
