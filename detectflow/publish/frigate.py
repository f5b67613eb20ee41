"""Object events as Frigate's MQTT messages, so its users' automations carry over.

Pure: events in, ``(topic, payload, retain)`` out. Topics under ``<prefix>``:

- ``<prefix>/events``: ``{"type": "new"|"update"|"end", "before", "after"}``;
- ``<prefix>/<camera>/<label>``: retained count of that label's objects in
  progress on the camera; ``<prefix>/<camera>/<zone>/<label>`` the same for
  those in a zone now; published when the count changes;
- ``<prefix>/available``: ``online`` / ``offline`` (the last will);
- with discovery, ``<discovery>/sensor/<prefix>/<camera>_<label>/config``:
  a Home Assistant sensor for each camera/label count, sent before its first
  count.

A retained count left by a run that was killed with objects in progress
would claim them forever, so counts seen retained on the broker at start
are answered with this run's own (:meth:`FrigateTopics.resync`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from detectflow.core.object_events import OBJECT_ENDED, OBJECT_STARTED, OBJECT_UPDATED, ObjectEvent

__all__ = ["EVENT_TYPES", "FrigateTopics", "Message", "topic_segment"]

EVENT_TYPES = {OBJECT_STARTED: "new", OBJECT_UPDATED: "update", OBJECT_ENDED: "end"}
"""Our event types -> Frigate's ``type``."""

_NOT_IN_A_LEVEL = re.compile(r"[/+#\x00]")
_NOT_IN_AN_ID = re.compile(r"[^A-Za-z0-9_-]")

CountKey = tuple[str, ...]
"""``(camera, label)`` or ``(camera, zone, label)``."""


def topic_segment(name: str) -> str:
    """``name`` as one topic level: ``/``, ``+``, ``#`` and NUL would change its meaning."""
    return _NOT_IN_A_LEVEL.sub("_", name) or "_"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


class FrigateTopics:
    """The messages for each batch of events, and the counts they change."""

    def __init__(self, prefix: str = "detectflow", *, discovery: str | None = None) -> None:
        self.prefix = prefix.rstrip("/")
        self.discovery = discovery
        self.events_topic = f"{self.prefix}/events"
        self.available_topic = f"{self.prefix}/available"
        self._objects: dict[str, tuple[CountKey, ...]] = {}  # in progress -> its count keys
        self._counts: dict[CountKey, int] = {}
        self._published: dict[str, int] = {}  # count topic -> the count last sent
        self._announced: set[CountKey] = set()

    @property
    def count_topics(self) -> tuple[str, ...]:
        """Every count topic published so far (to clear them, say)."""
        return tuple(self._published)

    def available(self, online: bool) -> Message:
        return Message(self.available_topic, b"online" if online else b"offline", retain=True)

    def count_topic(self, key: CountKey) -> str:
        return "/".join([self.prefix, *(topic_segment(part) for part in key)])

    def messages(self, events: Iterable[ObjectEvent]) -> list[Message]:
        """Each event on ``<prefix>/events``, then every count it changed."""
        out: list[Message] = []
        touched: dict[CountKey, None] = {}
        counts = self._counts
        for event in events:
            kind = EVENT_TYPES.get(event.type)
            if kind is None:
                continue
            out.append(
                Message(
                    self.events_topic,
                    _dumps({"type": kind, "before": event.before, "after": event.after}),
                )
            )
            for key in self._objects.pop(event.object_id, ()):
                counts[key] -= 1
                touched[key] = None
            if event.type != OBJECT_ENDED:
                keys = _count_keys(event.camera_id, event.after)
                self._objects[event.object_id] = keys
                for key in keys:
                    counts[key] = counts.get(key, 0) + 1
                    touched[key] = None
        for key in touched:
            out.extend(self._count(key))
        return out

    def resync(self, topic: str, payload: bytes) -> list[Message]:
        """A count found retained on the broker: ours, when it says something else."""
        key = self._key_of(topic)
        if key is None:
            return []
        count = self._counts.get(key, 0)
        if payload == str(count).encode():
            self._published.setdefault(topic, count)
            return []
        self._published.pop(topic, None)
        return self._count(key)

    def republish(self) -> list[Message]:
        """Every count again (the broker may have lost them, or never got them)."""
        keys = {*self._counts, *(k for k in map(self._key_of, self._published) if k is not None)}
        self._published.clear()
        return [m for key in sorted(keys) for m in self._count(key)]

    def _key_of(self, topic: str) -> CountKey | None:
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        parts = tuple(topic[len(head) :].split("/"))
        if len(parts) not in (2, 3) or parts[0] in ("events", "available"):
            return None
        for key in self._counts:  # a known key: its topic may differ from its parts
            if self.count_topic(key) == topic:
                return key
        return parts

    def _count(self, key: CountKey) -> list[Message]:
        count = self._counts.get(key, 0)
        if count <= 0:
            self._counts.pop(key, None)
            count = 0
        topic = self.count_topic(key)
        if self._published.get(topic) == count:
            return []
        self._published[topic] = count
        out = []
        if self.discovery is not None and len(key) == 2 and key not in self._announced:
            self._announced.add(key)
            out.append(self._discovery(key, topic))
        out.append(Message(topic, str(count).encode(), retain=True))
        return out

    def _discovery(self, key: CountKey, state_topic: str) -> Message:
        camera, label = key
        node = _NOT_IN_AN_ID.sub("_", self.prefix)
        object_id = _NOT_IN_AN_ID.sub("_", f"{camera}_{label}")
        config = {
            "name": f"{label} count",
            "unique_id": f"{node}_{object_id}_count",
            "state_topic": state_topic,
            "availability_topic": self.available_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "state_class": "measurement",
            "icon": "mdi:counter",
            "device": {
                "identifiers": [f"{node}_{_NOT_IN_AN_ID.sub('_', camera)}"],
                "name": camera,
                "manufacturer": "detectflow",
            },
        }
        return Message(f"{self.discovery}/sensor/{node}/{object_id}/config", _dumps(config), True)


def _count_keys(camera: str, after: dict[str, Any]) -> tuple[CountKey, ...]:
    label = str(after.get("label", ""))
    zones = after.get("current_zones") or ()
    return ((camera, label), *((camera, str(zone), label) for zone in zones))
