"""Fixtures for the publisher tests: real HTTP receivers on a background loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from detectflow.testing import BackgroundLoop
from tests.publish.receiver import Receiver

Serve = Callable[[Receiver], Receiver]


@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    with BackgroundLoop("receiver") as background:
        yield background


@pytest.fixture
def serve(loop: BackgroundLoop) -> Iterator[Callable[[Receiver], Receiver]]:
    """Start receivers on the background loop; stopped before the loop is."""
    runners = []

    def start(receiver: Receiver) -> Receiver:
        runners.append(receiver.serve(loop))
        return receiver

    yield start
    for runner in runners:
        loop.run(runner.cleanup())
