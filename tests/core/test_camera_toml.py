"""The fleet file: what export writes, import reads back as it was."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.camera_toml import dump_cameras, expand_env, load_cameras
from detectflow.core.cameras import Camera

_TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=12)
"""Any text a JSON body may hold (NUL is refused at every door: test below)."""
_SCALAR = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_JSON: st.SearchStrategy[Any] = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=12,
)
_CAMERA = st.builds(
    Camera,
    id=st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True),
    name=_TEXT,
    url=st.none() | st.sampled_from(["rtsp://u:p@h:554/s", "file:///clips/a b.mp4", "http://h/x"]),
    enabled=st.booleans(),
    fps=st.floats(min_value=0.01, max_value=60),
    provider=st.none() | _TEXT,
    options=st.dictionaries(_TEXT, _JSON, max_size=4),
)


def _as_file(camera: Camera) -> dict[str, Any]:
    """What a camera's table must read back as."""
    fields: dict[str, Any] = {"id": camera.id, "name": camera.name}
    if camera.url is not None:
        fields["url"] = camera.url
    fields["enabled"] = camera.enabled
    fields["fps"] = camera.fps
    if camera.provider is not None:
        fields["provider"] = camera.provider
    if camera.options:
        fields["options"] = dict(camera.options)
    return fields


@given(cameras=st.lists(_CAMERA, max_size=4))
def test_an_exported_fleet_reads_back_field_for_field(cameras: list[Camera]) -> None:
    text = dump_cameras(cameras, with_secrets=True)
    assert load_cameras(text) == [_as_file(c) for c in cameras]


def test_without_secrets_urls_are_written_as_displayed() -> None:
    camera = Camera("cam-1", url="rtsp://admin:s3cret@10.0.0.5/s?token=abc")
    text = dump_cameras([camera])
    assert "s3cret" not in text and "abc" not in text
    assert load_cameras(text)[0]["url"] == "rtsp://admin:***@10.0.0.5/s?token=***"


def test_null_has_no_place_in_a_fleet_file() -> None:
    with pytest.raises(ValueError, match="no null"):
        dump_cameras([Camera("c", options={"x": None})])


def test_an_empty_file_is_an_empty_fleet() -> None:
    assert load_cameras("") == []
    assert load_cameras(dump_cameras([])) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[cameras]\nid=1", "not TOML"),
        ('[[camera]]\nid = "a"', "unknown top-level key"),
        ('cameras = "a"', "expected \\[\\[cameras\\]\\]"),
        ('[[cameras]]\nid = "a"\n[cameras.options]\nat = 2026-12-02', r"cameras\[0\].options.at"),
        ('[[cameras]]\nid = "a"\nname = "x\\u0000"', r"cameras\[0\].name: has a NUL"),
        (
            '[[cameras]]\nid = "a"\n[cameras.options]\n"k\\u0000" = 1',
            r"cameras\[0\].options \(a key\)",
        ),
    ],
)
def test_a_file_of_another_shape_is_refused_saying_where(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_cameras(text)


def test_expand_env_fills_variables_and_names_the_missing_ones() -> None:
    url = "rtsp://u:${CAM_PW}@h/s?k=${KEY}"
    assert expand_env(url, {"CAM_PW": "p$w", "KEY": "k"}) == "rtsp://u:p$w@h/s?k=k"
    with pytest.raises(ValueError, match="not set: CAM_PW, KEY"):
        expand_env(url, {})
    assert expand_env("rtsp://u:pa$$@h/s", {}) == "rtsp://u:pa$$@h/s"


@pytest.mark.parametrize("key", ["a\n", "a.b", "", "ü", "a b", 'q"'])
def test_keys_that_are_not_bare_are_quoted(key: str) -> None:
    camera = Camera("c", options={key: 1, "t": {key: {key: [1]}}})
    assert load_cameras(dump_cameras([camera]))[0]["options"] == camera.options


def test_the_file_reads_as_a_person_would_write_it() -> None:
    camera = Camera("cam-1", name="Front door", options={"transport": "tcp", "e": {}})
    text = dump_cameras([camera])
    assert '\n[[cameras]]\nid = "cam-1"\nname = "Front door"\n' in text
    assert '\n[cameras.options]\ntransport = "tcp"\ne = {}\n' in text
    assert dump_cameras([Camera("c", options={"m": [{"a": 1}]})]).endswith("m = [{ a = 1 }]\n")
    assert '"\\u001f\\u007f"' in dump_cameras([Camera("c", name="\x1f\x7f")])


def test_what_toml_cannot_hold_is_named() -> None:
    with pytest.raises(ValueError, match="a set has no place"):
        dump_cameras([Camera("c", options={"s": {1}})])
    with pytest.raises(ValueError, match="inf has no place"):
        dump_cameras([Camera("c", options={"f": float("inf")})])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a = 1\nb = 2", r"^unknown top-level key\(s\) a, b; expected \[\[cameras\]\]$"),
        ("cameras = [1]", r"^cameras: expected \[\[cameras\]\] tables$"),
        (
            '[[cameras]]\nid = "a"\n[cameras.options]\nl = [1, [2, 2026-12-02]]',
            r"^cameras\[0\]\.options\.l\[1\]\[1\]: a date or time",
        ),
    ],
)
def test_refusals_say_exactly_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_cameras(text)
