"""Tensors on the wire of the open inference protocol (KServe v2), both directions.

Both of the protocol's wires carry a tensor's elements the same way when
they are not JSON: little-endian, row-major, and for ``BYTES`` each element
prefixed by its 4-byte little-endian length. REST appends those bytes after
a JSON header (the binary tensor extension: ``Inference-Header-Content-Length``
says where the JSON ends, ``parameters.binary_data_size`` how long each
tensor's bytes are); gRPC puts them in ``raw_input_contents`` /
``raw_output_contents``. One module writes and reads both, requests and
answers, so what one side writes the other reads by construction; the tests
round-trip every direction.

Why binary for images: a 640x640x3 FP32 tensor is 4.9 MB of raw bytes but
about 11 MB of JSON floats, which cost more to print and parse than the model
costs to run.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from detectflow.adapters.kserve.v2 import grpc_predict_v2_pb2 as pb
from detectflow.core.errors import PermanentProviderError

__all__ = [
    "DTYPES",
    "HEADER_LENGTH",
    "InferRequest",
    "InferResult",
    "Tensor",
    "decode_rest_request",
    "decode_rest_response",
    "encode_rest_request",
    "encode_rest_response",
    "from_raw",
    "grpc_request",
    "grpc_response",
    "read_tensor_header",
    "request_from_grpc",
    "result_from_grpc",
    "to_raw",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
"""The REST header that says how many leading body bytes are the JSON part."""

DTYPES: Mapping[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
"""Numeric v2 datatypes and their wire layout; ``BYTES`` is the one more."""

_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named tensor. ``BYTES`` tensors hold an object array of ``bytes``."""

    name: str
    datatype: str
    data: npt.NDArray[Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.data.shape)

    @classmethod
    def of(cls, name: str, data: npt.ArrayLike, datatype: str | None = None) -> Tensor:
        """Build a tensor, taking the datatype from the array when not given."""
        if datatype == "BYTES":
            array = np.asarray(data, dtype=object)
            return cls(name, "BYTES", array)
        array = np.asarray(data)
        if datatype is None:
            datatype = _datatype_of(array.dtype)
        return cls(name, datatype, array.astype(_dtype(datatype), copy=False))


@dataclass(frozen=True, slots=True)
class InferRequest:
    """What a client asks: inputs, the outputs it wants back, an id to echo."""

    inputs: Sequence[Tensor]
    outputs: Sequence[str] = ()
    id: str = ""


@dataclass(frozen=True, slots=True)
class InferResult:
    """What a server answers: its outputs by name."""

    outputs: Mapping[str, Tensor]
    id: str = ""
    model_name: str = ""
    model_version: str = ""
    order: Sequence[str] = field(default=())


def _datatype_of(dtype: np.dtype[Any]) -> str:
    for name, candidate in DTYPES.items():
        if candidate.kind == dtype.kind and candidate.itemsize == dtype.itemsize:
            return name
    if dtype.kind in ("O", "S"):
        return "BYTES"
    raise PermanentProviderError(f"no v2 datatype for numpy dtype {dtype}")


def _dtype(datatype: str) -> np.dtype[Any]:
    try:
        return DTYPES[datatype]
    except KeyError:
        raise PermanentProviderError(f"unsupported tensor datatype {datatype!r}") from None


# -- raw bytes (REST binary extension and gRPC raw contents) ----------------


