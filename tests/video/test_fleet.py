"""One worker's readers following a changing camera list."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.cameras import Camera
from detectflow.video.fleet import CameraFleet, owner
from detectflow.video.reader import CameraReader
from tests.video.conftest import Status
from tests.video.test_reader import wait_for


@given(
    st.sets(st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True), max_size=30), st.integers(1, 8)
)
def test_every_camera_has_exactly_one_worker_whatever_else_is_listed(
    ids: set[str], workers: int
) -> None:
    owners = {i: owner(i, workers) for i in ids}
    assert all(0 <= w < workers for w in owners.values())
    assert owners == {i: owner(i, workers) for i in sorted(ids)}  # no dependence on order


class Fleet:
    def __init__(self, status: Status, cameras: list[Camera]) -> None:
        self.cameras = cameras
        self.made: list[str] = []
        self.refused: list[str] = []

        def make(camera: Camera) -> CameraReader:
            self.made.append(camera.id)
            return CameraReader(camera, listener=status, max_frame_bytes=10 << 20)

        self.fleet = CameraFleet(
            lambda: self.cameras,
            make,
            refresh_seconds=0.0,
            on_refused=lambda camera, reason: self.refused.append(f"{camera.id}: {reason}"),
        )

    def ids(self) -> set[str]:
        return {r.camera.id for r in self.fleet.readers()}


def test_cameras_come_go_and_are_read_anew_when_changed(status: Status, mjpeg_clip: Path) -> None:
    url = f"file://{mjpeg_clip}"
    a = Camera(id="a", url=url, options={"loop": 1})
    b = Camera(id="b", url=url, options={"loop": 1})
    fleet = Fleet(status, [a, b, Camera(id="no-url"), replace(a, id="off", enabled=False)])
    try:
        fleet.fleet.refresh()
        assert fleet.ids() == {"a", "b"}
        fleet.cameras = [a, replace(b, fps=2.0)]
        fleet.fleet.refresh()
        assert fleet.made == ["a", "b", "b"]  # b read anew, a left alone
        fleet.cameras = [a]
        fleet.fleet.refresh()
        assert fleet.ids() == {"a"}
        assert "b" in fleet.fleet.counts()  # its counts stay for the record
    finally:
        fleet.fleet.close()


def test_a_file_that_ended_is_not_played_again_until_it_changes(
    status: Status, mjpeg_clip: Path
) -> None:
    camera = Camera(id="f", url=f"file://{mjpeg_clip}", fps=25, options={"realtime": 0})
    fleet = Fleet(status, [camera])
    try:
        fleet.fleet.refresh()
        reader = next(fleet.fleet.readers())
        wait_for(lambda: reader.take() is None and reader.finished)
        assert fleet.ids() == set()
        fleet.fleet.refresh()
        assert fleet.made == ["f"]
        fleet.cameras = [replace(camera, options={"realtime": 0, "loop": 1})]
        fleet.fleet.refresh()
        assert fleet.made == ["f", "f"]
    finally:
        fleet.fleet.close()


def test_bad_settings_are_refused_once_and_not_retried_until_changed(status: Status) -> None:
    bad = Camera(id="x", url="rtsp://cam/live", options={"transport": "pigeon"})
    fleet = Fleet(status, [bad])
    fleet.fleet.refresh()
    fleet.fleet.refresh()
    assert fleet.made == ["x"] and len(fleet.refused) == 1  # made, refused by its options
    assert "transport" in fleet.refused[0]
    assert fleet.fleet.active == 0


def test_a_failing_camera_list_keeps_the_cameras_read(status: Status, mjpeg_clip: Path) -> None:
    camera = Camera(id="a", url=f"file://{mjpeg_clip}", options={"loop": 1})
    calls = {"n": 0}

    def load() -> list[Camera]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise ConnectionError("database down")
        return [camera]

    fleet = CameraFleet(
        load,
        lambda c: CameraReader(c, listener=status, max_frame_bytes=10 << 20),
        refresh_seconds=0.0,
    )
    try:
        fleet.refresh()
        fleet.refresh()
        assert fleet.active == 1
    finally:
        fleet.close()
