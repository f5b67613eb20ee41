"""Video sources: RTSP, MJPEG over HTTP, video files, and the cameras table.

``--source rtsp://host/stream``, ``rtsps://...``, ``http(s)://host/video.mjpg``
and ``file:///path/clip.mp4`` read one camera (id from ``--camera-id``, else
the URL's ``camera_id`` option, else the file's stem or the host);
``--source cameras`` reads every enabled camera of the cameras table and
follows its changes. Each camera is decoded by its own reader thread
(:mod:`detectflow.video.reader`), sampled at its ``fps``, newest frame
winning; a worker hands on whatever samples are ready, as many as the
detect engine has room for.

Reader options go in the URL: a file's query (``file:///clip.mp4?fps=5&loop=1``),
a stream's fragment, which is never sent to the camera
(``rtsp://cam/stream?channel=1#fps=2&transport=udp``): ``fps``, ``realtime``,
``loop``, ``stall_seconds``, ``jpeg_quality``, ``transport``, ``camera_id``.

A camera going offline (with the reason) and coming back are events
(``camera_offline``, ``camera_online``) written by the flow's event
recorder, and the reason is reported as the camera's ``last_error``. Cameras
are spread over every worker of a cluster by a hash of their id.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from detectflow.core.cameras import DEFAULT_FPS, MAX_FPS, Camera, check_camera_id, display_url
from detectflow.core.hookspecs import hookimpl
from detectflow.core.ids import new_id
from detectflow.core.models import DetectionEvent, EventType, Severity
from detectflow.core.settings import Settings
from detectflow.flows.dataflow import ReaderSource
from detectflow.flows.source_common import Batch, SourceOptions, SourceReader, SourceURLError
from detectflow.store.repository import Database
from detectflow.video.fleet import REFRESH_SECONDS, CameraFleet
from detectflow.video.options import READER_OPTIONS, reader_options

if TYPE_CHECKING:
    from detectflow.flows.engine import DetectEngine
    from detectflow.flows.metrics import FlowMetrics
    from detectflow.video.counts import ReaderCounts
    from detectflow.video.reader import CameraReader

__all__ = [
    "IDLE_SECONDS",
    "POLL_SECONDS",
    "STREAM_SCHEMES",
    "CameraEvents",
    "CameraLoader",
    "ErrorReporter",
    "VideoPartition",
    "VideoSource",
    "cameras_source_factory",
    "detectflow_frame_sources",
    "parse_video_url",
    "table_cameras",
    "table_error_reporter",
    "video_source_factory",
]

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
POLL_SECONDS = 0.003
"""How soon a worker looks again when a sample is due but not there yet: at
most this much is added to a frame's capture-to-stored latency. Between
samples it sleeps until the next is due (:meth:`CameraReader.next_sample_at`):
polling every 10 ms instead cost 15 ms of CPU per camera-second with 4
cameras at 5 fps (bench/video.py), as much as decoding a flat 720p stream."""
IDLE_SECONDS = 0.1
"""The longest a worker sleeps (no cameras, or all far from due): how late it
sees a stop, a camera list refresh or a camera's first frame."""

CameraLoader = Callable[[], Sequence[Camera]]
ErrorReporter = Callable[[str, str | None], None]
"""``report_error(camera_id, reason)``: the camera's ``last_error``; None clears it."""

_SOURCE_OPTIONS = {*READER_OPTIONS, "fps", "camera_id"}
_NOT_ID = re.compile(r"[^A-Za-z0-9_.:-]+")


class EventRecorder(Protocol):
    """Where the flow's events that are no frame's outcome go
    (:class:`detectflow.store.breakers.BreakerRecorder`)."""

    def record_events(self, events: Sequence[DetectionEvent]) -> None: ...


# -- the cameras table (detectflow.store.cameras) ---------------------------------------


def table_cameras(database: object) -> CameraLoader:
    """The enabled cameras of the table, for ``--source cameras``, read again every
    ``refresh_seconds`` (a reader fault keeps the current list: see CameraFleet)."""
    if not isinstance(database, Database):
        raise SourceURLError("--source cameras reads the cameras table: it needs the database")
    return database.list_enabled_cameras


def table_error_reporter(database: object) -> ErrorReporter:
    """Records a camera's ``last_error`` in the table (without a database, the reason
    is in the ``camera_offline`` event and the log only)."""

    def report(camera_id: str, reason: str | None) -> None:
        if isinstance(database, Database):
            database.set_camera_last_error(camera_id, reason)
        else:
            log.debug("camera %s last_error: %s", camera_id, reason)

    return report


# -------------------------------------------------------------------------------------


