"""One camera's reader: a thread that decodes its stream and keeps the newest sample.

The thread decodes every frame (PyAV releases the GIL while FFmpeg works),
samples frames at the camera's ``fps`` by stream time, encodes each sampled
frame as JPEG once and leaves it in a one-frame slot. The flow takes from
the slot when it has room; a sample not taken before the next one is ready
is replaced, so a slow provider never builds a backlog of old video. Every
decoded frame that never reaches the flow is counted as skipped.

Frames carry the stream's time: the presentation time of the frame, counted
from the connection's first frame and anchored to the wall clock at connect
(files: at the start of each pass). ``frame_number`` is the decoder's count
since connect; the frame id names the connection too, so a reconnect or a
second pass never reuses an id.

Live streams that fail, end or stall (no frame for ``stall_seconds``) are
reconnected with a pause doubling from 1 s to 30 s. The first failure of an
outage reports the camera offline, frames flowing again report it online
(:class:`StatusListener`). Files play at their own rate (``realtime``) or as
fast as the flow takes them (``realtime=0``: the reader waits for the slot
to be taken instead of replacing it), ``loop`` repeats them; the end of a
file ends the reader cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import av
import av.container

from detectflow.core.cameras import Camera, display_url
from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import make_frame
from detectflow.core.ids import frame_id_for
from detectflow.core.models import Frame, utcnow
from detectflow.core.redact import redact_text
from detectflow.video.counts import ReaderCounts
from detectflow.video.jpeg import JpegEncoder
from detectflow.video.options import ReaderOptions, reader_options
from detectflow.video.sampling import Sampler, StreamClock

__all__ = [
    "BACKOFF_CAP_SECONDS",
    "BACKOFF_START_SECONDS",
    "CameraReader",
    "StatusListener",
    "is_file_url",
]

log = logging.getLogger(__name__)

BACKOFF_START_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
_OPEN_TIMEOUT_SECONDS = 10.0
_UNTIMED_FORMATS = frozenset({"mpjpeg", "mjpeg"})
"""Demuxers that number frames at an assumed 25 fps (MJPEG over HTTP carries no times)."""


class StatusListener(Protocol):
    """Hears a camera go offline (with the reason) and come back online.

    Called from the reader's thread; keep it quick.
    """

    def offline(self, camera: Camera, reason: str, *, first: bool) -> None:
        """``first`` is True for the failure that starts an outage (the event),
        False for each later failed retry (the reason may have changed)."""

    def online(self, camera: Camera) -> None:
        """Frames flow again after an outage (not called on a first connect)."""


class _Stalled(Exception):
    """Packets kept coming (or the read timed out) but no frame for ``stall_seconds``."""


class _Stopped(Exception):
    """The reader was asked to stop."""


def is_file_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "file"


def _file_path(url: str) -> str:
    return unquote(urlsplit(url).path)


class CameraReader:
    """Reads ``camera`` in a thread of its own until :meth:`stop` or the end of its file.

    ``max_frame_bytes`` bounds each JPEG (a bigger one is dropped with a
    warning, as any source refuses an oversized frame).
    """

    def __init__(
        self,
        camera: Camera,
        *,
        listener: StatusListener,
        max_frame_bytes: int,
        options: ReaderOptions | None = None,
    ) -> None:
        if camera.url is None:
            raise ValueError(f"camera {camera.id} has no url to read")
        self.camera = camera
        self.options = options or reader_options(camera)
        self.is_file = is_file_url(camera.url)
        self._listener = listener
        self._encoder = JpegEncoder(self.options.jpeg_quality)
        self._max_bytes = max_frame_bytes
        self._stop = threading.Event()
        self._slot_lock = threading.Condition()
        self._slot: Frame | None = None
        self._filled_at: float | None = None
        self._paced = not self.is_file or self.options.realtime
        self._decoded = 0
        self._sampled = 0
        self._skipped = 0
        self._dropped = 0
        self._online = False
        self._last_error: str | None = None
        self._finished = False
        self._thread = threading.Thread(
            target=self._run, name=f"detectflow-camera-{camera.id}", daemon=True
        )

    # -- what the flow calls ----------------------------------------------

    def start(self) -> CameraReader:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop reading; with ``timeout``, wait that long for the thread to end."""
        self._stop.set()
        with self._slot_lock:
            self._slot_lock.notify_all()
        if timeout is not None and self._thread.is_alive():
            self._thread.join(timeout)

    def take(self) -> Frame | None:
        """The newest sample not yet taken, if any."""
        with self._slot_lock:
            frame, self._slot = self._slot, None
            if frame is not None:
                self._sampled += 1
                self._slot_lock.notify_all()
            return frame

    def next_sample_at(self) -> float:
        """When (``time.monotonic()``) a sample is next expected in the slot: now if
        one is there, else a period after the last one was ready (samples come
        at the camera's fps, each after its encoding: the phase repeats). A
        file played as fast as the flow takes it refills at once."""
        now = time.monotonic()
        period = 1.0 / self.options.fps
        with self._slot_lock:
            if self._slot is not None:
                return now
            if not self._online or self._filled_at is None:
                return now + period  # connecting or offline: no hurry
            if not self._paced:
                return now
            due = self._filled_at + period
            # Late by more than a period (the stream stalls): look once a period.
            return due if now < due + period else now + period

    @property
    def finished(self) -> bool:
        """The file ended (or the reader stopped) and its last sample was taken."""
        with self._slot_lock:
            return self._finished and self._slot is None

    def counts(self) -> ReaderCounts:
        with self._slot_lock:
            return ReaderCounts(
                decoded=self._decoded,
                sampled=self._sampled,
                skipped=self._skipped,
                dropped=self._dropped,
                online=self._online,
                last_error=self._last_error,
            )

    # -- the thread -------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    ended = self._connect_and_play()
                except _Stopped:
                    break
                except Exception as exc:  # an FFmpeg error, a stall, a bad frame...
                    failures += 1
                    self._failed(self._reason(exc))
                    pause = min(BACKOFF_CAP_SECONDS, BACKOFF_START_SECONDS * 2 ** (failures - 1))
                    self._stop.wait(pause)
                    continue
                failures = 0
                if ended and not (self.is_file and self.options.loop):
                    if not self.is_file:  # a live stream that ends has dropped
                        failures = 1
                        self._failed("the stream ended")
                        self._stop.wait(BACKOFF_START_SECONDS)
                        continue
                    break
        except Exception:  # a bug, not a stream problem: say so and end this camera
            log.exception("camera %s: the reader failed", self.camera.id)
        finally:
            with self._slot_lock:
                self._finished = True
                self._slot_lock.notify_all()

    def _open(self) -> av.container.InputContainer:
        url = self.camera.url
        assert url is not None
        if self.is_file:
            return av.open(_file_path(url), mode="r")
        options: dict[str, str] = {}
        if urlsplit(url).scheme.lower() in ("rtsp", "rtsps"):
            options["rtsp_transport"] = self.options.transport
        # The read timeout makes a silent stream raise instead of blocking forever.
        timeout = (_OPEN_TIMEOUT_SECONDS, self.options.stall_seconds)
        return av.open(url, mode="r", options=options, timeout=timeout)

    def _connect_and_play(self) -> bool:
        """Play one connection (one pass of a file); True when it reached its end."""
        container = self._open()
        try:
            stream = next(iter(container.streams.video), None)
            if stream is None:
                raise InvalidFrameError("no video stream in it")
            return self._play(container, stream)
        finally:
            container.close()

    def _play(self, container: av.container.InputContainer, stream: Any) -> bool:
        sampler = Sampler(self.options.fps)
        clock = StreamClock()
        anchor_wall = utcnow()
        anchor = time.monotonic()
        connection = anchor_wall.isoformat()
        time_base = float(stream.time_base) if stream.time_base else None
        if container.format.name in _UNTIMED_FORMATS and not self.is_file:
            time_base = None  # made-up times: go by arrival instead
        number = 0
        last_frame = anchor
        paced = self._paced
        for frame in container.decode(stream):
            if self._stop.is_set():
                raise _Stopped
            now = time.monotonic()
            if not self.is_file and now - last_frame > self.options.stall_seconds:
                raise _Stalled(f"no frame for {now - last_frame:.1f} s")
            last_frame = now
            at = clock.seconds(frame.pts, time_base, now - anchor)
            with self._slot_lock:
                self._decoded += 1
            if number == 0:
                self._came_online()
            number += 1
            if not sampler.take(at):
                with self._slot_lock:
                    self._skipped += 1
                continue
            if self.is_file and paced:
                # Play at the file's own rate: hold the frame until its time comes.
                delay = anchor + at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    raise _Stopped
            sample = self._sample(
                frame, number - 1, anchor_wall + timedelta(seconds=at), connection
            )
            self._hand_on(sample, wait=not paced)
        return True

    def _sample(self, frame: Any, number: int, at: datetime, connection: str) -> Frame | None:
        image = self._encoder.encode(frame)
        try:
            return make_frame(
                self.camera.id,
                image,
                max_bytes=self._max_bytes,
                frame_id=frame_id_for(self.camera.id, None, f"{connection}/{number}".encode()),
                frame_number=number,
                timestamp=at,
            )
        except InvalidFrameError as exc:
            log.warning("camera %s: frame %d not sent: %s", self.camera.id, number, exc)
            return None

    def _hand_on(self, frame: Frame | None, *, wait: bool) -> None:
        with self._slot_lock:
            if frame is None:
                self._skipped += 1
                return
            while wait and self._slot is not None and not self._stop.is_set():
                self._slot_lock.wait(0.5)
            if self._stop.is_set():
                raise _Stopped
            if self._slot is not None:  # the flow did not take the last one: newest wins
                self._skipped += 1
            self._slot = frame
            self._filled_at = time.monotonic()

    # -- status -------------------------------------------------------------

    def _came_online(self) -> None:
        with self._slot_lock:
            recovered = self._last_error is not None
            self._online = True
            self._last_error = None
        log.info("camera %s: reading %s", self.camera.id, self.camera.shown_url)
        if recovered:
            self._listener.online(self.camera)

    def _failed(self, reason: str) -> None:
        with self._slot_lock:
            first = self._online or self._last_error is None
            repeated = reason == self._last_error
            self._online = False
            self._last_error = reason
            self._dropped += 1
        if first:
            log.warning("camera %s is offline: %s", self.camera.id, reason)
        if first or not repeated:
            self._listener.offline(self.camera, reason, first=first)

    def _reason(self, exc: BaseException) -> str:
        """Why the stream failed, with no credentials: FFmpeg's errors quote the URL."""
        if isinstance(exc, av.ExitError):  # FFmpeg gave up on a read past the timeout
            text = f"stalled: no data for {self.options.stall_seconds:g} s"
        elif isinstance(exc, av.FFmpegError):
            text = exc.strerror or type(exc).__name__
        elif isinstance(exc, _Stalled):
            text = f"stalled: {exc}"
        else:
            text = str(exc) or type(exc).__name__
        url = self.camera.url or ""
        shown = display_url(url)
        text = redact_text(text.replace(url, shown))
        where = Path(_file_path(url)).name if self.is_file else shown
        return f"{text} ({where})"


ReaderFactory = Callable[[Camera], CameraReader]
