"""The demo's cameras are rows of the cameras table, read like any camera `up` reads."""

from __future__ import annotations

from pathlib import Path

from detectflow.cli.demo import DEMO_CAMERAS, DEMO_VIDEO_CAMERA, ensure_demo_cameras
from detectflow.store import Database


def test_the_demo_cameras_are_in_the_table_and_kept_in_step_across_runs(
    database: Database, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    ensure_demo_cameras(database, clip, fps=2.0)
    rows = {c.id: c for c in database.list_cameras()}
    assert set(rows) == {*DEMO_CAMERAS, DEMO_VIDEO_CAMERA}
    assert all(rows[c].url is None for c in DEMO_CAMERAS)  # fed through the queue
    video = rows[DEMO_VIDEO_CAMERA]
    assert video.url == f"file://{clip.resolve()}" and video.fps == 2.0
    assert video.options == {"loop": "1"}

    zones = {"zones": {"door": {"coordinates": [[0, 0], [1, 0], [1, 1]]}}}
    database.update_camera(DEMO_VIDEO_CAMERA, {"options": {**video.options, **zones}})
    database.set_camera_enabled(DEMO_VIDEO_CAMERA, False)
    moved = tmp_path / "elsewhere" / "clip.mp4"
    ensure_demo_cameras(database, moved, fps=4.0)  # the next run: same rows, new clip

    again = database.get_camera(DEMO_VIDEO_CAMERA)
    assert again is not None and again.enabled and again.fps == 4.0
    assert again.url == f"file://{moved.resolve()}"
    assert again.options == {"loop": "1", **zones}  # the zones someone set stay
    assert len(database.list_cameras()) == 4


def test_without_pyav_there_is_no_video_camera(database: Database) -> None:
    ensure_demo_cameras(database, None, fps=2.0)
    assert [c.id for c in database.list_cameras()] == list(DEMO_CAMERAS)
