"""An RTSP camera for the video source tests: GStreamer's gst-rtsp-server.

Run with the system ``/usr/bin/python3`` (Debian's gi bindings live there, not
in the project's virtualenv): ``python3 rtsp_camera.py PORT [MOUNT] [WIDTHxHEIGHT]
[FPS]``. It serves a moving test pattern as H.264 over RTSP on 127.0.0.1 and
prints ``ready`` once listening. Tests kill and restart the process to cut the
stream. This file is not imported by the tests (it needs gi); see
``tests/video/rtsp.py``, which runs it.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port = sys.argv[1]
    mount = sys.argv[2] if len(sys.argv) > 2 else "/stream"
    width, height = (sys.argv[3] if len(sys.argv) > 3 else "320x240").split("x")
    fps = sys.argv[4] if len(sys.argv) > 4 else "25"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
