"""/api/v1/health and /api/v1/detections/summary."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from detectflow.core.models import utcnow
from detectflow.core.settings import Settings
from detectflow.core.windows import Tally, WindowKey
from detectflow.server import create_app
from detectflow.store import Database
from detectflow.store.stats import add_tallies
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
    sent = client.post(f"{API}/send-frame", json=frame_body()).json()["data"]
    client.post(f"{API}/send-frame?mode=queue", json=frame_body(number=2))
    day_ago = (utcnow() - timedelta(days=1, hours=2)).replace(second=0, microsecond=0)
    with database.engine.begin() as conn:  # yesterday's minute, as the recorder tallies it
        key = WindowKey("cam-1", "person", "tumbling", day_ago, day_ago + timedelta(minutes=1))
        add_tallies(conn, {key: Tally(4, 3.6, 0.9)}, now=utcnow())
    database.roll_up_windows()
    data = client.get(f"{API}/summary").json()["data"]
    assert data["provider_configured"] is True and data["provider_name"] == "edge box"
    assert data["provider_active"] is True and data["provider_test_status"] == "untested"
    assert data["queue_stats"]["pending"] == 1
    # From the window statistics (a rolled-up day and today's minutes), not the detections.
    now = sent["detection_count"]
    assert data["detection_stats"] == {"total_detections": 4 + now, "detections_last_hour": now}
