"""The cameras table on SQLite and PostgreSQL: CRUD, the URL encrypted at rest, the
version token a reader polls, last_error as status, and an import in one transaction."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from detectflow.core.camera_sync import plan_sync
from detectflow.core.cameras import Camera
from detectflow.store import Database, SecretKeyError
from detectflow.store.cameras import CameraExistsError
from detectflow.store.tables import cameras as table

PASSWORD = "pa55-w0rd-xyz"
URL = f"rtsp://admin:{PASSWORD}@10.0.0.5:554/stream1"


def add(db: Database, camera_id: str = "cam-1", **fields: object) -> Camera:
    return db.create_camera(Camera(camera_id, **fields))  # type: ignore[arg-type]


def test_create_get_page_update_delete(db: Database) -> None:
    created = add(db, url=URL, fps=2.5, name="Door", options={"transport": "tcp"})
    assert (created.url, created.fps, created.name) == (URL, 2.5, "Door")
    assert db.get_camera("cam-1") == created
    for camera_id in ("cam-3", "cam-2"):
        add(db, camera_id, enabled=camera_id == "cam-2")
    page, total = db.page_cameras(limit=2, offset=0)
    assert [c.id for c in page] == ["cam-1", "cam-2"] and total == 3
    page, total = db.page_cameras(limit=2, offset=2)
    assert [c.id for c in page] == ["cam-3"] and total == 3
    page, total = db.page_cameras(enabled=False)
    assert [c.id for c in page] == ["cam-3"] and total == 1

    updated = db.update_camera("cam-1", {"fps": 1.0, "url": None, "options": {}})
    assert (updated.fps, updated.url, updated.options) == (1.0, None, {})
    assert updated.created_at == created.created_at and updated.updated_at > created.updated_at
    assert db.delete_camera("cam-1") is True
    assert db.get_camera("cam-1") is None
    assert db.delete_camera("cam-1") is False
    with pytest.raises(KeyError):
        db.update_camera("cam-1", {"fps": 2.0})


def test_a_taken_id_is_refused(db: Database) -> None:
    add(db)
    with pytest.raises(CameraExistsError, match="'cam-1' already exists"):
        add(db, fps=1.0)


def test_only_configuration_can_be_updated(db: Database) -> None:
    add(db)
    with pytest.raises(ValueError, match="cannot change camera field"):
        db.update_camera("cam-1", {"id": "other"})


def test_the_url_is_encrypted_at_rest(db: Database) -> None:
    add(db, url=URL)
    with db.engine.connect() as conn:
        stored = conn.execute(select(table.c.url_encrypted)).scalar_one()
    assert PASSWORD not in stored and "10.0.0.5" not in stored
    other = Database(str(db.engine.url.render_as_string(hide_password=False)), secret_key=_key())
    try:
        with pytest.raises(SecretKeyError, match="cannot decrypt a stored camera url"):
            other.get_camera("cam-1")
    finally:
        other.dispose()


def _key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def test_list_enabled_is_what_a_reader_reads(db: Database) -> None:
    add(db, "b", url=URL)
    add(db, "a", url="file:///clips/a.mp4")
    add(db, "c", enabled=False)
    assert [c.id for c in db.list_enabled_cameras()] == ["a", "b"]
    db.set_camera_enabled("c", True)
    db.set_camera_enabled("a", False)
    assert [c.id for c in db.list_enabled_cameras()] == ["b", "c"]
    assert [c.id for c in db.list_cameras()] == ["a", "b", "c"]


def test_the_version_changes_with_every_change_and_only_then(db: Database) -> None:
    seen = {db.cameras_version()}
    add(db, "a")
    seen.add(db.cameras_version())
    add(db, "b")
    seen.add(db.cameras_version())
    db.update_camera("a", {"fps": 2.0})
    seen.add(db.cameras_version())
    db.set_camera_enabled("b", False)
    seen.add(db.cameras_version())
    db.delete_camera("a")
    seen.add(db.cameras_version())
    assert len(seen) == 6
    now = db.cameras_version()
    assert db.cameras_version() == now
    db.set_camera_last_error("b", "connection refused")
    assert db.cameras_version() == now  # status, not configuration


def test_changed_since_answers_none_until_something_changes(db: Database) -> None:
    first = db.cameras_changed_since(None)
    assert first is not None
    version, cameras = first
    assert cameras == []
    assert db.cameras_changed_since(version) is None
    add(db, "a", url=URL)
    add(db, "b", enabled=False)
    changed = db.cameras_changed_since(version)
    assert changed is not None
    assert [c.id for c in changed[1]] == ["a"] and changed[1][0].url == URL
    assert db.cameras_changed_since(changed[0]) is None


def test_last_error_is_redacted_cut_and_cleared(db: Database) -> None:
    add(db, url=URL)
    assert db.set_camera_last_error("cam-1", f"401 Unauthorized from {URL}") is True
    camera = db.get_camera("cam-1")
    assert camera is not None and camera.last_error is not None
    assert PASSWORD not in camera.last_error and "10.0.0.5:554/stream1" in camera.last_error
    db.set_camera_last_error("cam-1", "x" * 5000)
    camera = db.get_camera("cam-1")
    assert camera is not None and camera.last_error == "x" * 2000
    db.set_camera_last_error("cam-1", None)
    camera = db.get_camera("cam-1")
    assert camera is not None and camera.last_error is None
    assert db.set_camera_last_error("nope", "x") is False


def test_an_import_plan_is_applied_whole(db: Database) -> None:
    add(db, "keep", fps=1.0)
    add(db, "change", url=URL)
    add(db, "gone")
    wanted = [Camera("change", url=URL, fps=3.0), Camera("new", options={"loop": 1})]
    db.sync_cameras(plan_sync(db.list_cameras(), wanted, prune=True))
    after = {c.id: c for c in db.list_cameras()}
    assert set(after) == {"change", "new"}
    assert after["change"].fps == 3.0 and after["change"].url == URL
    assert after["new"].options == {"loop": 1}
    assert not plan_sync(db.list_cameras(), wanted, prune=True).changes


def test_a_failing_import_changes_nothing(db: Database) -> None:
    add(db, "a")
    add(db, "taken")
    before = db.list_cameras()
    # "taken" is added by someone else between the plan and its application.
    plan = plan_sync([before[0]], [replace(before[0], fps=9.0), Camera("taken")], prune=False)
    with pytest.raises(IntegrityError):
        db.sync_cameras(plan)
    assert db.list_cameras() == before
