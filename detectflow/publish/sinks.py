"""The Bytewax side of a publisher: every worker offers its results to one publisher.

Imported only by the sink factories, when a flow runs: the server never
loads the dataflow engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from detectflow.core.models import FrameResult

__all__ = ["Publisher", "PublisherSink"]


class Publisher(Protocol):
    def offer(self, results: Sequence[FrameResult]) -> None:
        """Take the results' events for publishing; must not block."""

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued (up to ``timeout``) and let go (idempotent)."""


class _Partition(StatelessSinkPartition[FrameResult]):
    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    def write_batch(self, items: list[FrameResult]) -> None:
        self._publisher.offer(items)


class PublisherSink(DynamicSink[FrameResult]):
    """One publisher shared by every worker of the process (one broker connection,
    one delivery worker); ``run_flow`` calls :meth:`close` when the flow ends."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self.publisher)

    def close(self) -> None:
        self.publisher.close()
