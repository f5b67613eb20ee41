"""The ByteTrack-style tracker: scenes with known answers, and recovery."""

from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectflow.core.ids import track_id
from detectflow.core.tracking import Candidate, Tracker, TrackerConfig
from tests.core.scenes import Walker, walkers

DT = 0.2  # 5 frames a second
T0 = 1_750_000_000.0


def frame(k: int) -> str:
    return f"frame-{k:05d}"


def run(
    tracker: Tracker, walkers: list[Walker], frames: range, hidden=lambda k, i: False, score=0.9
) -> list[list[str | None]]:
    """Feed frames; returns each frame's track ids in walker order (None when hidden)."""
    out = []
    for k in frames:
        t = k * DT
        cands = [
            Candidate(w.corners(t), w.kind, score >= 0.5, i)
            for i, w in enumerate(walkers)
            if not hidden(k, i)
        ]
        update = tracker.update(frame(k), T0 + t, cands)
        ids: list[str | None] = [None] * len(walkers)
        for cand, tid in zip(cands, update.track_ids, strict=True):
            ids[cand.position] = tid
        out.append(ids)
    return out


def test_one_walker_keeps_one_id_derived_from_where_it_was_first_seen():
    tracker = Tracker("cam-1")
    ids = run(tracker, [Walker(0.1, 0.2, vx=0.1)], range(30))
    assert {row[0] for row in ids} == {track_id("cam-1", frame(0), 0)}


def test_a_track_is_tentative_until_min_hits_frames_in_a_row():
    tracker = Tracker("cam-1", TrackerConfig(min_hits=3))
    run(tracker, [Walker(0.1, 0.2)], range(2))
    assert not tracker.tracks[0].confirmed
    run(tracker, [Walker(0.1, 0.2)], range(2, 3))
    assert tracker.tracks[0].confirmed


def test_a_tentative_track_that_misses_a_frame_is_dropped():
    tracker = Tracker("cam-1")
    run(tracker, [Walker(0.1, 0.2)], range(2))
    update = tracker.update(frame(2), T0 + 2 * DT, [])
    assert update.dropped == (track_id("cam-1", frame(0), 0),) and not tracker.tracks


def test_a_walker_unseen_for_a_while_is_found_where_its_velocity_puts_it():
    # 0.05 of the frame per frame with a 0.1-wide box; unseen for 5 frames, it moved
    # 0.25, far past its last box: only the constant-velocity prediction overlaps.
    walker = [Walker(0.0, 0.2, vx=0.25)]
    ids = run(Tracker("cam-1"), walker, range(20), hidden=lambda k, i: 5 <= k < 10)
    assert {row[0] for row in ids} - {None} == {track_id("cam-1", frame(0), 0)}


def test_two_walkers_crossing_keep_their_ids():
    walkers = [Walker(0.05, 0.3, vx=0.15), Walker(0.85, 0.32, vx=-0.15)]
    ids = run(Tracker("cam-1"), walkers, range(40))
    assert {row[0] for row in ids} == {track_id("cam-1", frame(0), 0)}
    assert {row[1] for row in ids} == {track_id("cam-1", frame(0), 1)}


def test_crossing_with_one_hidden_behind_the_other_keeps_both_ids():
    walkers = [Walker(0.05, 0.3, vx=0.15), Walker(0.85, 0.32, vx=-0.15)]
    # Frames 12..16 are where they overlap: the detector sees only the front one.
    ids = run(Tracker("cam-1"), walkers, range(40), hidden=lambda k, i: i == 1 and 12 <= k <= 16)
    assert {row[0] for row in ids} == {track_id("cam-1", frame(0), 0)}
    assert {row[1] for row in ids} - {None} == {track_id("cam-1", frame(0), 1)}


def test_a_lost_track_found_again_within_the_horizon_keeps_its_id():
    tracker = Tracker("cam-1", TrackerConfig(max_lost_seconds=5.0))
    walker = [Walker(0.1, 0.2, vx=0.02)]
    ids = run(tracker, walker, range(30), hidden=lambda k, i: 10 <= k < 20)  # 2 s unseen
    assert {row[0] for row in ids} - {None} == {track_id("cam-1", frame(0), 0)}


