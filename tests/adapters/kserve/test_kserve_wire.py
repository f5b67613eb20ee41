"""The kserve adapter's pure parts: endpoint URLs and tensors on both wires.

Property tests round-trip every direction of :mod:`detectflow.adapters.kserve.tensors`
(what a client writes, a server reads, and back), on REST with and without
the binary extension and on gRPC.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from detectflow.adapters.kserve.endpoint import parse_model_url
from detectflow.adapters.kserve.tensors import (
    HEADER_LENGTH,
    InferRequest,
    InferResult,
    Tensor,
    decode_rest_request,
    decode_rest_response,
    encode_rest_request,
    encode_rest_response,
    from_raw,
    grpc_request,
    grpc_response,
    request_from_grpc,
    result_from_grpc,
    to_raw,
)
from detectflow.core.errors import PermanentProviderError

# -- endpoint URLs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "wire", "target", "model", "version", "model_url"),
    [
        (
            "http://127.0.0.1:8080/v2/models/yolo",
            "rest", "127.0.0.1:8080", "yolo", "", "http://127.0.0.1:8080/v2/models/yolo",
        ),
        (
            "https://gw.example/triton/v2/models/det/versions/3/",
            "rest", "gw.example:443", "det", "3",
            "https://gw.example:443/triton/v2/models/det/versions/3",
        ),
        ("grpc://[::1]:8001/yolo/2", "grpc", "[::1]:8001", "yolo", "2", None),
        ("grpcs://infer.example/yolo", "grpc", "infer.example:443", "yolo", "", None),
    ],
)  # fmt: skip
def test_model_urls_name_the_wire_the_server_and_the_model(
    url: str, wire: str, target: str, model: str, version: str, model_url: str | None
) -> None:
    endpoint = parse_model_url(url)
    assert (endpoint.wire, endpoint.target, endpoint.model, endpoint.version) == (
        wire,
        target,
        model,
        version,
    )
    if model_url is not None:
        assert endpoint.model_url == model_url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://host/v2/models/m", "must start with"),
        ("http://host:8080/models/m", "must end in /v2/models/<model>"),
        ("http://host:8080/v2/models/m/infer", "must end in"),
        ("http://:8080/v2/models/m", "no host"),
        ("http://host:99999/v2/models/m", "bad port"),
        ("grpc://host:8001", "grpc[s]://host:port/<model>"),
        ("grpc://host:8001/a/b/c", "grpc[s]://host:port/<model>"),
        ("http://host/v2/models/m?x=1", "no query"),
    ],
)
def test_bad_model_urls_are_refused_saying_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        parse_model_url(url)
    assert says in caught.value.message


@given(
    model=st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=20),
    version=st.one_of(st.just(""), st.from_regex(r"[0-9]{1,4}", fullmatch=True)),
)
def test_a_model_name_survives_the_rest_url_round_trip(model: str, version: str) -> None:
    from urllib.parse import quote

    url = f"http://h:1/v2/models/{quote(model, safe='')}"
    if version:
        url += f"/versions/{version}"
    endpoint = parse_model_url(url)
    assert (endpoint.model, endpoint.version) == (model, version)
    assert parse_model_url(endpoint.model_url) == endpoint


# -- tensors --------------------------------------------------------------------

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
           "FP16", "FP32", "FP64"]  # fmt: skip


@st.composite
def tensors(draw: st.DrawFn, name: str = "t") -> Tensor:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if datatype == "BYTES":
        count = int(np.prod(shape, dtype=np.int64))
        items = draw(st.lists(st.binary(max_size=12), min_size=count, max_size=count))
        array = np.empty(count, dtype=object)
        array[:] = items
        return Tensor(name, "BYTES", array.reshape(shape))
    from detectflow.adapters.kserve.tensors import DTYPES

    array = draw(hnp.arrays(DTYPES[datatype], shape))
    return Tensor(name, datatype, array)


def same(a: Tensor, b: Tensor) -> bool:
    if (a.name, a.datatype, a.shape) != (b.name, b.datatype, b.shape):
        return False
    if a.datatype == "BYTES":
        return list(a.data.reshape(-1)) == list(b.data.reshape(-1))
    return bool(np.array_equal(a.data, b.data, equal_nan=a.data.dtype.kind == "f"))


@given(tensors())
def test_raw_bytes_round_trip_every_datatype(tensor: Tensor) -> None:
    assert same(from_raw(tensor.name, tensor.datatype, tensor.shape, to_raw(tensor)), tensor)


def test_raw_bytes_are_little_endian_row_major_and_bytes_are_length_prefixed() -> None:
    assert to_raw(Tensor.of("x", np.array([[1, 2]], dtype=np.int16))) == b"\x01\x00\x02\x00"
    assert to_raw(Tensor.of("s", [b"ab", b""], "BYTES")) == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "says"),
    [
        ("FP32", [2], b"\x00" * 7, "7 bytes for FP32 shape [2] (expected 8)"),
        ("BYTES", [2], b"\x01\x00\x00\x00a", "1 BYTES elements for shape [2]"),
        ("BYTES", [1], b"\x09\x00\x00\x00a", "truncated"),
        ("BF17", [1], b"\x00", "unsupported tensor datatype"),
    ],
)
def test_raw_bytes_that_do_not_fit_their_shape_are_permanent_errors(
    datatype: str, shape: list[int], raw: bytes, says: str
) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        from_raw("t", datatype, shape, raw)
    assert says in caught.value.message


@given(inputs=st.lists(tensors(), min_size=1, max_size=3), binary=st.booleans())
def test_rest_requests_round_trip_with_and_without_the_binary_extension(
    inputs: list[Tensor], binary: bool
) -> None:
    inputs = [Tensor(f"in{i}", t.datatype, t.data) for i, t in enumerate(inputs)]
    if not binary:  # JSON carries text, not arbitrary bytes, and no FP16 NaN payloads
        inputs = [t for t in inputs if t.datatype not in ("BYTES",)]
        if not inputs:
            return
    request = InferRequest(inputs, ["out"], "req-1")
    body, length = encode_rest_request(request, binary=binary)
    assert (length is not None) == binary
    back = decode_rest_request(body, length)
    assert back.id == "req-1" and list(back.outputs) == ["out"]
    assert all(same(a, b) for a, b in zip(back.inputs, inputs, strict=True))


@given(outputs=st.lists(tensors(), min_size=1, max_size=3), binary=st.booleans())
def test_rest_answers_round_trip(outputs: list[Tensor], binary: bool) -> None:
    outputs = [Tensor(f"out{i}", t.datatype, t.data) for i, t in enumerate(outputs)]
    if not binary:
        outputs = [t for t in outputs if t.datatype != "BYTES"]
        if not outputs:
            return
    result = InferResult({t.name: t for t in outputs}, id="7", model_name="m")
    body, length = encode_rest_response(result, binary=binary)
    back = decode_rest_response(body, length)
    assert (back.id, back.model_name, list(back.order)) == ("7", "m", [t.name for t in outputs])
    assert all(same(back.outputs[t.name], t) for t in outputs)


def test_a_binary_request_is_the_json_header_then_each_tensors_bytes() -> None:
    image = Tensor.of("images", np.ones((1, 3, 2, 2), dtype=np.float32))
    body, length = encode_rest_request(InferRequest([image], ["output0"], "1"))
    assert length is not None
    header = json.loads(body[:length])
    assert header["inputs"][0] == {
        "name": "images",
        "shape": [1, 3, 2, 2],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 48},
    }
    assert header["outputs"] == [{"name": "output0", "parameters": {"binary_data": True}}]
    assert body[length:] == np.ones(12, dtype="<f4").tobytes()
    assert HEADER_LENGTH == "Inference-Header-Content-Length"


@pytest.mark.parametrize(
    ("body", "length", "says"),
    [
        (b"{", None, "not JSON"),
        (b"[]", None, "not a JSON object"),
        (b'{"outputs": [{"name": "o"}]}', None, "needs a name, datatype and integer shape"),
        (
            b'{"outputs": [{"name": "o", "datatype": "FP32", "shape": [1],'
            b' "parameters": {"binary_data_size": 4}}]}',
            None,
            "exceeds",
        ),
        (b'{"outputs": []}xx', 15, "2 binary bytes belong to no tensor"),
        (b"{}", 99, "exceeds the body"),
        (b'{"outputs": [{"name": "o", "datatype": "FP32", "shape": [2], "data": [1]}]}', None,
         "does not fit"),
    ],
)  # fmt: skip
def test_malformed_answers_are_permanent_errors(body: bytes, length: int | None, says: str) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        decode_rest_response(body, length)
    assert says in caught.value.message


@given(inputs=st.lists(tensors(), min_size=1, max_size=3))
def test_grpc_requests_round_trip_through_raw_input_contents(inputs: list[Tensor]) -> None:
    inputs = [Tensor(f"in{i}", t.datatype, t.data) for i, t in enumerate(inputs)]
    message = grpc_request(InferRequest(inputs, ["out"], "9"), "yolo", "2")
    assert (message.model_name, message.model_version, message.id) == ("yolo", "2", "9")
    assert len(message.raw_input_contents) == len(inputs)
    back = request_from_grpc(type(message).FromString(message.SerializeToString()))
    assert all(same(a, b) for a, b in zip(back.inputs, inputs, strict=True))


@given(outputs=st.lists(tensors(), min_size=1, max_size=3))
def test_grpc_answers_round_trip_through_raw_output_contents(outputs: list[Tensor]) -> None:
    outputs = [Tensor(f"out{i}", t.datatype, t.data) for i, t in enumerate(outputs)]
    message = grpc_response(InferResult({t.name: t for t in outputs}, id="3", model_name="m"))
    back = result_from_grpc(type(message).FromString(message.SerializeToString()))
    assert all(same(back.outputs[t.name], t) for t in outputs)


def test_grpc_answers_with_typed_contents_are_read_too() -> None:
    message = grpc_response(InferResult({}, model_name="m"))
    out = message.outputs.add(name="scores", datatype="FP32", shape=[2])
    out.contents.fp32_contents.extend([0.5, 0.25])
    result = result_from_grpc(message)
    assert result.outputs["scores"].data.tolist() == [0.5, 0.25]
