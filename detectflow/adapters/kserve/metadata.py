"""A model's metadata as the open inference protocol describes it.

``GET /v2/models/<m>`` and ``ModelMetadata`` both answer a name, versions,
a platform and the input and output tensors (name, datatype, shape, ``-1``
for a dynamic dimension). Both are read into :class:`ModelMetadata` here, so
the shape resolution in :mod:`.plan` never sees which wire it came over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detectflow.adapters.kserve.tensors import read_tensor_header
from detectflow.adapters.kserve.v2 import grpc_predict_v2_pb2 as pb
from detectflow.core.errors import PermanentProviderError

__all__ = ["ModelMetadata", "TensorSpec", "metadata_from_grpc", "metadata_from_json"]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        """``images FP32 [-1, 3, 640, 640]``: how refusals name what was found."""
        return f"{self.name} {self.datatype} {list(self.shape)}"


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    versions: tuple[str, ...] = ()
    platform: str = ""


def _spec(entry: Any, what: str) -> TensorSpec:
    name, datatype, shape = read_tensor_header(entry, f"model metadata {what}")
    return TensorSpec(name, datatype.upper(), tuple(shape))


def metadata_from_json(body: Any) -> ModelMetadata:
    """Read the REST answer of ``GET /v2/models/<m>``."""
    if not isinstance(body, Mapping):
        raise PermanentProviderError("malformed model metadata: not a JSON object")
    inputs, outputs = body.get("inputs") or [], body.get("outputs") or []
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise PermanentProviderError("malformed model metadata: inputs and outputs must be lists")
    versions = body.get("versions") or []
    return ModelMetadata(
        name=str(body.get("name") or ""),
        inputs=tuple(_spec(e, "input") for e in inputs),
        outputs=tuple(_spec(e, "output") for e in outputs),
        versions=tuple(str(v) for v in versions) if isinstance(versions, list) else (),
        platform=str(body.get("platform") or ""),
    )


def metadata_from_grpc(message: pb.ModelMetadataResponse) -> ModelMetadata:
    """Read ``ModelMetadataResponse``."""

    def specs(entries: Any) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(e.name, e.datatype.upper(), tuple(e.shape)) for e in entries)

    return ModelMetadata(
        name=message.name,
        inputs=specs(message.inputs),
        outputs=specs(message.outputs),
        versions=tuple(message.versions),
        platform=message.platform,
    )
