"""The kserve adapter passes the conformance kit, over REST and gRPC, batching as it goes.

Healthy: KServe's own model server (``batch`` model: it echoes each image's
mean brightness as a score, so answers are deterministic per frame and
differ between frames); with batching on, the kit's 100 concurrent calls mix
cameras in one batch, and each answer must still come back to its own frame.
REST faults come from the kit's HTTP fault server behind the model path;
gRPC faults from the real peer's bad models (too slow; not ready: transient;
an answer of the wrong shape: malformed; a model that does not fit: permanent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from detectflow.adapters.kserve import KServeAdapter
from detectflow.core.models import ProviderConfig
from detectflow.testing import AdapterConformance, ConformanceTarget
from detectflow.testing.faults import HttpFaultServer
from tests.adapters.kserve.peer import Peer, running_peer

pytestmark = pytest.mark.slow

BATCHING = {"max_batch_size": 8, "max_batch_wait_ms": 5}


def factory(url: str, **options: Any) -> Callable[[float], KServeAdapter]:
    def make(timeout: float) -> KServeAdapter:
        return KServeAdapter(
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
