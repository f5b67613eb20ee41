"""The simulated provider's answers: boxes derived from the image bytes, faults on request.

One :class:`SimulatedHandler` serves every wire (HTTP, gRPC, MQTT), so the
same bytes get the same boxes whatever the protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass

from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.core.models import Frame, RawDetection

LABELS = ("person", "face", "car", "truck", "bicycle", "dog")
PROTOCOLS = ("http", "grpc", "mqtt")
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883/detectflow/simulator/detect"


@dataclass(frozen=True, slots=True)
class SimulatedDetection:
    """One synthetic box in integer pixels of the image."""

    label: str
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int

    def fractions(self, width: int, height: int) -> list[float]:
        return [self.x_min / width, self.y_min / height, self.x_max / width, self.y_max / height]


def simulate_detections(image: bytes, width: int, height: int) -> list[SimulatedDetection]:
    """The simulator's answer for ``image``: a pure function of its bytes and size."""
    if width < 1 or height < 1:
        raise ValueError("width and height must be >= 1")
    rng = random.Random(hashlib.sha256(image).digest())
    count = rng.choice((1, 1, 2, 2, 3))
    found = []
    for index in range(count):
        label = rng.choice(LABELS)
        confidence = round(rng.uniform(0.6 if index == 0 else 0.3, 0.99), 4)
        box_w = rng.randint(max(1, width // 10), max(1, width // 2))
        box_h = rng.randint(max(1, height // 10), max(1, height // 2))
        x0 = rng.randint(0, width - box_w)
        y0 = rng.randint(0, height - box_h)
        found.append(SimulatedDetection(label, confidence, x0, y0, x0 + box_w, y0 + box_h))
    return found


@dataclass
class SimulatorStats:
    """Counts of detect requests by outcome (``requests`` is their sum)."""

    requests: int = 0
    answered: int = 0
    errors: int = 0
    timeouts: int = 0
    malformed: int = 0
    failed_first: int = 0
    unauthorized: int = 0
    bad_requests: int = 0


def check_rates(error_rate: float, timeout_rate: float, malformed_rate: float) -> None:
    for name, rate in (
        ("error_rate", error_rate),
        ("timeout_rate", timeout_rate),
        ("malformed_rate", malformed_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {rate!r}")
    if error_rate + timeout_rate + malformed_rate > 1.0:
        raise ValueError("error_rate + timeout_rate + malformed_rate must not exceed 1")


class SimulatedHandler:
    """The simulator's answers and faults as a detect function, for gRPC and MQTT.

    ``await handler(frame)`` returns what ``POST /detect`` would (boxes as
    fractions, ``xyxy``) or raises :class:`TransientProviderError` (status
    503) for a simulated error, after hanging for a simulated timeout, or
    for one of the first ``fail_first`` tries of an image.
    """

    def __init__(
        self,
        *,
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        fail_first: int = 0,
        seed: int = 0,
        hang_seconds: float = 300.0,
    ) -> None:
        check_rates(error_rate, timeout_rate, 0.0)
        if fail_first < 0 or hang_seconds < 0:
            raise ValueError("fail_first and hang_seconds must be >= 0")
        self.error_rate = error_rate
        self.timeout_rate = timeout_rate
        self.fail_first = fail_first
        self.hang_seconds = hang_seconds
        self.stats = SimulatorStats()
        self._rng = random.Random(seed)
        self._seen: dict[bytes, int] = {}

    async def __call__(self, frame: Frame) -> list[RawDetection]:
        self.stats.requests += 1
        width, height = frame.width, frame.height
        if not width or not height:
            self.stats.bad_requests += 1
            raise PermanentProviderError("the image's width and height cannot be read", status=400)
        if self.fail_first:
            key = hashlib.sha256(frame.image).digest()
            seen = self._seen.get(key, 0)
            if seen < self.fail_first:
                self._seen[key] = seen + 1
                self.stats.failed_first += 1
                message = f"simulated failure {seen + 1} of {self.fail_first}"
                raise TransientProviderError(message, status=503)
        draw = self._rng.random()
        if draw < self.error_rate:
            self.stats.errors += 1
            raise TransientProviderError("simulated provider error", status=503)
        if draw - self.error_rate < self.timeout_rate:
            self.stats.timeouts += 1
            await asyncio.sleep(self.hang_seconds)
            raise TransientProviderError("simulated timeout ended", status=503)
        self.stats.answered += 1
        return [
            RawDetection(d.label, d.confidence, _box(d.fractions(width, height)))
            for d in simulate_detections(frame.image, width, height)
        ]


def _box(values: list[float]) -> tuple[float, float, float, float]:
    return (values[0], values[1], values[2], values[3])
