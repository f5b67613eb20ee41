"""Where the best frame of each tracked object is kept: a small storage interface.

The recorder saves the frame named by ``FrameObjects.best`` (at most one file
per object, replaced as a better frame comes), the server reads it back for
``GET /api/v1/objects/{id}/snapshot.jpg``, and ``maintenance cleanup``
deletes it with its object. :class:`FileSnapshots` keeps them as files under
the data dir; another store (S3-compatible, say) only needs the four methods
of :class:`SnapshotStore`.

Keys derive from the object id alone (a UUID this code made), never from a
camera id a client chose, so no key can name a path outside the store.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from detectflow.core.settings import Settings

__all__ = ["FileSnapshots", "SnapshotStore", "as_jpeg", "snapshot_key", "snapshot_store"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_JPEG_MAGIC = b"\xff\xd8\xff"


def snapshot_key(object_id: str) -> str:
    """``ab/abcdef01-....jpg``: two levels, so no folder holds millions of files."""
    if not _UUID.match(object_id):
        raise ValueError(f"not an object id: {object_id!r}")
    return f"{object_id[:2]}/{object_id}.jpg"


def as_jpeg(image: bytes, quality: int = 90) -> bytes:
    """JPEG bytes of a frame: a JPEG as it came (no re-encoding loss), else converted."""
    if image.startswith(_JPEG_MAGIC):
        return image
    from PIL import Image  # only for PNG/WebP frames

    with Image.open(io.BytesIO(image)) as img:
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=quality)
        return out.getvalue()


class SnapshotStore(Protocol):
    def save(self, key: str, image: bytes) -> None:
        """Store (or replace) the JPEG under ``key``, whole or not at all."""
        ...

    def load(self, key: str) -> bytes | None:
        """The JPEG under ``key``; None when there is none."""
        ...

    def delete(self, keys: Iterable[str]) -> int:
        """Remove these snapshots; how many existed."""
        ...


class FileSnapshots:
    """Snapshots as files under ``root`` (by default ``DATA_DIR/snapshots``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"snapshot key outside the store: {key!r}")
        return path

    def save(self, key: str, image: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".jpg")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(image)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, keys: Iterable[str]) -> int:
        removed = 0
        for key in keys:
            try:
                self._path(key).unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed


def snapshot_store(settings: Settings) -> FileSnapshots:
    """The deployment's snapshot store: ``DATA_DIR/snapshots``."""
    return FileSnapshots(settings.data_dir / "snapshots")
