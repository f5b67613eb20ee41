"""Faces and people found in-process with the detectors OpenCV ships.

Faces: the Haar cascade ``haarcascade_frontalface_default.xml`` from
``cv2.data.haarcascades``. People: the HOG descriptor with
``cv2.HOGDescriptor.getDefaultPeopleDetector()`` (Dalal-Triggs, 64x128
pedestrians). Both come inside the ``opencv-python-headless`` wheel, so
nothing is downloaded at run time; OpenCV 5 dropped them, hence ``<5``.

Confidence. Neither detector gives a probability, but both give a score
whose sign is their decision:

* the cascade's ``levelWeights`` from ``detectMultiScale3(...,
  outputRejectLevels=True)``: the boosted sum of the last stage, which
  boosting theory reads as log-odds;
* HOG's weights: the linear SVM's margin (positive = person).

Each is squashed with the logistic function ``1 / (1 + exp(-score))``, so a
score of 0 (the classifier's own boundary) is 0.5, clear hits approach 1 and
weak ones fall below 0.5 where a provider's ``confidence_threshold`` can cut
them. On scikit-image's ``astronaut.png`` the face scores 5.8 (0.997) and
the cascade's false hits at ``minNeighbors=1`` score -1.5 and -1.1
(0.18, 0.25). HOG only returns windows with a margin >= 0, so its
confidences are >= 0.5.

Boxes are returned as ``RawDetection(units="pixel", box_format="xywh")`` in
the pixels of the image that was sent, and left to detectflow's normalizer.

A cascade classifier keeps per-call state and is not safe to share between
threads, so each thread gets its own (HOG's ``detectMultiScale`` is const,
but it is cheap to keep per thread as well).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import cv2
import cv2.data
import numpy as np
from detectflow import PermanentProviderError, ProviderConfig, RawDetection
from numpy.typing import NDArray

__all__ = [
    "FACE_CASCADE",
    "DetectorSettings",
    "OpenCVDetector",
    "decode_image",
    "squash",
]

FACE_CASCADE = "haarcascade_frontalface_default.xml"
_HOG_WINDOW = (64, 128)  # the default people detector's window: width, height

Image = NDArray[np.uint8]


def squash(score: float) -> float:
    """A detector's score (log-odds-like, 0 = its boundary) as a confidence in [0, 1].

    Written with tanh so that huge scores cannot overflow ``exp``; a NaN score
    carries no evidence and maps to 0.
    """
    if math.isnan(score):
        return 0.0
    return min(1.0, max(0.0, 0.5 * (1.0 + math.tanh(score / 2.0))))


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """How hard the detectors look. Every field but ``faces``, ``people`` and
    ``max_faces`` can be set through a provider config's ``options``."""

    faces: bool = True
    people: bool = True
    max_faces: int = 10
    scale_factor: float = 1.1
    """Cascade pyramid step; smaller finds more faces, slower."""
    min_neighbors: int = 5
    """Cascade hits that must overlap before a face counts; higher = fewer false faces."""
    min_face_size: int = 24
    """Smallest face side in pixels (after ``max_side`` downscaling)."""
    hog_scale: float = 1.05
    """HOG pyramid step."""
    hog_stride: int = 8
    """HOG window stride in pixels; 4 finds more people, about 4x slower."""
    max_side: int = 1280
    """Images whose longest side exceeds this are shrunk before detecting (boxes
    are scaled back). HOG on a 1080p frame costs seconds; 0 turns it off."""

    @classmethod
    def from_config(
        cls, config: ProviderConfig, options: Mapping[str, Any] | None = None
    ) -> DetectorSettings:
        """Settings for a provider config; a bad option is a clear, permanent error.

        ``options`` replaces ``config.options`` when the caller has taken out
        options that are not the detector's (the adapter's ``max_workers``).
        """
        if config.max_faces_per_frame < 0:
            raise PermanentProviderError(
                f"max_faces_per_frame must be >= 0, got {config.max_faces_per_frame!r}"
            )
        base = cls(
            faces=config.enable_face_detection,
            people=config.enable_person_detection,
            max_faces=config.max_faces_per_frame,
        )
        return base.with_options(config.options if options is None else options)

    def with_options(self, options: Mapping[str, Any]) -> DetectorSettings:
        known = {f.name: f for f in fields(self) if f.name not in _NOT_OPTIONS}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise PermanentProviderError(
                f"unknown opencv option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        changes: dict[str, Any] = {}
        for name, value in options.items():
            changes[name] = _check_option(name, value, default=getattr(self, name))
        return replace(self, **changes)


_NOT_OPTIONS = frozenset({"faces", "people", "max_faces"})
_FLOAT_ABOVE_ONE = frozenset({"scale_factor", "hog_scale"})
_MINIMUM = {"min_neighbors": 0, "min_face_size": 1, "hog_stride": 1, "max_side": 0}


def _check_option(name: str, value: Any, *, default: Any) -> Any:
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PermanentProviderError(f"opencv option {name} must be a number, got {value!r}")
        number = float(value)
        if name in _FLOAT_ABOVE_ONE and not (math.isfinite(number) and 1.0 < number <= 2.0):
            raise PermanentProviderError(
                f"opencv option {name} must be > 1 and <= 2, got {value!r}"
            )
        return number
    if isinstance(value, bool) or not isinstance(value, int):
        raise PermanentProviderError(f"opencv option {name} must be an integer, got {value!r}")
    if value < _MINIMUM[name]:
        raise PermanentProviderError(
            f"opencv option {name} must be >= {_MINIMUM[name]}, got {value!r}"
        )
    return value


def decode_image(image: bytes) -> Image:
    """The image as a BGR array; anything OpenCV cannot decode is permanent."""
    if not image:
        raise PermanentProviderError("image is empty")
    try:
        decoded = cv2.imdecode(np.frombuffer(image, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise PermanentProviderError(
            f"OpenCV cannot decode the image: {_first_line(exc)}"
        ) from None
    if decoded is None or decoded.size == 0:
        raise PermanentProviderError(
            f"OpenCV cannot decode the image ({len(image)} bytes, not a supported format)"
        )
    return np.asarray(decoded, dtype=np.uint8)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


class OpenCVDetector:
    """Detect faces and people in encoded images; safe to call from many threads."""

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self._local = threading.local()
        if self.settings.faces:
            self._cascade()  # fail now, not on the first frame, if the file is missing

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade: cv2.CascadeClassifier | None = getattr(self._local, "cascade", None)
        if cascade is None:
            path = cv2.data.haarcascades + FACE_CASCADE
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise PermanentProviderError(f"OpenCV could not load its face cascade {path}")
            self._local.cascade = cascade
        return cascade

    def _hog(self) -> cv2.HOGDescriptor:
        hog: cv2.HOGDescriptor | None = getattr(self._local, "hog", None)
        if hog is None:
            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32))
            self._local.hog = hog
        return hog

    def detect(self, image: bytes) -> list[RawDetection]:
        """Decode ``image`` and detect; boxes are in the pixels of ``image``."""
        return self.detect_array(decode_image(image))

    def detect_array(self, bgr: Image) -> list[RawDetection]:
        settings = self.settings
        height, width = bgr.shape[:2]
        scale = 1.0
        longest = max(height, width)
        if settings.max_side and longest > settings.max_side:
            scale = settings.max_side / longest
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            bgr = np.asarray(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        found: list[RawDetection] = []
        try:
            if settings.faces:
                found += self._faces(bgr, scale)
            if settings.people:
                found += self._people(bgr, scale)
        except cv2.error as exc:
            raise PermanentProviderError(
                f"OpenCV failed on the image: {_first_line(exc)}"
            ) from None
        return found

    def _faces(self, bgr: Image, scale: float) -> list[RawDetection]:
        settings = self.settings
        if settings.max_faces == 0:
            return []
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        size = settings.min_face_size
        rects, _levels, weights = self._cascade().detectMultiScale3(
            gray,
            scaleFactor=settings.scale_factor,
            minNeighbors=settings.min_neighbors,
            minSize=(size, size),
            outputRejectLevels=True,
        )
        faces = [
            _raw("face", squash(float(w)), rect, scale)
            for rect, w in zip(_rows(rects), _flat(weights), strict=True)
        ]
        faces.sort(key=lambda d: d.confidence, reverse=True)
        return faces[: settings.max_faces]

    def _people(self, bgr: Image, scale: float) -> list[RawDetection]:
        height, width = bgr.shape[:2]
        if width < _HOG_WINDOW[0] or height < _HOG_WINDOW[1]:
            return []  # smaller than one detection window: no person can fit
        stride = self.settings.hog_stride
        rects, weights = self._hog().detectMultiScale(
            bgr, winStride=(stride, stride), padding=(8, 8), scale=self.settings.hog_scale
        )
        return [
            _raw("person", squash(float(w)), rect, scale)
            for rect, w in zip(_rows(rects), _flat(weights), strict=True)
        ]


def _rows(rects: Any) -> list[tuple[float, float, float, float]]:
    array = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    return [(float(x), float(y), float(w), float(h)) for x, y, w, h in array]


def _flat(weights: Any) -> list[float]:
    return [float(w) for w in np.asarray(weights, dtype=np.float64).reshape(-1)]


def _raw(
    label: str, confidence: float, rect: tuple[float, float, float, float], scale: float
) -> RawDetection:
    x, y, w, h = (v / scale for v in rect)
    return RawDetection(label, confidence, (x, y, w, h), box_format="xywh", units="pixel")
