"""The api key reaches the model server: a bearer header on REST, metadata on gRPC.

KServe's own server ignores credentials, so these use small real servers on
loopback (aiohttp; grpc.aio with the generated servicer) that record what
arrived and answer like a v2 server would.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aiohttp import web

from detectflow.adapters.kserve import KServeAdapter
from detectflow.adapters.kserve.v2 import grpc_predict_v2_pb2 as pb
from detectflow.adapters.kserve.v2 import grpc_predict_v2_pb2_grpc
from detectflow.core.models import ProviderConfig

pytestmark = pytest.mark.anyio

METADATA = {
    "name": "yolo",
    "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 3, 640, 640]}],
    "outputs": [{"name": "output0", "datatype": "FP32", "shape": [-1, 84, 8400]}],
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", autouse=True)
async def _one_event_loop_for_the_module(anyio_backend: str) -> AsyncIterator[None]:
    yield  # noqa: PT022 - grpc.aio completions must find their loop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def config(url: str) -> ProviderConfig:
    return ProviderConfig(
        id="k", provider_name="k", provider_type="kserve", endpoint_url=url,
        api_key="s3cret", timeout_seconds=5,
    )  # fmt: skip


async def test_rest_sends_the_api_key_as_a_bearer_token() -> None:
    seen: list[str | None] = []

    async def ready(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(status=200)

    async def metadata(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response(METADATA)

    app = web.Application()
    app.router.add_get("/v2/models/yolo/ready", ready)
    app.router.add_get("/v2/models/yolo", metadata)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with KServeAdapter(config(f"http://127.0.0.1:{port}/v2/models/yolo")) as adapter:
            assert (await adapter.health()).ok
    finally:
        await runner.cleanup()
    assert seen == ["Bearer s3cret", "Bearer s3cret"]


class Recorder(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:
        self.metadata.append(dict(context.invocation_metadata()))
        return pb.ModelReadyResponse(ready=request.name == "yolo")

    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        self.metadata.append(dict(context.invocation_metadata()))
        response = pb.ModelMetadataResponse(name="yolo")
        response.inputs.add(name="images", datatype="FP32", shape=[-1, 3, 640, 640])
        response.outputs.add(name="output0", datatype="FP32", shape=[-1, 84, 8400])
        return response


async def test_grpc_sends_the_api_key_as_authorization_metadata() -> None:
    recorder = Recorder()
    server = grpc.aio.server()
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with KServeAdapter(config(f"grpc://127.0.0.1:{port}/yolo")) as adapter:
            assert (await adapter.health()).ok
    finally:
        await server.stop(None)
    assert [m.get("authorization") for m in recorder.metadata] == ["Bearer s3cret"] * 2
