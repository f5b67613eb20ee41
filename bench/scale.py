"""Storage at fleet scale: list, summary and statistics latencies as the tables grow.

For each size (default 1 M and 10 M rows) the bench makes a PostgreSQL
database with ``db upgrade``, day partitions for 30 days back, and fills it
in SQL with ``generate_series``: 100 cameras over 30 days, that many
detections and as many events, one tumbling window row per camera, type
and minute summed from the detections, and the closed days rolled up
(``maintenance partitions``). Then, with one ``detectflow serve`` per
size (subprocesses, in-process cache), each endpoint's first page, a
filtered page and a page 50 cursors deep, ``/summary`` and
``/statistics``, median of 5, the sizes' calls interleaved so the
machine's load weighs on each alike; then ``maintenance cleanup`` of the
oldest 10 days, next to a bare ``DROP TABLE`` of copies of one day's
partitions (the filesystem's cost of unlinking that many bytes).

The baseline is the smallest size, measured in the same run: the bench
prints each endpoint's growth factor against it (target: under 1.5x for
10x the rows), and the acceptance bound (<= 100 ms) next to each figure.

    .venv/bin/python -m bench.scale [--sizes 1000000,10000000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

API = "/api/v1/detections"
CAMERAS = 100
DAYS = 30
RUNS = 5
BOUND_MS = 100.0
CLEANUP_DAYS = 10

_DETECTIONS = """
INSERT INTO detections (id, camera_id, frame_id, detection_type, label, confidence,
    bbox_x, bbox_y, bbox_width, bbox_height, person_name, person_id, face_encoding,
    is_processed, processing_status, frame_number, frame_timestamp, created_at, updated_at)
SELECT md5('d' || g)::uuid::text, 'cam-' || (g % {cameras}), 'frame-' || (g / 2),
    (ARRAY['person', 'vehicle', 'face'])[1 + g % 3], (ARRAY['person', 'car', 'face'])[1 + g % 3],
    0.5 + (g % 50) / 100.0, 0.1, 0.2, 0.3, 0.4,
    CASE WHEN g % 3 = 0 AND g % 7 = 0 THEN 'Person ' || (g % 50) END,
    CASE WHEN g % 3 = 0 AND g % 7 = 0 THEN 'person-' || (g % 50) END,
    NULL, true, 'completed', g / 2, t, t, t
FROM generate_series(1, {rows}) AS g,
    LATERAL (SELECT now() - (g * {seconds}.0 / {rows}) * interval '1 second' AS t) AS times
"""

_EVENTS = """
INSERT INTO detection_event_logs (id, detection_id, camera_id, event_type, severity, message,
    person_id, person_name, confidence_score, action_taken, source_system, created_at, updated_at)
SELECT md5('e' || g)::uuid::text, NULL, 'cam-' || (g % {cameras}),
    CASE WHEN g % 50 = 0 THEN 'detection_failed' ELSE 'detection_completed' END,
    CASE WHEN g % 50 = 0 THEN 'warning' ELSE 'info' END,
    'Detected 2 objects',
    CASE WHEN g % 21 = 0 THEN 'person-' || (g % 50) END, NULL, 0.9, NULL, 'bench', t, t
FROM generate_series(1, {rows}) AS g,
    LATERAL (SELECT now() - (g * {seconds}.0 / {rows}) * interval '1 second' AS t) AS times
"""

_WINDOWS = """
INSERT INTO detection_window_stats (camera_id, detection_type, window_kind, window_start,
    window_end, detection_count, confidence_sum, max_confidence, distinct_persons, late_count,
    revision, is_final, updated_at)
SELECT camera_id, detection_type, 'tumbling', date_trunc('minute', created_at),
    date_trunc('minute', created_at) + interval '1 minute', count(*), sum(confidence),
    max(confidence), count(DISTINCT person_id), 0, 1, true, now()
FROM detections GROUP BY 1, 2, 4
"""

_PERSONS = """
INSERT INTO detection_person_days (camera_id, person_id, day, detection_count)
SELECT camera_id, person_id, date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
    count(*)
