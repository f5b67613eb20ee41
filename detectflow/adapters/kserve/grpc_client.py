"""The gRPC wire of the open inference protocol: ``inference.GRPCInferenceService``.

``ModelMetadata``, ``ModelReady`` and ``ModelInfer`` with every input in
``raw_input_contents`` (see :mod:`.tensors`), over a grpc.aio channel opened
the way the ``grpc`` adapter opens its own (same message limits, TLS and
``ca_file``), with its status classification: UNAVAILABLE, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED, ABORTED and CANCELLED are transient, the rest permanent.
The api key goes as ``authorization: Bearer <key>`` metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from detectflow.adapters.grpc.endpoint import Endpoint, open_channel
from detectflow.adapters.grpc.status import error_for_rpc
from detectflow.adapters.kserve.endpoint import ModelEndpoint
from detectflow.adapters.kserve.metadata import ModelMetadata, metadata_from_grpc
from detectflow.adapters.kserve.tensors import (
    InferRequest,
    InferResult,
    grpc_request,
    result_from_grpc,
)
from detectflow.adapters.kserve.v2 import grpc_predict_v2_pb2 as pb
from detectflow.adapters.kserve.v2 import grpc_predict_v2_pb2_grpc
from detectflow.core.errors import PermanentProviderError

if TYPE_CHECKING:
    from detectflow.adapters.kserve.v2.grpc_predict_v2_pb2_grpc import (
        GRPCInferenceServiceAsyncStub,
    )

__all__ = ["GrpcClient"]


class GrpcClient:
    """One model behind one lazily opened channel, bound to the loop of its first call."""

    def __init__(
        self,
        endpoint: ModelEndpoint,
        *,
        timeout: float,
        api_key: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        if ca_file is not None and not endpoint.tls:
            raise PermanentProviderError("option ca_file needs a grpcs:// endpoint_url")
        ca_path = Path(ca_file) if ca_file is not None else None
        if ca_path is not None and not ca_path.is_file():
            raise PermanentProviderError(f"option ca_file {ca_file!r} is not a readable file")
        self.endpoint = endpoint
        self.timeout = timeout
        self._target = Endpoint(endpoint.target, endpoint.tls, ca_path)
        self.metadata_pairs: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self._channel: grpc.aio.Channel | None = None
        self._stub: GRPCInferenceServiceAsyncStub | None = None

    def _service(self) -> GRPCInferenceServiceAsyncStub:
        if self._stub is None:
            self._channel = open_channel(self._target)
            self._stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        return self._stub

    async def metadata(self) -> ModelMetadata:
        request = pb.ModelMetadataRequest(name=self.endpoint.model, version=self.endpoint.version)
        try:
            response = await self._service().ModelMetadata(
                request, timeout=self.timeout, metadata=self.metadata_pairs
            )
        except grpc.aio.AioRpcError as exc:
            raise error_for_rpc(exc) from None
        if response is None:
            raise PermanentProviderError("malformed model metadata: not a ModelMetadataResponse")
        return metadata_from_grpc(response)

    async def ready(self) -> bool:
        request = pb.ModelReadyRequest(name=self.endpoint.model, version=self.endpoint.version)
        try:
            response = await self._service().ModelReady(
                request, timeout=self.timeout, metadata=self.metadata_pairs
            )
        except grpc.aio.AioRpcError as exc:
            raise error_for_rpc(exc) from None  # NOT_FOUND (no such model) is permanent
        return bool(response is not None and response.ready)

    async def infer(self, request: InferRequest) -> InferResult:
        message = grpc_request(request, self.endpoint.model, self.endpoint.version)
        try:
            response = await self._service().ModelInfer(
                message, timeout=self.timeout, metadata=self.metadata_pairs
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (
                exc.details() or ""
            ):
                # Retrying the same batch cannot help; say which knob to turn.
                raise PermanentProviderError(
                    f"gRPC RESOURCE_EXHAUSTED: {exc.details()} (lower option max_batch_size, "
                    "or raise the server's gRPC message size limit)"
                ) from None
            raise error_for_rpc(exc) from None
        if response is None:
            raise PermanentProviderError("malformed infer answer: not a ModelInferResponse")
        return result_from_grpc(response)

    async def aclose(self) -> None:
        channel, self._channel = self._channel, None
        self._stub = None
        if channel is not None:
            await channel.close()
