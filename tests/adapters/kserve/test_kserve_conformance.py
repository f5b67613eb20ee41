"""The kserve adapter passes the conformance kit, over REST and gRPC, batching as it goes.

Healthy: KServe's own model server (``batch`` model: it echoes each image's
mean brightness as a score, so answers are deterministic per frame and
differ between frames); with batching on, the kit's 100 concurrent calls mix
cameras in one batch, and each answer must still come back to its own frame.
The kit's batch checks run too (the adapter is a BatchingAdapter): batches
mixing cameras, ``detect_batch`` answering in order, and a partial failure,
whose failing frame is the kit's undecodable PNG (the adapter letterboxes
each image itself, so that frame fails alone before the infer call).
REST faults come from the kit's HTTP fault server behind the model path;
gRPC faults from the real peer's bad models (too slow; not ready: transient;
an answer of the wrong shape: malformed; a model that does not fit: permanent).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import pytest

from detectflow.adapters.batching import BatchOutcome
from detectflow.adapters.kserve import KServeAdapter
from detectflow.core.models import Frame, ProviderConfig
from detectflow.testing import (
    AdapterConformance,
    ConformanceFailure,
    ConformanceTarget,
    undecodable_frame,
)
from detectflow.testing.batch_checks import (
    check_batch_mixing_cameras,
    check_batch_order,
    check_batch_partial_failure,
)
from detectflow.testing.faults import HttpFaultServer
from tests.adapters.kserve.peer import Peer, running_peer

pytestmark = pytest.mark.slow

BATCHING = {"max_batch_size": 8, "max_batch_wait_ms": 5}


def factory(
    url: str, kind: type[KServeAdapter] = KServeAdapter, **options: Any
) -> Callable[[float], KServeAdapter]:
    def make(timeout: float) -> KServeAdapter:
        return kind(
            ProviderConfig(
                id="conformance-kserve",
                provider_name="conformance kserve",
                provider_type="kserve",
                endpoint_url=url,
                timeout_seconds=timeout,
                confidence_threshold=0.01,
                options=options,
            )
        )

    return make


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    with running_peer("batch,slow,wrongshape,notready,text") as running:
        yield running


@pytest.fixture(scope="module")
def faults() -> Iterator[HttpFaultServer]:
    with HttpFaultServer() as server:
        yield server


@pytest.fixture(scope="module")
def rest_target(peer: Peer, faults: HttpFaultServer) -> ConformanceTarget:
    model = "/v2/models/batch"
    return ConformanceTarget(
        healthy=factory(peer.rest_url("batch"), **BATCHING),
        slow=factory(faults.slow_url + model),
        transient_fault=factory(faults.status_url(503) + model),
        permanent_fault=factory(faults.status_url(400) + model),
        malformed_answer=factory(faults.garbage_url + model),
        unreachable=factory(faults.refused_url + model),
        failing_frame=undecodable_frame,
        timeout_seconds=2.0,
    )


@pytest.fixture(scope="module")
def grpc_target(peer: Peer, faults: HttpFaultServer) -> ConformanceTarget:
    return ConformanceTarget(
        healthy=factory(peer.grpc_url("batch"), **BATCHING),
        slow=factory(peer.grpc_url("slow")),
        transient_fault=factory(peer.grpc_url("notready")),
        permanent_fault=factory(peer.grpc_url("text")),
        malformed_answer=factory(peer.grpc_url("wrongshape")),
        unreachable=factory(f"grpc://127.0.0.1:{faults.refused_port}/batch"),
        failing_frame=undecodable_frame,
        timeout_seconds=2.0,
    )


class TestKServeRestConformance(AdapterConformance):
    @pytest.fixture
    def detectflow_target(self, rest_target: ConformanceTarget) -> ConformanceTarget:
        return rest_target


class TestKServeGrpcConformance(AdapterConformance):
    @pytest.fixture
    def detectflow_target(self, grpc_target: ConformanceTarget) -> ConformanceTarget:
        return grpc_target


class ReversedKServeAdapter(KServeAdapter):
    """The real adapter reading each batch answer back in reverse: the batch checks catch it."""

    async def detect_batch(self, frames: Sequence[Frame]) -> Sequence[BatchOutcome]:
        return list(reversed(await super().detect_batch(frames)))


@pytest.mark.parametrize("wire", ["rest", "grpc"])
@pytest.mark.parametrize(
    ("check", "says"),
    [
        (check_batch_order, "frame 0 got the answer of frame 7 (cross-talk), at position 0"),
        (check_batch_mixing_cameras, "got the answer of frame 7 (cross-talk), in a batch of 8"),
        (check_batch_partial_failure, "frame 3 got the answer of frame 4 (cross-talk) instead"),
    ],
    ids=["order", "mixing", "partial"],
)
def test_batch_checks_fail_a_kserve_adapter_answering_out_of_order(
    peer: Peer,
    rest_target: ConformanceTarget,
    grpc_target: ConformanceTarget,
    wire: str,
    check: Callable[[ConformanceTarget], Coroutine[Any, Any, None]],
    says: str,
) -> None:
    target = dataclasses.replace(
        rest_target if wire == "rest" else grpc_target,
        healthy=factory(peer.url(wire, "batch"), ReversedKServeAdapter, **BATCHING),
    )
    with pytest.raises(ConformanceFailure) as failure:
        asyncio.run(check(target))
    assert says in str(failure.value)
