"""The camera reader on real peers: files written by PyAV, an MJPEG camera over HTTP."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from detectflow.core.cameras import Camera
from detectflow.core.images import probe_image
from detectflow.core.models import Frame
from detectflow.video.reader import CameraReader
from tests.video.conftest import Status
from tests.video.mjpeg_camera import MjpegCamera


def reader(url: str, status: Status, fps: float = 5.0, **options: object) -> CameraReader:
    camera = Camera(id="cam-v", url=url, fps=fps, options=options)
    return CameraReader(camera, listener=status, max_frame_bytes=10 << 20).start()


def drain(source: CameraReader, seconds: float, *, until_finished: bool = True) -> list[Frame]:
    """Take samples as a flow would, every 10 ms, for ``seconds`` (or until the file ends)."""
    got: list[Frame] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until_finished and source.finished):
        frame = source.take()
        if frame is not None:
            got.append(frame)
        time.sleep(0.01)
    return got


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_file_plays_in_real_time_sampled_at_the_cameras_fps(
    h264_clip: Path, status: Status
) -> None:
    source = reader(f"file://{h264_clip}", status)
    started = time.monotonic()
    frames = drain(source, 10)
    took = time.monotonic() - started
    source.stop(5)

    # 50 frames at 25 fps = 2 s of video, sampled at 5 fps: every fifth frame.
    assert [f.frame_number for f in frames] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert 1.6 <= took < 8.0  # played at its own rate, not as fast as decoding goes
    gaps = [(b.timestamp - a.timestamp).total_seconds() for a, b in itertools.pairwise(frames)]
    assert all(abs(gap - 0.2) < 0.002 for gap in gaps)  # stream time, not arrival time
    counts = source.counts()
    assert (counts.decoded, counts.sampled, counts.skipped) == (50, 10, 40)
    assert all(probe_image(f.image) == ("jpeg", 320, 240) for f in frames)
    assert (frames[0].width, frames[0].height) == (320, 240)
    assert status.heard == []


def test_realtime_0_waits_for_the_flow_instead_of_skipping_samples(
    mjpeg_clip: Path, status: Status
) -> None:
    source = reader(f"file://{mjpeg_clip}", status, realtime=0)
    time.sleep(0.5)  # the flow is slow: the reader must wait, not replace the sample
    frames = drain(source, 10)
    source.stop(5)

    assert [f.frame_number for f in frames] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert source.counts().skipped == 40  # the frames between samples, nothing else
    assert len({f.frame_id for f in frames}) == 10


def test_a_slow_flow_gets_the_newest_frame_and_the_rest_count_as_skipped(
    h264_clip: Path, status: Status
) -> None:
    source = reader(f"file://{h264_clip}", status, fps=25)
    time.sleep(1.0)  # nothing taken for a second: the samples pile up in one slot
    first = source.take()
    frames = drain(source, 10)
    source.stop(5)

    assert first is not None and first.frame_number >= 20  # the newest, not frame 0
    counts = source.counts()
    assert counts.sampled == 1 + len(frames)
    assert counts.decoded == 50
    assert counts.sampled + counts.skipped == counts.decoded


def test_loop_plays_the_file_again_with_new_frame_ids(mjpeg_clip: Path, status: Status) -> None:
    source = reader(f"file://{mjpeg_clip}", status, realtime=0, loop=1)
    frames: list[Frame] = []
    wait_for(lambda: frames.extend(f for f in [source.take()] if f) or len(frames) >= 25)
    source.stop(5)

    assert [f.frame_number for f in frames[:11]] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 0]
    assert len({f.frame_id for f in frames}) == len(frames)
    assert not source.finished or source.counts().decoded >= 100


def test_the_mjpeg_camera_is_read_and_timed_by_arrival(mjpeg: MjpegCamera, status: Status) -> None:
    source = reader(mjpeg.url, status)
    frames = drain(source, 2.0, until_finished=False)
    source.stop(5)

    assert 4 <= len(frames) <= 11  # 5 fps for 2 s: never more (a loaded machine may give fewer)
    times = [f.timestamp for f in frames]
    assert times == sorted(times)
    assert all(probe_image(f.image) == ("jpeg", 320, 240) for f in frames)
    assert status.heard == []


def test_a_stalled_stream_goes_offline_then_online_when_frames_flow_again(
    mjpeg: MjpegCamera, status: Status
) -> None:
    source = reader(mjpeg.url, status, stall_seconds=1)
    wait_for(lambda: source.counts().decoded > 5)
    mjpeg.stall()
    wait_for(lambda: "offline" in status.kinds())
    assert not source.counts().online
    mjpeg.stall(False)
    wait_for(lambda: "online" in status.kinds())
    frames = drain(source, 0.5, until_finished=False)
    source.stop(5)

    assert status.kinds()[:1] == ["offline"] and status.kinds()[-1] == "online"
    assert "stalled" in (status.heard[0][2] or "")
    assert frames
    assert source.counts().dropped >= 1


def test_a_dropped_connection_is_reconnected(mjpeg: MjpegCamera, status: Status) -> None:
    source = reader(mjpeg.url, status)
    wait_for(lambda: source.counts().decoded > 5)
    mjpeg.drop()
    wait_for(lambda: "online" in status.kinds())
    source.stop(5)

    assert status.kinds()[0] == "offline"
    assert source.counts().dropped == 1


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("wrong password", "401 Unauthorized"),
        ("not video", "Invalid data"),
        ("refused", "Connection refused"),
    ],
)
def test_bad_input_is_reported_with_the_reason_and_retried(
    mjpeg: MjpegCamera, status: Status, which: str, expected: str
) -> None:
    url = {
        "wrong password": mjpeg.secure_url("hunter2"),
        "not video": mjpeg.page_url,
        "refused": "http://127.0.0.1:1/video.mjpg",
    }[which]
    source = reader(url, status)
    wait_for(lambda: source.counts().dropped >= 2, timeout=6)  # retried after 1 s
    source.stop(5)

    kind, camera_id, reason = status.heard[0]
    assert (kind, camera_id) == ("offline", "cam-v")
    assert expected in (reason or "")
    assert "hunter2" not in (reason or "")  # the password never shows
    assert source.counts().last_error == reason
    assert status.kinds().count("offline") == 1  # one event per outage, not per retry


def test_the_right_password_is_read(mjpeg: MjpegCamera, status: Status) -> None:
    source = reader(mjpeg.secure_url(), status)
    frames = drain(source, 1.0, until_finished=False)
    source.stop(5)
    assert frames and status.heard == []


def test_a_corrupt_file_is_reported_and_retried(tmp_path: Path, status: Status) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    source = reader(f"file://{broken}", status)
    wait_for(lambda: source.counts().dropped >= 2, timeout=6)
    source.stop(5)

    assert status.heard[0][:2] == ("offline", "cam-v")
    assert "broken.mp4" in (status.heard[0][2] or "")
    assert not source.finished or source.counts().decoded == 0


def test_stop_ends_the_thread_promptly(h264_clip: Path, status: Status) -> None:
    source = reader(f"file://{h264_clip}", status)
    time.sleep(0.3)
    started = time.monotonic()
    source.stop(5)
    assert time.monotonic() - started < 1.0
    assert source.finished or source.take() is not None
