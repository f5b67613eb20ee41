"""The shared source machinery: backpressure, no-provider waiting, finite ends, fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow import Frame, Settings
from detectflow.core.errors import InvalidFrameError
from detectflow.core.plugins import PluginRegistry
from detectflow.flows.engine import DetectEngine
from detectflow.flows.source_common import (
    Batch,
    SourceOptions,
    SourceReader,
    SourceURLError,
    fallback_frame_id,
    invalid_result,
    optional_fields,
)
from tests.flows.conftest import frames


class ListReader(SourceReader):
    """Hands on a fixed list of frames; None once it is empty."""

    def __init__(self, items: list[Frame], engine: DetectEngine, settings: Settings, **kw: object):
        super().__init__(engine, settings, batch_size=10, **kw)  # type: ignore[arg-type]
        self.items = items
        self.asked: list[int] = []

    def _take(self, granted: int) -> Batch | None:
        self.asked.append(granted)
        if not self.items:
            return None
        batch: Batch = list(self.items[:granted])
        del self.items[:granted]
        return batch


def test_a_reader_takes_no_more_than_the_engine_has_room_for(
    engine: DetectEngine, settings: Settings
) -> None:
    reader = ListReader(frames(5), engine, settings)

    first = reader.next_batch()
    engine.lane().submit([f for f in first if isinstance(f, Frame)])
    second = reader.next_batch()

    assert len(first) == 3  # max_in_flight 2 + queue 1
    assert second == []
    assert reader.asked == [3]  # the full engine was not even asked for more
    assert reader.next_awake() is not None


def test_a_finite_reader_ends_only_after_its_frames_come_back(
    engine: DetectEngine, settings: Settings
) -> None:
    reader = ListReader(frames(2), engine, settings, until_empty=True)
    lane = engine.lane()
    lane.submit([f for f in reader.next_batch() if isinstance(f, Frame)])

    assert reader.next_batch() == []  # nothing left, but two frames are out
    while lane.pending:
        lane.poll()
    with pytest.raises(StopIteration):
        reader.next_batch()


def test_without_a_provider_nothing_is_read(settings: Settings, registry: PluginRegistry) -> None:
    with DetectEngine(settings, lambda: None, registry=registry) as engine:
        waiting = ListReader(frames(2), engine, settings)
        assert waiting.next_batch() == []
        assert waiting.asked == []
        finite = ListReader(frames(2), engine, settings, until_empty=True)
        with pytest.raises(StopIteration):
            finite.next_batch()
        assert len(finite.items) == 2  # left at the source, not failed


def test_invalid_input_keeps_its_camera_and_attributes() -> None:
    result = invalid_result(
        "x" * 200, "not an image", frame_id="f", frame_number=-3, attributes={"k": "v"}
    )
    assert result.error == "invalid frame: not an image"
    assert result.frame.camera_id == "x" * 128
    assert result.frame.frame_number is None
    assert result.frame.attributes == {"k": "v"}
    assert invalid_result("", "why", frame_id="f").frame.camera_id == "unknown"
    assert len(result.events) == 1


def test_fallback_ids_are_stable_and_distinct() -> None:
    assert fallback_frame_id("redis", "k", "1-0") == fallback_frame_id("redis", "k", "1-0")
    assert fallback_frame_id("redis", "k", "1-0") != fallback_frame_id("redis", "k1", "-0")


def test_options_refuse_unknown_names_and_bad_numbers() -> None:
    with pytest.raises(SourceURLError, match="unknown demo source option"):
        SourceOptions("demo", "speed=1", {"fps"})
    options = SourceOptions("demo", "fps=2&fps=3", {"fps"})
    assert options.number("fps", 0.0, float, 0, 10) == 3.0
    with pytest.raises(SourceURLError, match=r"out of range \(0..2\)"):
        options.number("fps", 0.0, float, 0, 2)


@given(
    values=st.dictionaries(
        st.sampled_from(["frame_id", "frame_number", "priority", "timestamp", "other"]),
        st.text(max_size=200),
    )
)
def test_optional_fields_parse_or_refuse_with_a_reason(values: dict[str, str]) -> None:
    try:
        fields = optional_fields(values)
    except InvalidFrameError as exc:
        message = str(exc)
        assert message.startswith(("frame_id must be", "frame_number is not", "priority is not"))
        return
    assert set(fields) <= {"frame_id", "frame_number", "priority", "timestamp"}
    assert all(isinstance(fields[n], int) for n in ("frame_number", "priority") if n in fields)
    assert 1 <= len(fields.get("frame_id", "x")) <= 128