class CameraEvents:
    """Turns a reader's status into events and ``last_error``; never raises into the reader."""

    def __init__(self, events: EventRecorder | None, report_error: ErrorReporter) -> None:
        self._events = events
        self._report = report_error

    def offline(self, camera: Camera, reason: str, *, first: bool) -> None:
        self._report_quietly(camera.id, reason)
        if first:
            self._record(
                camera,
                EventType.CAMERA_OFFLINE,
                Severity.WARNING,
                f"camera {camera.id} is offline: {reason}",
                "reconnecting",
            )

    def online(self, camera: Camera) -> None:
        self._report_quietly(camera.id, None)
        self._record(
            camera,
            EventType.CAMERA_ONLINE,
            Severity.INFO,
            f"camera {camera.id} is online again ({camera.shown_url})",
            None,
        )

    def refused(self, camera: Camera, reason: str) -> None:
        """Settings the reader cannot use: not retried until they change."""
        self.offline(camera, f"not read: {reason}", first=True)

    def _record(
        self, camera: Camera, kind: EventType, severity: Severity, message: str, action: str | None
    ) -> None:
        if self._events is None:
            return
        event = DetectionEvent(
            id=new_id(),
            camera_id=camera.id,
            event_type=kind,
            severity=severity,
            message=message,
            action_taken=action,
        )
        try:
            self._events.record_events([event])
        except Exception:
            log.exception("recording the %s event of camera %s failed", kind, camera.id)

    def _report_quietly(self, camera_id: str, reason: str | None) -> None:
        try:
            self._report(camera_id, reason)
        except Exception:
            log.exception("recording the last error of camera %s failed", camera_id)


