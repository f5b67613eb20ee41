"""A flow process publishing object events to MQTT until it is killed.

``python -m tests.publish.mqtt_flow <broker url>``: prints ``ready`` once the
publisher is connected, then feeds the dock scene through a Bytewax flow with
the MQTT sink, over and over (a camera that never stops).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from detectflow.core.models import FrameResult
from detectflow.publish.mqtt import MqttPublisher
from detectflow.publish.sinks import PublisherSink
from tests.publish.scene import walk_into_the_dock


def _forever() -> Iterator[FrameResult]:
    scene = walk_into_the_dock()
    while True:
        for result in scene:
            yield result
            time.sleep(0.05)


def main(url: str) -> None:
    publisher = MqttPublisher(url)
    publisher.start()
    deadline = time.monotonic() + 10
    while publisher.published == 0 and time.monotonic() < deadline:  # "online" acknowledged
        time.sleep(0.01)
    print("ready", flush=True)
    flow = Dataflow("mqtt-forever")
    op.output("mqtt", op.input("scene", flow, TestingSource(_forever())), PublisherSink(publisher))
    run_main(flow)


if __name__ == "__main__":
    main(sys.argv[1])