def to_raw(tensor: Tensor) -> bytes:
    """The tensor's elements as the wire carries them."""
    if tensor.datatype == "BYTES":
        parts: list[bytes] = []
        for item in tensor.data.reshape(-1):
            value = item if isinstance(item, bytes) else str(item).encode()
            parts.append(_LENGTH.pack(len(value)))
            parts.append(value)
        return b"".join(parts)
    return np.ascontiguousarray(tensor.data, dtype=_dtype(tensor.datatype)).tobytes()


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> Tensor:
    """Read a tensor's raw bytes; a size that does not match the shape is permanent."""
    dims = _shape(name, shape)
    count = int(np.prod(dims, dtype=np.int64))
    if datatype == "BYTES":
        items: list[bytes] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise PermanentProviderError(f"tensor {name!r}: truncated BYTES element")
            (length,) = _LENGTH.unpack_from(raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise PermanentProviderError(f"tensor {name!r}: truncated BYTES element")
            items.append(raw[offset : offset + length])
            offset += length
        if len(items) != count:
            raise PermanentProviderError(
                f"tensor {name!r}: {len(items)} BYTES elements for shape {list(dims)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return Tensor(name, datatype, array.reshape(dims))
    dtype = _dtype(datatype)
    if len(raw) != count * dtype.itemsize:
        raise PermanentProviderError(
            f"tensor {name!r}: {len(raw)} bytes for {datatype} shape {list(dims)} "
            f"(expected {count * dtype.itemsize})"
        )
    return Tensor(name, datatype, np.frombuffer(raw, dtype=dtype).reshape(dims))


def _shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise PermanentProviderError(f"tensor {name!r}: negative dimension in shape {list(dims)}")
    return dims


def _from_json_data(name: str, datatype: str, shape: Sequence[int], data: Any) -> Tensor:
    dims = _shape(name, shape)
    if not isinstance(data, list):
        raise PermanentProviderError(f"tensor {name!r}: data must be a list")
    try:
        if datatype == "BYTES":
            flat = np.asarray(data, dtype=object).reshape(-1)
            array = np.empty(flat.size, dtype=object)
            array[:] = [v.encode() if isinstance(v, str) else bytes(v) for v in flat]
            return Tensor(name, datatype, array.reshape(dims))
        return Tensor(name, datatype, np.asarray(data, dtype=_dtype(datatype)).reshape(dims))
    except (ValueError, TypeError) as exc:
        raise PermanentProviderError(f"tensor {name!r}: data does not fit: {exc}") from None


# -- REST ---------------------------------------------------------------------


def _tensor_header(tensor: Tensor, raw: bytes | None) -> dict[str, Any]:
    header: dict[str, Any] = {
        "name": tensor.name,
        "shape": list(tensor.shape),
        "datatype": tensor.datatype,
    }
    if raw is None:
        if tensor.datatype == "BYTES":
            header["data"] = [v.decode("utf-8", "replace") for v in tensor.data.reshape(-1)]
        else:
            header["data"] = tensor.data.reshape(-1).tolist()
    else:
        header["parameters"] = {"binary_data_size": len(raw)}
    return header


def _join(header: Mapping[str, Any], raws: Iterable[bytes]) -> tuple[bytes, int]:
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(raws), len(head)


def encode_rest_request(request: InferRequest, *, binary: bool = True) -> tuple[bytes, int | None]:
    """The body of ``POST .../infer`` and the JSON length for ``HEADER_LENGTH``.

    With ``binary`` (the default) inputs travel as raw bytes and outputs are
    asked for as raw bytes too; without it, everything is JSON and the
    length is None (send no ``HEADER_LENGTH``).
    """
    raws = [to_raw(t) for t in request.inputs] if binary else []
    body: dict[str, Any] = {
        "inputs": [
            _tensor_header(t, raws[i] if binary else None) for i, t in enumerate(request.inputs)
        ]
    }
    if request.id:
        body["id"] = request.id
    if request.outputs:
        body["outputs"] = [
            {"name": name, "parameters": {"binary_data": binary}} for name in request.outputs
        ]
    if not binary:
        return json.dumps(body, separators=(",", ":")).encode(), None
    return _join(body, raws)


def _split(body: bytes, header_length: int | None, what: str) -> tuple[dict[str, Any], bytes]:
    end = len(body) if header_length is None else header_length
    if not 0 <= end <= len(body):
        raise PermanentProviderError(
            f"malformed {what}: {HEADER_LENGTH} {header_length} exceeds the body"
        )
    try:
        header = json.loads(body[:end])
    except (ValueError, UnicodeDecodeError):
        raise PermanentProviderError(f"malformed {what}: not JSON") from None
    if not isinstance(header, dict):
        raise PermanentProviderError(f"malformed {what}: not a JSON object")
    return header, body[end:]


def read_tensor_header(entry: Any, what: str) -> tuple[str, str, list[int]]:
    """A JSON tensor's name, datatype and shape (in metadata, requests and answers alike)."""
    if not isinstance(entry, Mapping):
        raise PermanentProviderError(f"malformed {what}: a tensor is not an object")
    name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
    if not (
        isinstance(name, str)
        and isinstance(datatype, str)
        and isinstance(shape, list)
        and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
    ):
        raise PermanentProviderError(
            f"malformed {what}: tensor {entry!r:.200} needs a name, datatype and integer shape"
        )
    return name, datatype, shape


def _read_tensors(entries: Any, tail: bytes, what: str) -> list[Tensor]:
    if not isinstance(entries, list):
        raise PermanentProviderError(f"malformed {what}: tensors must be a list")
    tensors: list[Tensor] = []
    offset = 0
    for entry in entries:
        name, datatype, shape = read_tensor_header(entry, what)
        parameters = entry.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(tail):
                raise PermanentProviderError(
                    f"malformed {what}: tensor {name!r} binary_data_size {size!r} "
                    f"exceeds the {len(tail) - offset} bytes left"
                )
            tensors.append(from_raw(name, datatype, shape, tail[offset : offset + size]))
            offset += size
        else:
            tensors.append(_from_json_data(name, datatype, shape, entry.get("data")))
    if offset != len(tail):
        raise PermanentProviderError(
            f"malformed {what}: {len(tail) - offset} binary bytes belong to no tensor"
        )
    return tensors


def decode_rest_request(body: bytes, header_length: int | None) -> InferRequest:
    """A server's reading of :func:`encode_rest_request` (tests and fakes use it)."""
    header, tail = _split(body, header_length, "infer request")
    inputs = _read_tensors(header.get("inputs"), tail, "infer request")
    outputs = [o["name"] for o in header.get("outputs") or () if isinstance(o, dict)]
    return InferRequest(inputs, outputs, str(header.get("id") or ""))


def encode_rest_response(result: InferResult, *, binary: bool = True) -> tuple[bytes, int | None]:
    """A server's answer to an infer request, JSON or with binary outputs."""
    tensors = [result.outputs[name] for name in (result.order or list(result.outputs))]
    raws = [to_raw(t) for t in tensors] if binary else []
    body: dict[str, Any] = {
        "model_name": result.model_name,
        "outputs": [_tensor_header(t, raws[i] if binary else None) for i, t in enumerate(tensors)],
    }
    if result.model_version:
        body["model_version"] = result.model_version
    if result.id:
        body["id"] = result.id
    if not binary:
        return json.dumps(body, separators=(",", ":")).encode(), None
    return _join(body, raws)


def decode_rest_response(body: bytes, header_length: int | None) -> InferResult:
    """Read an infer answer; every fault in it is a :class:`PermanentProviderError`."""
    header, tail = _split(body, header_length, "infer answer")
    outputs = _read_tensors(header.get("outputs"), tail, "infer answer")
    return InferResult(
        {t.name: t for t in outputs},
        id=str(header.get("id") or ""),
        model_name=str(header.get("model_name") or ""),
        model_version=str(header.get("model_version") or ""),
        order=[t.name for t in outputs],
    )


# -- gRPC ---------------------------------------------------------------------

_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def grpc_request(request: InferRequest, model: str, version: str = "") -> pb.ModelInferRequest:
    """``ModelInferRequest`` with every input in ``raw_input_contents``."""
    message = pb.ModelInferRequest(model_name=model, model_version=version, id=request.id)
    for tensor in request.inputs:
        message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        message.raw_input_contents.append(to_raw(tensor))
    for name in request.outputs:
        message.outputs.add(name=name)
    return message


def _grpc_tensors(entries: Sequence[Any], raws: Sequence[bytes], what: str) -> list[Tensor]:
    if raws and len(raws) != len(entries):
        raise PermanentProviderError(
            f"malformed {what}: {len(raws)} raw contents for {len(entries)} tensors"
        )
    tensors = []
    for index, entry in enumerate(entries):
        shape = list(entry.shape)
        if raws:
            tensors.append(from_raw(entry.name, entry.datatype, shape, raws[index]))
            continue
        field_name = _CONTENTS_FIELD.get(entry.datatype)
        if field_name is None:
            raise PermanentProviderError(
                f"malformed {what}: {entry.datatype} tensor {entry.name!r} without raw contents"
            )
        values = list(getattr(entry.contents, field_name))
        tensors.append(_from_json_data(entry.name, entry.datatype, shape, values))
    return tensors


def request_from_grpc(message: pb.ModelInferRequest) -> InferRequest:
    """A server's reading of :func:`grpc_request` (tests and fakes use it)."""
    inputs = _grpc_tensors(message.inputs, message.raw_input_contents, "infer request")
    return InferRequest(inputs, [o.name for o in message.outputs], message.id)


def grpc_response(result: InferResult) -> pb.ModelInferResponse:
    """A server's answer with every output in ``raw_output_contents``."""
    message = pb.ModelInferResponse(
        model_name=result.model_name, model_version=result.model_version, id=result.id
    )
    for name in result.order or list(result.outputs):
        tensor = result.outputs[name]
        message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        message.raw_output_contents.append(to_raw(tensor))
    return message


def result_from_grpc(message: pb.ModelInferResponse) -> InferResult:
    """Read a ``ModelInferResponse``, raw or typed contents alike."""
    outputs = _grpc_tensors(message.outputs, message.raw_output_contents, "infer answer")
    return InferResult(
        {t.name: t for t in outputs},
        id=message.id,
        model_name=message.model_name,
        model_version=message.model_version,
        order=[t.name for t in outputs],
    )
