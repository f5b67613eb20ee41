"""Objects walking at constant velocity, for the tracking and object tests."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Walker"]


@dataclass(frozen=True)
class Walker:
    """Starts with its box's top-left corner at (x, y) and moves (vx, vy) of the frame
    a second; ``score`` is what the detector says every frame."""

    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    w: float = 0.1
    h: float = 0.3
    label: str = "person"
    kind: str = "person"
    score: float = 0.9

    def corners(self, t: float) -> tuple[float, float, float, float]:
        x, y = self.x + self.vx * t, self.y + self.vy * t
        return (x, y, x + self.w, y + self.h)

    def xywh(self, t: float) -> tuple[float, float, float, float]:
        return (self.x + self.vx * t, self.y + self.vy * t, self.w, self.h)
