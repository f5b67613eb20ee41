"""An RTSP camera (GStreamer's gst-rtsp-server, H.264) read by PyAV, cut and restored."""

from __future__ import annotations

import itertools
import time

from detectflow.core.cameras import Camera
from detectflow.core.images import probe_image
from detectflow.video.reader import CameraReader
from tests.video.conftest import Status
from tests.video.rtsp import RtspCamera
from tests.video.test_reader import drain, wait_for


def test_an_rtsp_stream_is_sampled_at_the_cameras_fps_in_stream_time(
    rtsp: RtspCamera, status: Status
) -> None:
    reader = CameraReader(
        Camera(id="rtsp-1", url=rtsp.url, fps=5), listener=status, max_frame_bytes=10 << 20
    ).start()
    wait_for(lambda: reader.counts().online)
    frames = drain(reader, 3.0, until_finished=False)
    reader.stop(5)

    assert 6 <= len(frames) <= 17  # 5 fps for 3 s: never more (a loaded machine may give fewer)
    assert all(probe_image(f.image) == ("jpeg", 320, 240) for f in frames)
    gaps = [(b.timestamp - a.timestamp).total_seconds() for a, b in itertools.pairwise(frames)]
    assert all(gap > 0 for gap in gaps)
    counts = reader.counts()
    assert counts.decoded >= 4 * counts.sampled  # 25 fps decoded, 5 sent
    assert status.heard == []


def test_a_killed_rtsp_server_is_offline_then_online_after_its_restart(
    rtsp: RtspCamera, status: Status
) -> None:
    reader = CameraReader(
        Camera(id="rtsp-1", url=rtsp.url, fps=5, options={"stall_seconds": 2}),
        listener=status,
        max_frame_bytes=10 << 20,
    ).start()
    wait_for(lambda: reader.counts().decoded > 10)
    rtsp.kill()
    wait_for(lambda: "offline" in status.kinds())
    time.sleep(2.0)  # retried while down: still one offline event
    rtsp.start()
    wait_for(lambda: "online" in status.kinds(), timeout=40)
    decoded = reader.counts().decoded
    wait_for(lambda: reader.counts().decoded > decoded + 10)
    reader.stop(5)

    assert status.kinds().count("offline") == 1
    assert status.kinds()[-1] == "online"
    assert reader.counts().online
