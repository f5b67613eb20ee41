"""The image-folder source for replays (``--source file:///path/to/folder?fps=10``).

(A ``file://`` URL naming a single file is a video: :mod:`detectflow.flows.source_video`.)

Each sub-folder is a camera (its name is the camera id) and its ``.jpg``,
``.jpeg``, ``.png`` and ``.webp`` files are that camera's frames in name
order; images directly in the folder belong to a camera named after the
folder itself, so ``file:///data/cam-1`` replays one camera. Deeper
folders and other files are not frames; they are counted in a log line.

``fps`` paces each camera (``0``: as fast as the provider keeps up); a
camera that falls behind its schedule carries on from now instead of
bursting to catch up. ``loop=1`` replays forever, ``loop=0`` (the default)
ends after one pass, and the flow ends once every frame has come back.
``frame_number`` is the file's index plus the pass number times the number
of files, so every pass has its own frame ids (ids derive from camera and
frame number, which also makes a rerun of the same replay idempotent).

A file that is not an image, too big (``DETECTFLOW_MAX_FRAME_BYTES``) or
unreadable, or a folder name that is no valid camera id, gives a failed
result with the reason. Cameras are spread over workers: camera ``i`` in
name order goes to worker ``i % workers``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import make_frame
from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, FrameResult
from detectflow.core.settings import Settings
from detectflow.flows.source_common import (
    Batch,
    SourceOptions,
    SourceReader,
    SourceURLError,
    fallback_frame_id,
    invalid_result,
)

if TYPE_CHECKING:
    from detectflow.flows.engine import DetectEngine

__all__ = [
    "IMAGE_SUFFIXES",
    "CameraFiles",
    "FileSourceOptions",
    "FolderReader",
    "detectflow_frame_sources",
    "file_source_factory",
    "file_to_frame",
    "list_cameras",
    "parse_file_source_url",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
_OPTIONS = {"fps", "loop", "count"}


@dataclass(frozen=True, slots=True)
class FileSourceOptions:
    folder: Path
    fps: float
    loop: bool
    count: int


def parse_file_source_url(url: str, settings: Settings) -> FileSourceOptions:
    """``file:///absolute/folder`` or ``file:relative/folder``; ``fps``, ``loop``, ``count``."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise SourceURLError(f"not a file source URL: {url!r}")
    if parts.netloc not in ("", "localhost"):
        raise SourceURLError(f"file source URL must name a local folder: {url!r}")
    path = unquote(parts.path)
    if not path:
        raise SourceURLError(f"file source URL has no folder: {url!r}")
    options = SourceOptions("file", parts.query, _OPTIONS)
    loop = options.text("loop", "0")
    if loop not in ("0", "1"):
        raise SourceURLError(f"file source option loop must be 0 or 1: {loop!r}")
    return FileSourceOptions(
        folder=Path(path),
        fps=options.number("fps", 0.0, float, 0.0, 10_000.0),
        loop=loop == "1",
        count=options.number("count", settings.batch_size, int, 1, 100_000),
    )


@dataclass(frozen=True, slots=True)
class CameraFiles:
    camera_id: str
    files: tuple[Path, ...]


def _images(folder: Path) -> tuple[list[Path], int]:
    images: list[Path] = []
    other = 0
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            images.append(entry)
        elif not entry.is_dir():
            other += 1
    return images, other


def list_cameras(folder: Path) -> list[CameraFiles]:
    """The folder's cameras in name order; raises ``SourceURLError`` if it is no folder."""
    if not folder.is_dir():
        raise SourceURLError(f"file source folder does not exist: {str(folder)!r}")
    cameras: list[CameraFiles] = []
    top, ignored = _images(folder)
    if top:
        cameras.append(CameraFiles(folder.resolve().name, tuple(top)))
    for sub in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name):
        files, other = _images(sub)
        ignored += other + sum(1 for p in sub.iterdir() if p.is_dir())
        if files:
            cameras.append(CameraFiles(sub.name, tuple(files)))
    if ignored:
        log.info("file source: %d entr(ies) under %s are not frames", ignored, folder)
    if not cameras:
        log.warning("file source: no images under %s", folder)
    return cameras