class VideoPartition(SourceReader):
    """One worker's cameras: hands on their ready samples, round robin."""

    source_name = "video"

    def __init__(
        self,
        fleet: CameraFleet,
        engine: DetectEngine,
        settings: Settings,
        *,
        finite: bool,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(engine, settings, batch_size=64, until_empty=finite, stop=stop)
        self.fleet = fleet
        self._turn = 0

    def _start(self) -> None:
        self.fleet.refresh(force=True)

    def _take(self, granted: int) -> Batch | None:
        self.fleet.refresh()
        readers = list(self.fleet.readers())
        batch: Batch = []
        if readers:
            # Start with a different camera each time, so none waits behind the rest.
            self._turn = (self._turn + 1) % len(readers)
            for reader in readers[self._turn :] + readers[: self._turn]:
                if len(batch) == granted:
                    break
                frame = reader.take()
                if frame is not None:
                    batch.append(frame)
        if not batch and self.until_empty and self.fleet.active == 0:
            return None
        if len(batch) < granted:
            now = time.monotonic()
            due = min((r.next_sample_at() for r in readers), default=now + IDLE_SECONDS)
            self._sleep(min(IDLE_SECONDS, max(POLL_SECONDS, due - now)))
        return batch

    def _begin_drain(self) -> None:
        self.fleet.close(timeout=0.0)

    def close(self) -> None:
        self.fleet.close()


class VideoSource(ReaderSource[Any]):
    """The Bytewax source; :meth:`counts` gives each camera's decoded/sampled/skipped,
    :meth:`reading` the cameras read now."""

    def __init__(
        self,
        load_cameras: CameraLoader,
        engine: DetectEngine,
        settings: Settings,
        *,
        finite: bool,
        listener: CameraEvents,
        stop: threading.Event | None = None,
        refresh_seconds: float | None = None,
    ) -> None:
        if importlib.util.find_spec("av") is None:
            raise SourceURLError("the video sources need PyAV: pip install 'detectflow[video]'")
        self._fleets: list[CameraFleet] = []
        self._fleets_lock = threading.Lock()

        def make_reader(camera: Camera) -> CameraReader:
            from detectflow.video.reader import CameraReader

            return CameraReader(camera, listener=listener, max_frame_bytes=settings.max_frame_bytes)

        def build(worker_index: int, worker_count: int) -> VideoPartition:
            fleet = CameraFleet(
                load_cameras,
                make_reader,
                worker_index=worker_index,
                worker_count=worker_count,
                on_refused=listener.refused,
                refresh_seconds=refresh_seconds or REFRESH_SECONDS,
            )
            with self._fleets_lock:
                self._fleets.append(fleet)
            return VideoPartition(fleet, engine, settings, finite=finite, stop=stop)

        super().__init__(build, close=self._log_counts)

    def counts(self) -> dict[str, ReaderCounts]:
        with self._fleets_lock:
            fleets = list(self._fleets)
        found: dict[str, ReaderCounts] = {}
        for fleet in fleets:
            found.update(fleet.counts())
        return found

    def reading(self) -> set[str]:
        """The cameras this source reads now (running readers, any worker)."""
        with self._fleets_lock:
            fleets = list(self._fleets)
        return set().union(*(fleet.reading() for fleet in fleets))

    def _log_counts(self) -> None:
        for camera_id, c in sorted(self.counts().items()):
            log.info(
                "camera %s: %d decoded, %d sampled, %d skipped, %d dropped",
                camera_id,
                c.decoded,
                c.sampled,
                c.skipped,
                c.dropped,
            )


def _default_camera_id(url: str) -> str:
    parts = urlsplit(url)
    name = Path(unquote(parts.path)).stem if parts.scheme == "file" else parts.hostname or ""
    return _NOT_ID.sub("-", name).strip("-")[:128] or "camera"


def parse_video_url(url: str, camera_id: str | None = None) -> Camera:
    """One camera from a ``--source`` URL; :class:`SourceURLError` saying what is wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise SourceURLError(f"file source URL must name a local file: {url!r}")
        options = SourceOptions("video", parts.query, _SOURCE_OPTIONS)
        raw = parts.query
        stream_url = urlunsplit(("file", "", parts.path, "", ""))
    elif scheme in STREAM_SCHEMES:
        if not parts.hostname:
            raise SourceURLError(f"video source URL needs a host: {display_url(url)!r}")
        options = SourceOptions("video", parts.fragment, _SOURCE_OPTIONS)
        raw = parts.fragment
        stream_url = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
    else:
        raise SourceURLError(f"not a video source URL: {display_url(url)!r}")
    fps = options.number("fps", DEFAULT_FPS, float, 0.001, MAX_FPS)
    given = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
    chosen = camera_id or given.pop("camera_id", None) or _default_camera_id(url)
    given.pop("camera_id", None)
    given.pop("fps", None)
    try:
        camera = Camera(id=check_camera_id(chosen), url=stream_url, fps=fps, options=given)
        reader_options(camera)
    except ValueError as exc:
        raise SourceURLError(f"video source: {exc}") from None
    return camera


def _listener(
    database: object | None,
    events: EventRecorder | None,
    report_error: ErrorReporter | None,
) -> CameraEvents:
    if report_error is None:
        report_error = table_error_reporter(database)
    if events is None and database is not None and hasattr(database, "record_events"):
        events = database  # a flow without a recorder: the event log only
    return CameraEvents(events, report_error)


def video_source_factory(
    url: str,
    settings: Settings,
    *,
    engine: DetectEngine,
    database: object | None = None,
    camera_id: str | None = None,
    until_empty: bool = False,
    stop: threading.Event | None = None,
    events: EventRecorder | None = None,
    report_error: ErrorReporter | None = None,
    metrics: FlowMetrics | None = None,
) -> VideoSource:
    """One camera from a URL. A file without ``loop=1`` is finite: the run ends
    with it, as a folder replay does; a stream runs until stopped."""
    camera = parse_video_url(url, camera_id)
    finite = until_empty or (camera.url is not None and camera.url.startswith("file:"))
    if finite and reader_options(camera).loop and not until_empty:
        finite = False
    source = VideoSource(
        lambda: (camera,),
        engine,
        settings,
        finite=finite,
        listener=_listener(database, events, report_error),
        stop=stop,
    )
    if metrics is not None:
        metrics.watch_readers(source.counts)
    return source


def cameras_source_factory(
    url: str,
    settings: Settings,
    *,
    engine: DetectEngine,
    database: object | None = None,
    until_empty: bool = False,
    stop: threading.Event | None = None,
    events: EventRecorder | None = None,
    load_cameras: CameraLoader | None = None,
    report_error: ErrorReporter | None = None,
    refresh_seconds: float | None = None,
    metrics: FlowMetrics | None = None,
) -> VideoSource:
    """Every enabled camera with a URL, followed as the list changes; with
    ``until_empty`` the run ends once no camera has anything left to read."""
    if urlsplit(url).query or url.strip().rstrip(":/") != "cameras":
        raise SourceURLError(f"the cameras source takes no options: {url!r}")
    source = VideoSource(
        load_cameras or table_cameras(database),
        engine,
        settings,
        finite=until_empty,
        listener=_listener(database, events, report_error),
        stop=stop,
        refresh_seconds=refresh_seconds,
    )
    if metrics is not None:
        metrics.watch_readers(source.counts)
    return source


@hookimpl
def detectflow_frame_sources() -> Mapping[str, Callable[..., Any]]:
    # file:// belongs to the folder source, which hands a single file to
    # video_source_factory (one scheme, one factory).
    sources: dict[str, Callable[..., Any]] = dict.fromkeys(STREAM_SCHEMES, video_source_factory)
    sources["cameras"] = cameras_source_factory
    return sources