FROM detections WHERE person_id IS NOT NULL GROUP BY 1, 2, 3
"""


def _admin(url: str) -> str:
    return _libpq(url.rsplit("/", 1)[0] + "/postgres")


def _libpq(url: str) -> str:
    """The URL as psycopg takes it (no SQLAlchemy driver name)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def _database(base: str, keep: bool = False) -> Iterator[str]:
    name = f"bench_scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_admin(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base.rsplit('/', 1)[0]}/{name}"
    finally:
        if keep:
            print(f"kept database {name}", flush=True)
        else:
            with psycopg.connect(_admin(base), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill(url: str, secret_key: str, rows: int) -> float:
    """``db upgrade``, 30 days of partitions, the rows; returns the seconds it took."""
    from detectflow.core.models import utcnow
    from detectflow.store import Database
    from detectflow.store.partitions import ensure_days
    from detectflow.store.tables import metadata

    started = time.perf_counter()
    db = Database(url, secret_key=secret_key)

    def step(name: str) -> None:
        print(f"    {name}: {time.perf_counter() - started:.1f} s", flush=True)

    try:
        db.upgrade()
        today = utcnow().date()
        with db.engine.begin() as conn:
            ensure_days(conn, [today - timedelta(days=n) for n in range(DAYS + 1)])
        step("partitions")
        # Indexes are built after the load, as the conversion migration does: 5-10x faster.
        indexed = [t for t in metadata.sorted_tables if t.name != "detection_processing_queue"]
        with db.engine.begin() as conn:
            for table in indexed:
                for index in table.indexes:
                    index.drop(conn)
        sql = psycopg.connect(_libpq(url), autocommit=True)
        with sql:
            sizes = {"rows": rows, "cameras": CAMERAS, "seconds": DAYS * 86_400}
            sql.execute(_DETECTIONS.format(**sizes).encode())
            step("detections")
            sql.execute(_EVENTS.format(**sizes).encode())
            step("events")
            sql.execute(_WINDOWS.encode())
            sql.execute(_PERSONS.encode())
            step("windows and person counts")
        with db.engine.begin() as conn:
            for table in indexed:
                for index in table.indexes:
                    index.create(conn)
        step("indexes")
        db.roll_up_windows()
        step("rollups (days, hours)")
        with psycopg.connect(_libpq(url), autocommit=True) as sql:
            sql.execute("VACUUM ANALYZE")
    finally:
        db.dispose()
    return time.perf_counter() - started


def _disk(url: str, rows: int) -> None:
    """Print heap + index bytes per million rows, and the largest day partition."""
    with psycopg.connect(_libpq(url)) as sql:
        for table in ("detections", "detection_event_logs"):
            total, largest = sql.execute(
                "SELECT sum(pg_total_relation_size(inhrelid)), "
                "max(pg_total_relation_size(inhrelid)) "
                "FROM pg_inherits WHERE inhparent = %s::regclass",
                (table,),
            ).fetchone() or (0, 0)
            per_million = int(total or 0) / (rows / 1e6) / 2**20
            print(
                f"  {table}: {per_million:.0f} MiB per million rows (heap + indexes); "
                f"largest day partition {int(largest or 0) / 2**20:.0f} MiB",
                flush=True,
            )


def _serve(url: str, secret_key: str, tmp: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTFLOW_")}
    env.update(
        DETECTFLOW_DATA_DIR=tmp,
        DETECTFLOW_DATABASE_URL=url,
        DETECTFLOW_SECRET_KEY=secret_key,
        DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    log = Path(tmp) / "server.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from detectflow.cli import main; main()",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1.0)
            return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("server not up")


def _timed(client: httpx.Client, path: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    answer = client.get(path)
    took = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"{path}: {answer.status_code} {answer.text[:300]}")
    body: dict[str, object] = answer.json()
    return took, body


DEEP = 50


def _deep_path(client: httpx.Client, path: str, pages: int) -> str:
    """The path of the page ``pages`` cursors deep (the walk there is not timed)."""
    cursor = None
    joiner = "&" if "?" in path else "?"
    for _ in range(pages):
        _, body = _timed(client, path + (f"{joiner}cursor={cursor}" if cursor else ""))
        meta = body["meta"]
        assert isinstance(meta, dict)
        cursor = meta["next_cursor"]
        if cursor is None:
            raise SystemExit(f"{path}: fewer than {pages} pages")
    return f"{path}{joiner}cursor={cursor}"


def _targets(client: httpx.Client, deep: int) -> dict[str, list[str]]:
    """Per figure, the path timed in each run (one server, cursors already walked)."""
    for _ in range(2):  # warm the pool and the planner's caches
        client.get(f"{API}/events")
    same = {
        "events first page": f"{API}/events",
        "events camera_id=cam-7": f"{API}/events?camera_id=cam-7",
        "events event_type=detection_failed": f"{API}/events?event_type=detection_failed",
        "events severity=warning": f"{API}/events?severity=warning",
        "events camera_id=cam-7 N cursors deep": _deep_path(
            client, f"{API}/events?camera_id=cam-7&limit=20", deep
        ),
        "events offset=10000": f"{API}/events?offset=10000",
        "recent minutes=1440": f"{API}/recent?minutes=1440",
        "recent camera_id=cam-7": f"{API}/recent?minutes=1440&camera_id=cam-7",
        "recent N cursors deep": _deep_path(client, f"{API}/recent?minutes=1440", deep),
        "by-person first page": f"{API}/by-person/person-7",
        "by-person N cursors deep": _deep_path(client, f"{API}/by-person/person-7?limit=5", deep),
        "summary": f"{API}/summary",
    }
    targets = {name: [path] * RUNS for name, path in same.items()}
    # /statistics is cached per camera: a camera per run, each a miss; the
    # all-cameras figure is one first call.
    targets["statistics camera_id (uncached)"] = [
        f"{API}/statistics?camera_id=cam-{11 + n}" for n in range(RUNS)
    ]
    targets["statistics (uncached, first call)"] = [f"{API}/statistics"]
    return targets


def _measure(bases: dict[int, str], deep: int) -> dict[int, dict[str, float]]:
    """Each figure's median per size, the sizes' calls interleaved (A, B, A, B, ...)
    so that the machine's load, which swings from minute to minute here, weighs on
    every size alike and the growth factors compare like with like."""
    clients = {rows: httpx.Client(base_url=base, timeout=60) for rows, base in bases.items()}
    try:
        targets = {rows: _targets(client, deep) for rows, client in clients.items()}
        first = next(iter(targets.values()))
        figures: dict[int, dict[str, float]] = {rows: {} for rows in bases}
        for name, paths in first.items():
            times: dict[int, list[float]] = {rows: [] for rows in bases}
            for run in range(len(paths)):
                for rows, client in clients.items():
                    times[rows].append(_timed(client, targets[rows][name][run])[0])
            for rows in bases:
                figures[rows][name] = statistics.median(times[rows])
        return figures
    finally:
        for client in clients.values():
            client.close()


def _cleanup(url: str, secret_key: str) -> tuple[float, int]:
    from detectflow.store import Database

    db = Database(url, secret_key=secret_key)
    try:
        started = time.perf_counter()
        report = db.cleanup(timedelta(days=DAYS - CLEANUP_DAYS))
        took = (time.perf_counter() - started) * 1000
    finally:
        db.dispose()
    return took, report.dropped["detections"]


def _blocks(url: str, secret_key: str) -> dict[str, float]:
    """Database pages each call's statements touch (shared buffers hit + read, from
    ``EXPLAIN (ANALYZE, BUFFERS)``, second run): the work itself, which the
    machine's load does not change, so its growth with the table is exact."""
    from sqlalchemy import event

    from detectflow.core.models import utcnow
    from detectflow.store import Database

    db = Database(url, secret_key=secret_key)
    since = utcnow() - timedelta(minutes=1440)
    calls: dict[str, Any] = {
        "events first page": lambda: db.page_events(limit=100),
        "events camera_id=cam-7": lambda: db.page_events(limit=100, camera_id="cam-7"),
        "events event_type=detection_failed": lambda: db.page_events(
            limit=100, event_type="detection_failed"
        ),
        "recent minutes=1440": lambda: db.page_detections(limit=100, since=since),
        "by-person first page": lambda: db.page_detections(limit=100, person_id="person-7"),
        "summary totals": db.detection_totals,
        "statistics camera_id": lambda: db.detection_statistics("cam-11"),
        "statistics": db.detection_statistics,
    }
    figures: dict[str, float] = {}
    try:
        for name, call in calls.items():
            sent: list[tuple[str, Any]] = []

            def capture(
                _c: Any, _cur: Any, statement: str, params: Any, *_: Any, sent: list[Any] = sent
            ) -> None:
                if statement.lstrip().upper().startswith("SELECT"):
                    sent.append((statement, params))

            event.listen(db.engine, "before_cursor_execute", capture)
            try:
                call()
            finally:
                event.remove(db.engine, "before_cursor_execute", capture)
            blocks = 0
            with db.engine.connect() as conn:
                for statement, params in sent:
                    for _ in range(2):  # the second run, caches warm
                        plan = conn.exec_driver_sql(
                            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", params
                        ).scalar_one()[0]["Plan"]
                    blocks += plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
            figures[f"{name} (pages)"] = blocks
    finally:
        db.dispose()
    return figures


_DAY_TABLES = ("detections", "detection_event_logs", "detection_window_stats")


def _bare_drop(url: str) -> float:
    """The baseline: ``DROP TABLE`` of plain copies of one day's three partitions,
    their indexes included (ms). Dropping a table unlinks its files, which costs
    what the filesystem takes for that many bytes; that part grows with the
    rows per day whatever we do."""
    with psycopg.connect(_libpq(url), autocommit=True) as sql:
        copies = []
        for table in _DAY_TABLES:
            part = sql.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass AND c.relname NOT LIKE '%%default' "
                "ORDER BY c.reltuples DESC LIMIT 1",
                (table,),
            ).fetchone()
            assert part is not None, table
            copy = f"bare_{table}"
            sql.execute(f'CREATE TABLE "{copy}" (LIKE "{part[0]}" INCLUDING INDEXES)'.encode())
            sql.execute(f'INSERT INTO "{copy}" SELECT * FROM "{part[0]}"'.encode())
            copies.append(copy)
        sql.execute("CHECKPOINT")
        started = time.perf_counter()
        with sql.transaction():
            for copy in copies:
                sql.execute(f'DROP TABLE "{copy}"'.encode())
        return (time.perf_counter() - started) * 1000


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/x")
    parser.add_argument("--deep", type=int, default=DEEP, help="cursors deep (default 50)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the databases (to EXPLAIN what was measured)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from cryptography.fernet import Fernet

    with ExitStack() as stack:
        bases: dict[int, str] = {}
        keys: dict[int, tuple[str, str]] = {}
        for rows in sizes:
            secret_key = Fernet.generate_key().decode()
            url = stack.enter_context(_database(args.postgres, args.keep))
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            took = _fill(url, secret_key, rows)
            print(
                f"{rows:,} detections + {rows:,} events over {DAYS} days, {CAMERAS} cameras: "
                f"generated in {took:.0f} s",
                flush=True,
            )
            _disk(url, rows)
            port = _free_port()
            stack.callback(_stop, _serve(url, secret_key, tmp, port))
            bases[rows] = f"http://127.0.0.1:{port}"
            keys[rows] = (url, secret_key)
        results = _measure(bases, args.deep)
        for rows, (url, secret_key) in keys.items():
            results[rows].update(_blocks(url, secret_key))
        for rows, (url, secret_key) in keys.items():
            bare_ms = _bare_drop(url)
            cleanup_ms, dropped = _cleanup(url, secret_key)
            per_day = cleanup_ms / max(dropped, 1)
            results[rows]["cleanup per day dropped"] = per_day
            results[rows]["bare DROP of one day's 3 tables (baseline)"] = bare_ms
            results[rows][f"cleanup of {CLEANUP_DAYS} days (total)"] = cleanup_ms
            print(
                f"{rows:,} rows: cleanup {per_day:.0f} ms per day dropped, "
                f"{per_day / max(bare_ms, 1e-9):.2f}x a bare DROP of that day's tables",
                flush=True,
            )

    baseline = sizes[0]
    print(
        f"\nN = {args.deep}; median of {RUNS}, sizes interleaved, ms; "
        f"growth against {baseline:,} rows (same run)"
    )
    header = "".join(f"{n:>14,}" for n in sizes)
    print(f"{'call':45s}{header}  growth  <= {BOUND_MS:g} ms")
    for name in results[baseline]:
        row = "".join(f"{results[n][name]:14.1f}" for n in sizes)
        growth = results[sizes[-1]][name] / max(results[baseline][name], 1e-9)
        bounded = not name.startswith(("cleanup", "bare")) and not name.endswith("(pages)")
        within = "NO" if bounded and results[sizes[-1]][name] > BOUND_MS else "yes"
        print(f"{name:45s}{row}  {growth:5.2f}x  {within}")


if __name__ == "__main__":
    main()