def file_to_frame(
    camera_id: str, path: Path, frame_number: int, *, max_bytes: int
) -> Frame | FrameResult:
    """One image file as a validated frame, or a failed result saying what is wrong."""
    try:
        size = path.stat().st_size
        if size > max_bytes:  # refuse before reading a huge file into memory
            raise InvalidFrameError(f"frame is {size} bytes; the limit is {max_bytes}")
        image = path.read_bytes()
        return make_frame(camera_id, image, max_bytes=max_bytes, frame_number=frame_number)
    except (InvalidFrameError, OSError) as exc:
        reason = str(exc) if isinstance(exc, InvalidFrameError) else f"cannot read {path}: {exc}"
        return invalid_result(
            camera_id,
            f"{path.name}: {reason}",
            frame_id=fallback_frame_id("file", camera_id, str(frame_number)),
            frame_number=frame_number,
        )


class _Camera:
    """Where one camera's replay stands: next file, pass, and when it is due."""

    def __init__(self, files: CameraFiles, start: float) -> None:
        self.camera_id = files.camera_id
        self.files = files.files
        self.index = 0
        self.passes = 0
        self.due = start

    def frame_number(self) -> int:
        return self.passes * len(self.files) + self.index

    def advance(self, loop: bool) -> bool:
        """Move to the next file; False once a single pass is over."""
        self.index += 1
        if self.index == len(self.files):
            if not loop:
                return False
            self.index = 0
            self.passes += 1
        return True


class FolderReader(SourceReader):
    """One worker's cameras, each paced by ``fps``."""

    source_name = "file"

    def __init__(
        self,
        cameras: list[CameraFiles],
        options: FileSourceOptions,
        engine: DetectEngine,
        settings: Settings,
        *,
        until_empty: bool = False,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            engine, settings, batch_size=options.count, until_empty=until_empty, stop=stop
        )
        self.options = options
        self._clock = clock
        self._period = 1.0 / options.fps if options.fps > 0 else 0.0
        start = clock()
        self._cameras = [_Camera(c, start) for c in cameras]

    def _take(self, granted: int) -> Batch | None:
        if not self._cameras:
            return None
        now = self._clock()
        batch: Batch = []
        # Round-robin over the due cameras, so one camera cannot starve the rest.
        while len(batch) < granted:
            due = [c for c in self._cameras if c.due <= now]
            if not due:
                break
            for camera in due:
                if len(batch) == granted:
                    break
                batch.append(self._emit(camera, now))
            if not self._cameras:
                break
        if not self._cameras:
            return batch or None
        if len(batch) < granted:
            self._sleep(min(c.due for c in self._cameras) - now)
        return batch

    def _emit(self, camera: _Camera, now: float) -> Frame | FrameResult:
        item = file_to_frame(
            camera.camera_id,
            camera.files[camera.index],
            camera.frame_number(),
            max_bytes=self.settings.max_frame_bytes,
        )
        if not camera.advance(self.options.loop):
            self._cameras.remove(camera)
        # Keep the schedule (no drift), unless already behind it: then go on
        # from now rather than burst to catch up.
        following = camera.due + self._period
        camera.due = following if following > now else now + self._period
        return item


def file_source_factory(
    url: str,
    settings: Settings,
    *,
    engine: DetectEngine,
    until_empty: bool = False,
    stop: threading.Event | None = None,
    database: object | None = None,
    camera_id: str | None = None,
    events: Any = None,
    metrics: Any = None,
) -> Any:
    """Build the source for ``url``; a missing folder is refused at once.

    A replay is finite without ``loop=1``, whatever ``until_empty`` says:
    the flow ends once every file has been processed. A URL naming a single
    file is a video (``file:///clip.mp4``): the video source reads it (the
    other arguments are its context).
    """
    from detectflow.flows.dataflow import ReaderSource

    parts = urlsplit(url)
    if parts.scheme == "file" and Path(unquote(parts.path)).is_file():
        from detectflow.flows.source_video import video_source_factory

        return video_source_factory(
            url,
            settings,
            engine=engine,
            until_empty=until_empty,
            stop=stop,
            database=database,
            camera_id=camera_id,
            events=events,
            metrics=metrics,
        )
    options = parse_file_source_url(url, settings)
    cameras = list_cameras(options.folder)
    finite = until_empty or not options.loop

    def build(worker_index: int, worker_count: int) -> FolderReader:
        mine = [c for i, c in enumerate(cameras) if i % worker_count == worker_index]
        return FolderReader(mine, options, engine, settings, until_empty=finite, stop=stop)

    return ReaderSource(build)


@hookimpl
def detectflow_frame_sources() -> dict[str, Callable[..., Any]]:
    return {"file": file_source_factory}
