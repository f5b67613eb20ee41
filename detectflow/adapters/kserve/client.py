"""What the adapter needs from either wire of the open inference protocol.

:class:`~.rest.RestClient` and :class:`~.grpc_client.GrpcClient` implement
it; the adapter, the shape resolution and the decoders never know which one
they talk through. Every method raises only
:class:`~detectflow.core.errors.TransientProviderError` or
:class:`~detectflow.core.errors.PermanentProviderError`.
"""

from __future__ import annotations

from typing import Protocol

from detectflow.adapters.kserve.metadata import ModelMetadata
from detectflow.adapters.kserve.tensors import InferRequest, InferResult

__all__ = ["InferClient"]


class InferClient(Protocol):
    async def metadata(self) -> ModelMetadata:
        """The model's inputs and outputs."""

    async def ready(self) -> bool:
        """Whether the model is ready (False: up, not ready); no such model is permanent."""

    async def infer(self, request: InferRequest) -> InferResult:
        """One inference call."""

    async def aclose(self) -> None:
        """Release connections; safe to call twice."""
