"""The import plan: what a fleet file adds, changes, removes, and that it is idempotent."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.camera_sync import COMPARED_FIELDS, CameraChange, SyncPlan, plan_sync
from detectflow.core.cameras import Camera


def test_each_camera_lands_in_one_part_in_the_files_order() -> None:
    stored = [Camera("a", fps=5), Camera("b", url="rtsp://h/s"), Camera("z")]
    wanted = [Camera("c"), Camera("b", url="rtsp://h/t", enabled=False), Camera("a", fps=5)]
    plan = plan_sync(stored, wanted, prune=False)
    assert plan.added == (wanted[0],)
    assert plan.changed == (CameraChange(wanted[1], ("url", "enabled")),)
    assert plan.unchanged == ("a",)
    assert plan.removed == ()
    assert plan.kept == ("z",)
    pruned = plan_sync(stored, wanted, prune=True)
    assert pruned.removed == ("z",) and pruned.kept == ()


def test_timestamps_and_last_error_are_not_configuration() -> None:
    stored = Camera("a", last_error="401")
    plan = plan_sync(
        [stored],
        [replace(stored, last_error=None, updated_at=stored.updated_at.replace(year=2000))],
        prune=False,
    )
    assert plan == SyncPlan(unchanged=("a",))
    assert not plan.changes
    assert COMPARED_FIELDS == ("name", "url", "enabled", "fps", "provider", "options")


def test_a_camera_described_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'a' is described twice"):
        plan_sync([], [Camera("a"), Camera("a", fps=2)], prune=False)


_IDS = st.sampled_from(["a", "b", "c", "d", "e"])
_CAMERA = st.builds(
    Camera,
    id=_IDS,
    name=st.sampled_from(["", "door"]),
    url=st.sampled_from([None, "rtsp://h/1", "rtsp://u:p@h/2"]),
    enabled=st.booleans(),
    fps=st.sampled_from([1.0, 5.0]),
    provider=st.sampled_from([None, "p1"]),
    options=st.sampled_from([{}, {"transport": "tcp"}, {"loop": 1}]),
)
_FLEET = st.lists(_CAMERA, max_size=5, unique_by=lambda c: c.id)


def _apply(stored: list[Camera], plan: SyncPlan) -> dict[str, Camera]:
    """What a store ends up holding (the model the SQL apply_plan must match)."""
    result = {c.id: c for c in stored}
    for camera in plan.added:
        result[camera.id] = camera
    for change in plan.changed:
        result[change.camera.id] = replace(
            result[change.camera.id], **{f: getattr(change.camera, f) for f in change.fields}
        )
    for camera_id in plan.removed:
        del result[camera_id]
    return result


def _config(camera: Camera) -> tuple[object, ...]:
    return tuple(
        dict(camera.options) if f == "options" else getattr(camera, f) for f in COMPARED_FIELDS
    )


@given(stored=_FLEET, wanted=_FLEET, prune=st.booleans())
def test_applying_the_plan_makes_the_store_match_the_file_and_a_second_plan_is_empty(
    stored: list[Camera], wanted: list[Camera], prune: bool
) -> None:
    after = _apply(stored, plan_sync(stored, wanted, prune=prune))
    for camera in wanted:
        assert _config(after[camera.id]) == _config(camera)
    expected_ids = {c.id for c in wanted} | (set() if prune else {c.id for c in stored})
    assert set(after) == expected_ids
    again = plan_sync(list(after.values()), wanted, prune=prune)
    assert not again.changes
    assert set(again.unchanged) == {c.id for c in wanted}
