"""Objects walking at constant velocity, for the tracking and object tests."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

__all__ = ["Walker", "walkers"]


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


def walkers(
    speed: float = 0.2, scores: tuple[float, float] = (0.9, 0.9)
) -> st.SearchStrategy[Walker]:
    """Random walkers, people or cars, at most ``speed`` of the frame a second."""
    return st.builds(
        lambda kind, **fields: Walker(label=kind[0], kind=kind[1], **fields),
        kind=st.sampled_from([("person", "person"), ("car", "vehicle")]),
        x=st.floats(0.0, 0.8),
        y=st.floats(0.0, 0.6),
        vx=st.floats(-speed, speed),
        vy=st.floats(-speed / 2, speed / 2),
        w=st.floats(0.05, 0.2),
        h=st.floats(0.1, 0.4),
        score=st.floats(*scores),
    )
