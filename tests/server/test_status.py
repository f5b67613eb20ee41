"""/api/v1/health and /api/v1/detections/summary."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from detectflow.core.models import utcnow
from detectflow.core.settings import Settings
from detectflow.core.windows import WindowStats
from detectflow.server import create_app
from detectflow.store import Database
from tests.server.support import API, TestClient, add_provider, frame_body


def test_health_reports_the_active_provider(client: TestClient) -> None:
    add_provider(client, provider_name="edge box")
    data = client.get("/api/v1/health").json()["data"]
    assert data["provider_configured"] is True and data["provider_name"] == "edge box"


def test_health_is_503_when_the_database_is_down(
    tmp_path: Path, secret_key: str, free_port: int
) -> None:
    # A real outage: a PostgreSQL URL on a port nothing listens on.
    database = Database(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port}/x", secret_key=secret_key
    )
    try:
        with TestClient(create_app(Settings(data_dir=tmp_path), database=database)) as client:
            response = client.get("/api/v1/health")
    finally:
        database.dispose()
    assert response.status_code == 503
    data = response.json()["data"]
    assert data["status"] == "down" and data["parts"]["database"]["status"] == "down"


def test_summary_combines_provider_queue_and_detection_counts(
    client: TestClient, database: Database
) -> None:
    add_provider(client, provider_name="edge box")
    client.post(f"{API}/send-frame?mode=queue", json=frame_body(number=2))
    now = utcnow()
    day_ago = now - timedelta(days=1, hours=2)
    database.record_window_stats(
        [("tumbling", _window(now - timedelta(minutes=5), 3)), ("tumbling", _window(day_ago, 4))]
    )
    database.roll_up_windows()
    data = client.get(f"{API}/summary").json()["data"]
    assert data["provider_configured"] is True and data["provider_name"] == "edge box"
    assert data["provider_active"] is True and data["provider_test_status"] == "untested"
    assert data["queue_stats"]["pending"] == 1
    # From the window statistics (a rolled-up day and today's minutes), not the detections.
    assert data["detection_stats"] == {"total_detections": 7, "detections_last_hour": 3}


def _window(start: datetime, count: int) -> WindowStats:
    start = start.replace(second=0, microsecond=0)
    return WindowStats(
        "cam-1",
        "person",
        start,
        start + timedelta(minutes=1),
        count,
        0.9 * count,
        0.9,
        0,
        0,
        1,
        True,
    )
