"""Frigate's topics and counts from events made by CameraObjects (pure: no broker)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from detectflow.publish.frigate import FrigateTopics, topic_segment
from detectflow.publish.handoff import Handoff
from tests.publish.scene import walk_into_the_dock


def events(**kwargs: object):  # type: ignore[no-untyped-def]
    return [e for r in walk_into_the_dock(**kwargs) for e in r.objects.events]  # type: ignore[union-attr, arg-type]


def test_each_event_is_followed_by_the_counts_it_changed() -> None:
    topics = FrigateTopics("site")
    sent = [
        (m.topic, m.payload.decode() if m.retain else json.loads(m.payload)["type"])
        for r in walk_into_the_dock(walkers=2)  # frame by frame, as the publisher does
        for m in topics.messages(r.objects.events)  # type: ignore[union-attr]
    ]
    assert sent == [
        ("site/events", "new"),
        ("site/events", "new"),
        ("site/cam-1/person", "2"),
        ("site/events", "update"),
        ("site/events", "update"),
        ("site/cam-1/dock/person", "2"),
        ("site/events", "end"),
        ("site/events", "end"),
        ("site/cam-1/person", "0"),
        ("site/cam-1/dock/person", "0"),
    ]


def test_a_count_is_sent_only_when_it_changes_and_retained() -> None:
    topics = FrigateTopics()
    first = events()[0]
    counts = [m for m in topics.messages([first]) if m.retain]
    assert [(m.topic, m.payload) for m in counts] == [("detectflow/cam-1/person", b"1")]
    assert [m for m in topics.messages([first]) if m.retain] == []  # the same again: no change


def test_stale_retained_counts_are_answered_with_ours() -> None:
    topics = FrigateTopics("p")
    assert [(m.topic, m.payload) for m in topics.resync("p/cam-9/car", b"3")] == [
        ("p/cam-9/car", b"0")
    ]
    assert topics.resync("p/cam-9/car", b"0") == []  # agrees now
    assert topics.resync("p/events", b"x") == [] and topics.resync("elsewhere/a/b", b"1") == []


def test_republish_sends_every_count_again() -> None:
    topics = FrigateTopics("p")
    first = events()[0]
    topics.messages([first])
    assert [(m.topic, m.payload) for m in topics.republish()] == [("p/cam-1/person", b"1")]


def test_discovery_config_goes_before_the_first_count_only() -> None:
    topics = FrigateTopics("p/q", discovery="homeassistant")
    out = topics.messages(events())
    configs = [m for m in out if m.topic.startswith("homeassistant/")]
    assert [m.topic for m in configs] == ["homeassistant/sensor/p_q/cam-1_person/config"]
    assert out.index(configs[0]) < [m.topic for m in out].index("p/q/cam-1/person")


@given(st.text())
def test_a_name_is_always_exactly_one_topic_level(name: str) -> None:
    level = topic_segment(name)
    assert level and not set(level) & {"/", "+", "#", "\x00"}
    if name and not set(name) & {"/", "+", "#", "\x00"}:
        assert level == name


def test_the_handoff_never_blocks_and_counts_what_overflowed() -> None:
    overflowed: list[int] = []
    handoff: Handoff[int] = Handoff(3, on_overflow=overflowed.extend)
    assert handoff.offer([1, 2]) == 2
    assert handoff.offer([3, 4, 5]) == 1
    assert handoff.dropped == 2 and overflowed == [4, 5]
    assert handoff.take(0, limit=2) == [1, 2] and handoff.take(0) == [3]
    handoff.close()
    assert handoff.offer([6]) == 0 and handoff.dropped == 3 and handoff.take(0) == []