def test_a_track_unseen_for_max_lost_seconds_of_frame_time_ends():
    tracker = Tracker("cam-1", TrackerConfig(max_lost_seconds=1.0))
    run(tracker, [Walker(0.1, 0.2)], range(5))
    # Frame time, not wall clock: 0.8 s after the last sighting it is lost, at 1.0 s gone.
    assert tracker.update(frame(9), T0 + 4 * DT + 0.8, []).ended == ()
    assert tracker.tracks[0].lost
    ended = tracker.update(frame(10), T0 + 4 * DT + 1.0, []).ended
    assert ended == (track_id("cam-1", frame(0), 0),) and not tracker.tracks


def test_weak_boxes_keep_a_track_alive_but_never_start_one():
    tracker = Tracker("cam-1", TrackerConfig(max_lost_seconds=0.5))
    walker = Walker(0.1, 0.2, vx=0.05)
    run(tracker, [walker], range(5))
    # Ten weak frames (2 s, four times the lost horizon): still the same track.
    for k in range(5, 15):
        update = tracker.update(
            frame(k), T0 + k * DT, [Candidate(walker.corners(k * DT), "person", False, 0)]
        )
        assert update.track_ids == (track_id("cam-1", frame(0), 0),)
    fresh = Tracker("cam-1")
    assert fresh.update(
        frame(0), T0, [Candidate((0.1, 0.1, 0.2, 0.2), "person", False, 0)]
    ).track_ids == (None,)
    assert not fresh.tracks


def test_boxes_only_match_tracks_of_their_kind():
    tracker = Tracker("cam-1")
    person, face = Walker(0.1, 0.2), Walker(0.1, 0.2, kind="face")
    ids = run(tracker, [person, face], range(10))
    assert len({row[0] for row in ids}) == 1 and len({row[1] for row in ids}) == 1
    assert ids[0][0] != ids[0][1]


def test_frames_must_come_in_frame_time_order():
    tracker = Tracker("cam-1")
    tracker.update(frame(1), T0 + 1.0, [])
    with pytest.raises(ValueError, match="frame-time order"):
        tracker.update(frame(0), T0, [])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_hits": 0}, "min_hits"),
        ({"min_hits": 2.5}, "min_hits"),
        ({"max_lost_seconds": 0}, "max_lost_seconds"),
        ({"match_iou": 0.0}, "match_iou"),
        ({"velocity_smoothing": 1.5}, "velocity_smoothing"),
    ],
)
def test_bad_tracker_config_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrackerConfig(**kwargs)


# -- properties over random scenes ----------------------------------------------------

scenes = st.tuples(
    st.lists(walkers(speed=0.1), min_size=1, max_size=6),
    st.sets(st.tuples(st.integers(0, 29), st.integers(0, 5)), max_size=20),  # hidden
)


@settings(max_examples=50, deadline=None)
@given(scenes)
def test_a_replay_gives_the_same_ids(scene):
    people, hidden = scene
    first = run(Tracker("cam-1"), people, range(30), lambda k, i: (k, i) in hidden)
    again = run(Tracker("cam-1"), people, range(30), lambda k, i: (k, i) in hidden)
    assert first == again


@settings(max_examples=50, deadline=None)
@given(scenes, st.integers(1, 29))
def test_snapshot_and_resume_mid_scene_continue_with_the_same_ids(scene, split):
    people, hidden = scene
    gone = lambda k, i: (k, i) in hidden  # noqa: E731
    straight = run(Tracker("cam-1"), people, range(30), gone)
    tracker = Tracker("cam-1")
    before = run(tracker, people, range(split), gone)
    state = json.loads(json.dumps(tracker.snapshot()))  # plain data, through JSON
    resumed = Tracker.resume(pickle.loads(pickle.dumps(state)))
    after = run(resumed, people, range(split, 30), gone)
    assert before + after == straight
    assert resumed.snapshot() == run_snapshot(people, gone)


def run_snapshot(people, gone):
    tracker = Tracker("cam-1")
    run(tracker, people, range(30), gone)
    return tracker.snapshot()


def test_resume_refuses_a_state_it_cannot_read():
    with pytest.raises(ValueError, match="invalid tracker state"):
        Tracker.resume(
            {**Tracker("c").snapshot(), "tracks": [["t", "person", 7, [0, 0, 1, 1], 0, 0, 0, 0, 1]]}
        )
    with pytest.raises(ValueError, match="invalid tracker state"):
        Tracker.resume({"version": 99})
