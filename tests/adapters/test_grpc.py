"""The gRPC adapter against real grpc.aio servers on loopback.

Two kinds of server: :class:`GrpcProviderServer` (ours, answering from a
handler function) and a bare servicer built from the generated code, which
records what arrived and answers whatever a test needs, including answers
our own server would never send.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

import detectflow.adapters.grpc as grpc_package
from detectflow.adapters.grpc import GrpcAdapter, GrpcProviderServer, GrpcStatusError
from detectflow.adapters.grpc import adapter as adapter_module
from detectflow.adapters.grpc.convert import (
    detections_from_response,
    frame_from_request,
    request_from_frame,
    response_from_detections,
)
from detectflow.adapters.grpc.endpoint import parse_endpoint
from detectflow.adapters.grpc.provider.v1 import provider_pb2 as pb
from detectflow.adapters.grpc.provider.v1 import provider_pb2_grpc
from detectflow.adapters.grpc.status import error_for_status
from detectflow.core.adapter import probe_frame
from detectflow.core.errors import (
    InvalidFrameError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from detectflow.core.frames import make_frame
from detectflow.core.images import encode_png
from detectflow.core.models import BBox, Frame, ProviderConfig, RawDetection
from detectflow.core.pipeline import RetryPolicy, run_frame
from detectflow.core.plugins import get_registry

pytestmark = pytest.mark.anyio

PNG = encode_png(4, 2, bytes(4 * 2 * 3))  # a 4 x 2 image
IMAGE = encode_png(640, 480, bytes(640 * 480 * 3))


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", autouse=True)
async def _one_event_loop_for_the_module(anyio_backend: str) -> AsyncIterator[None]:
    """Run every test of this module on one event loop.

    grpc.aio hands a completion to the loop its call was made on, even one
    that arrives after the call's test ended; on a fresh loop per test that
    loop may be closed by then, and the late completion fails the next test.
    """
    yield  # noqa: PT022 - holding the fixture open is what keeps the loop


def config(url: str, **changes: Any) -> ProviderConfig:
    values: dict[str, Any] = {
        "id": "grpc-1",
        "provider_name": "test",
        "provider_type": "grpc",
        "endpoint_url": url,
        "timeout_seconds": 5.0,
    }
    values.update(changes)
    return ProviderConfig(**values)


def frame(camera: str = "cam-1", number: int | None = 7) -> Frame:
    return make_frame(
        camera,
        IMAGE,
        max_bytes=1 << 20,
        frame_number=number,
        timestamp="2025-11-05T12:34:56.250Z",
    )


def person(frame: Frame) -> list[RawDetection]:
    return [RawDetection("person", 0.9, (0.1, 0.2, 0.5, 0.9), person_id=frame.frame_id)]


@pytest.fixture
async def server() -> AsyncIterator[GrpcProviderServer]:
    async with GrpcProviderServer(person) as running:
        yield running


# -- a bare servicer, for answers our own server never gives ----------------


@dataclass
class Recorder(provider_pb2_grpc.DetectionProviderServicer):
    """Records requests and metadata; answers with ``reply(request)``."""

    reply: Callable[[pb.DetectRequest], pb.DetectResponse] = lambda r: pb.DetectResponse(
        request_id=r.request_id
    )
    requests: list[pb.DetectRequest] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)

    async def Detect(self, request: pb.DetectRequest, context: Any) -> pb.DetectResponse:
        self.requests.append(request)
        self.metadata.append({k: v for k, v in context.invocation_metadata()})
        return self.reply(request)

    async def DetectStream(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for request in request_iterator:
            self.requests.append(request)
            yield self.reply(request)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, Recorder]]:
    servicer = Recorder()
    server = grpc.aio.server()
    provider_pb2_grpc.add_DetectionProviderServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"grpc://127.0.0.1:{port}", servicer
    finally:
        await server.stop(None)


# -- package and plugin ------------------------------------------------------


def test_package_exports_its_public_api() -> None:
    assert set(grpc_package.__all__) == {
        "DetectHandler",
        "GrpcAdapter",
        "GrpcProviderServer",
        "GrpcStatusError",
    }


def test_registers_provider_type_through_the_vendor_hook() -> None:
    registry = get_registry()
    name = "detectflow.adapters.grpc.adapter"
    if not registry.pm.has_plugin(name):
        assert registry.register(adapter_module, name, "detectflow", metadata.version("detectflow"))
    assert registry.provider_types()["grpc"] is GrpcAdapter
    made = registry.create_adapter(config("grpc://127.0.0.1:1"))
    assert isinstance(made, GrpcAdapter)


# -- the round trip ----------------------------------------------------------


async def test_boxes_are_normalized_through_run_frame() -> None:
    def handler(f: Frame) -> list[RawDetection]:
        return [
            RawDetection("person", 0.8, (64, 48, 320, 240), "xywh", "pixel", "p-1", "Ada"),
            RawDetection("car", 0.7, (0.5, 0.5, 0.75, 1.5), "xyxy", "fraction"),
        ]

    async with GrpcProviderServer(handler) as srv, GrpcAdapter(config(srv.url)) as adapter:
        result = await run_frame(frame(), adapter)
    assert result.ok, result.error
    people, cars = result.detections
    assert people.detection_type == "person"
    assert (people.person_id, people.person_name) == ("p-1", "Ada")
    assert people.confidence == 0.8
    assert people.bbox == BBox(0.1, 0.1, 0.5, 0.5)
    assert cars.detection_type == "vehicle"
    assert cars.bbox == BBox(0.5, 0.5, 0.25, 0.5)  # clamped at the frame's edge


async def test_request_carries_frame_threshold_and_api_key(
    recorder: tuple[str, Recorder],
) -> None:
    url, servicer = recorder
    sent = frame()
    async with GrpcAdapter(config(url, api_key="s3cret", confidence_threshold=0.35)) as adapter:
        assert await adapter.detect(sent) == []
    (request,) = servicer.requests
    assert request.camera_id == "cam-1"
    assert request.frame_id == sent.frame_id
    assert request.HasField("frame_number")
    assert request.frame_number == 7
    assert request.timestamp.ToDatetime(tzinfo=dt.UTC) == dt.datetime(
        2025, 11, 5, 12, 34, 56, 250000, tzinfo=dt.UTC
    )
    assert request.image == sent.image
    assert (request.width, request.height) == (640, 480)
    assert request.min_confidence == 0.35
    assert servicer.metadata[0]["authorization"] == "Bearer s3cret"


async def test_frame_without_number_or_key_sends_neither(recorder: tuple[str, Recorder]) -> None:
    url, servicer = recorder
    async with GrpcAdapter(config(url)) as adapter:
        await adapter.detect(frame(number=None))
    assert not servicer.requests[0].HasField("frame_number")
    assert "authorization" not in servicer.metadata[0]


async def test_frame_larger_than_grpc_default_limit_goes_through(
    server: GrpcProviderServer,
) -> None:
    big = make_frame("cam-1", PNG + bytes(6 * 1024 * 1024), max_bytes=16 << 20)
    async with GrpcAdapter(config(server.url)) as adapter:
        (found,) = await adapter.detect(big)
    assert found.person_id == big.frame_id


# -- failures and their classification ---------------------------------------


async def test_deadline_is_honoured() -> None:
    async with (
        GrpcProviderServer(person, latency=3.0) as srv,
        GrpcAdapter(config(srv.url, timeout_seconds=0.3)) as adapter,
    ):
        start = time.perf_counter()
        with pytest.raises(TransientProviderError, match="DEADLINE_EXCEEDED"):
            await adapter.detect(frame())
        assert time.perf_counter() - start < 1.5


TRANSIENT = ["UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"]
PERMANENT = [
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "UNIMPLEMENTED",
    "NOT_FOUND",
    "FAILED_PRECONDITION",
    "INTERNAL",
    "UNKNOWN",
]


@pytest.mark.parametrize(
    ("code", "error"),
    [(c, TransientProviderError) for c in TRANSIENT]
    + [(c, PermanentProviderError) for c in PERMANENT],
)
async def test_status_code_maps_to_error_kind(code: str, error: type[ProviderError]) -> None:
    status = grpc.StatusCode[code]

    def abort(f: Frame) -> list[RawDetection]:
        raise GrpcStatusError(status, "told to fail")

    async with GrpcProviderServer(abort) as srv, GrpcAdapter(config(srv.url)) as adapter:
        with pytest.raises(ProviderError) as caught:
            await adapter.detect(frame())
    assert type(caught.value) is error
    assert caught.value.message == f"gRPC {code}: told to fail"
    assert caught.value.status == status.value[0]


async def test_handler_exceptions_become_statuses(caplog: pytest.LogCaptureFixture) -> None:
    async def flaky(f: Frame) -> list[RawDetection]:
        if f.camera_id == "busy":
            raise TransientProviderError("GPU busy")
        if f.camera_id == "refused":
            raise PermanentProviderError("not a street scene")
        raise RuntimeError("model crashed")

    async with GrpcProviderServer(flaky) as srv, GrpcAdapter(config(srv.url)) as adapter:
        with pytest.raises(TransientProviderError, match="UNAVAILABLE: GPU busy"):
            await adapter.detect(frame("busy"))
        with pytest.raises(PermanentProviderError, match="INVALID_ARGUMENT: not a street"):
            await adapter.detect(frame("refused"))
        with pytest.raises(PermanentProviderError, match="INTERNAL: handler failed"):
            await adapter.detect(frame("crash"))
    assert "model crashed" in caplog.text


@pytest.mark.parametrize("key", [None, "wrong"])
async def test_missing_or_wrong_api_key_is_permanent(key: str | None) -> None:
    async with GrpcProviderServer(person, api_key="right") as srv:
        async with GrpcAdapter(config(srv.url, api_key=key)) as adapter:
            with pytest.raises(PermanentProviderError, match="UNAUTHENTICATED"):
                await adapter.detect(frame())
        async with GrpcAdapter(config(srv.url, api_key="right")) as adapter:
            assert len(await adapter.detect(frame())) == 1


async def test_connection_refused_is_transient(free_port: int) -> None:
    async with GrpcAdapter(config(f"grpc://127.0.0.1:{free_port}")) as adapter:
        start = time.perf_counter()
        with pytest.raises(TransientProviderError, match="UNAVAILABLE"):
            await adapter.detect(frame())
        assert time.perf_counter() - start < 2.0


async def test_refused_connection_fails_frame_after_retries(free_port: int) -> None:
    adapter = GrpcAdapter(config(f"grpc://127.0.0.1:{free_port}", max_retries=2))
    async with adapter:
        result = await run_frame(
            frame(), adapter, retry=RetryPolicy(max_retries=2, base_seconds=0.001)
        )
    assert result.attempts == 3
    assert result.error is not None
    assert result.error.startswith("transient provider error after 3 attempt(s): gRPC UNAVAILABLE")


def _bad_enum(r: pb.DetectRequest) -> pb.DetectResponse:
    response = pb.DetectResponse(request_id=r.request_id)
    response.detections.add(label="person", confidence=0.9, box=[0, 0, 1, 1], box_format=7)  # type: ignore[arg-type]
    return response


def _three_numbers(r: pb.DetectRequest) -> pb.DetectResponse:
    response = pb.DetectResponse(request_id=r.request_id)
    response.detections.add(label="person", confidence=0.9, box=[0, 0, 1])
    return response


def _bad_units(r: pb.DetectRequest) -> pb.DetectResponse:
    response = pb.DetectResponse(request_id=r.request_id)
    response.detections.add(label="person", confidence=0.9, box=[0, 0, 1, 1], units=5)  # type: ignore[arg-type]
    return response


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (_bad_enum, "unknown box_format 7"),
        (_bad_units, "unknown units 5"),
        (_three_numbers, "has 3 box numbers, not 4"),
        (lambda r: pb.DetectResponse(request_id="someone-else"), "does not echo"),
        (
            lambda r: pb.DetectResponse(request_id=r.request_id, error=pb.StreamError(code=8)),
            "gRPC RESOURCE_EXHAUSTED",
        ),
    ],
)
async def test_malformed_answer_is_permanent(
    recorder: tuple[str, Recorder],
    reply: Callable[[pb.DetectRequest], pb.DetectResponse],
    message: str,
) -> None:
    url, servicer = recorder
    servicer.reply = reply
    expected = TransientProviderError if "EXHAUSTED" in message else PermanentProviderError
    async with GrpcAdapter(config(url)) as adapter:
        with pytest.raises(ProviderError, match=message) as caught:
            await adapter.detect(frame())
    assert type(caught.value) is expected


async def test_undecodable_answer_is_permanent_and_counted_on_a_stream() -> None:
    """A service at our method paths answering bytes that are no DetectResponse."""
    garbage = b"\x0a\xff\xff\xff"  # field 1, with a length far past the end

    async def unary(request: bytes, context: Any) -> bytes:
        return garbage

    async def stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield garbage

    handler = grpc.method_handlers_generic_handler(
        "detectflow.provider.v1.DetectionProvider",
        {
            "Detect": grpc.unary_unary_rpc_method_handler(unary),
            "DetectStream": grpc.stream_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    url = f"grpc://127.0.0.1:{port}"
    try:
        async with GrpcAdapter(config(url)) as adapter:
            with pytest.raises(PermanentProviderError, match="not a DetectResponse"):
                await adapter.detect(frame())
        options = {"stream": True}
        async with GrpcAdapter(config(url, timeout_seconds=0.2, options=options)) as adapter:
            with pytest.raises(TransientProviderError, match="no answer"):
                await adapter.detect(frame())
            assert adapter.late_answers == 1
    finally:
        await server.stop(None)


async def test_server_refuses_invalid_frames(server: GrpcProviderServer) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = provider_pb2_grpc.DetectionProviderStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Detect(pb.DetectRequest(camera_id="cam-1", image=b"not an image"))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "frame is not a JPEG, PNG or WebP image"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Detect(pb.DetectRequest(camera_id="bad id!", image=PNG))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- health ------------------------------------------------------------------


async def test_health_reports_serving_then_not_serving(server: GrpcProviderServer) -> None:
    async with GrpcAdapter(config(server.url)) as adapter:
        healthy = await adapter.health()
        assert healthy.ok
        assert healthy.message == "Connection successful (SERVING)"
        await server.set_serving(False)
        sick = await adapter.health()
    assert not sick.ok
    assert sick.error == "health status NOT_SERVING"


async def test_health_of_unknown_service_fails(server: GrpcProviderServer) -> None:
    options = {"health_service": "acme.Other"}
    async with GrpcAdapter(config(server.url, options=options)) as adapter:
        result = await adapter.health()
    assert not result.ok
    assert result.error is not None
    assert "NOT_FOUND" in result.error


async def test_health_of_unreachable_provider_fails(free_port: int) -> None:
    async with GrpcAdapter(config(f"grpc://127.0.0.1:{free_port}")) as adapter:
        result = await adapter.health()
    assert not result.ok
    assert result.message == "Connection failed"


async def test_health_without_health_service_round_trips_a_probe(
    recorder: tuple[str, Recorder],
) -> None:
    url, servicer = recorder
    async with GrpcAdapter(config(url)) as adapter:
        result = await adapter.health()
    assert result.ok
    assert result.message == "Connection successful (0 detections)"
    assert servicer.requests[0].camera_id == probe_frame().camera_id


# -- concurrency and streams -------------------------------------------------


async def _jittery(f: Frame) -> list[RawDetection]:
    await asyncio.sleep(random.uniform(0, 0.02))
    return [RawDetection(f.camera_id, 0.5, (0, 0, 1, 1), person_id=f.frame_id)]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_hundred_concurrent_detects_get_their_own_answers(stream: bool) -> None:
    frames = [frame(f"cam-{i}", number=i) for i in range(100)]
    async with (
        GrpcProviderServer(_jittery) as srv,
        GrpcAdapter(config(srv.url, options={"stream": stream})) as adapter,
    ):
        answers = await asyncio.gather(*(adapter.detect(f) for f in frames))
    for f, (found,) in zip(frames, answers, strict=True):
        assert (found.label, found.person_id) == (f.camera_id, f.frame_id)


async def test_stream_answers_out_of_order_and_fails_one_frame_alone() -> None:
    order: list[str] = []

    async def handler(f: Frame) -> list[RawDetection]:
        await asyncio.sleep(0.2 if f.camera_id == "slow" else 0.0)
        if f.camera_id == "bad":
            raise PermanentProviderError("refused")
        order.append(f.camera_id)
        return person(f)

    async with (
        GrpcProviderServer(handler) as srv,
        GrpcAdapter(config(srv.url, options={"stream": "true"})) as adapter,
    ):
        slow = asyncio.ensure_future(adapter.detect(frame("slow")))
        await asyncio.sleep(0.05)
        fast = await adapter.detect(frame("fast"))
        with pytest.raises(PermanentProviderError, match="INVALID_ARGUMENT: refused"):
            await adapter.detect(frame("bad"))
        assert not slow.done()
        assert len(await slow) == 1
    assert len(fast) == 1
    assert order == ["fast", "slow"]


async def test_stream_counts_answers_that_come_too_late() -> None:
    async def handler(f: Frame) -> list[RawDetection]:
        await asyncio.sleep(0.4 if f.camera_id == "late" else 0.0)
        return person(f)

    async with (
        GrpcProviderServer(handler) as srv,
        GrpcAdapter(config(srv.url, timeout_seconds=0.1, options={"stream": True})) as adapter,
    ):
        with pytest.raises(TransientProviderError, match=r"within 0\.1 s"):
            await adapter.detect(frame("late"))
        assert adapter.late_answers == 0
        await asyncio.sleep(0.5)
        assert len(await adapter.detect(frame("on-time"))) == 1
        assert adapter.late_answers == 1


async def test_stream_break_fails_waiters_and_reopens(free_port: int) -> None:
    async def handler(f: Frame) -> list[RawDetection]:
        await asyncio.sleep(5.0 if f.camera_id == "stuck" else 0.0)
        return person(f)

    first = GrpcProviderServer(handler, port=free_port)
    await first.start()
    async with GrpcAdapter(config(first.url, options={"stream": True})) as adapter:
        stuck = asyncio.ensure_future(adapter.detect(frame("stuck")))
        await asyncio.sleep(0.1)
        await first.stop()
        with pytest.raises(TransientProviderError):
            await stuck
        async with GrpcProviderServer(handler, port=free_port):
            assert len(await adapter.detect(frame("after"))) == 1


async def test_stream_with_wrong_key_is_permanent() -> None:
    async with (
        GrpcProviderServer(person, api_key="right") as srv,
        GrpcAdapter(config(srv.url, api_key="wrong", options={"stream": True})) as adapter,
    ):
        with pytest.raises(PermanentProviderError, match="UNAUTHENTICATED"):
            await adapter.detect(frame())


# -- lifecycle ---------------------------------------------------------------


async def test_aclose_is_idempotent_and_adapter_reopens(server: GrpcProviderServer) -> None:
    for stream in (False, True):
        adapter = GrpcAdapter(config(server.url, options={"stream": stream}))
        await adapter.aclose()  # never opened
        assert len(await adapter.detect(frame())) == 1
        await adapter.aclose()
        await adapter.aclose()
        assert len(await adapter.detect(frame())) == 1  # lazily reopened
        await adapter.aclose()


async def test_aclose_fails_stream_detects_in_flight() -> None:
    async def slow(f: Frame) -> list[RawDetection]:
        await asyncio.sleep(5.0)
        return person(f)

    async with GrpcProviderServer(slow) as srv:
        adapter = GrpcAdapter(config(srv.url, options={"stream": True}))
        pending = asyncio.ensure_future(adapter.detect(frame()))
        await asyncio.sleep(0.1)
        await adapter.aclose()
        with pytest.raises(TransientProviderError, match="adapter was closed"):
            await pending


async def test_server_stop_is_idempotent_and_health_needs_a_started_server() -> None:
    srv = GrpcProviderServer(person)
    with pytest.raises(RuntimeError, match="not started"):
        await srv.set_serving(True)
    await srv.start()
    assert srv.port > 0
    assert srv.url == f"grpc://127.0.0.1:{srv.port}"
    await srv.stop()
    await srv.stop()


# -- TLS -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca_file.write_bytes(cert_pem)
    return key_pem, cert_pem, ca_file


async def test_grpcs_verifies_against_ca_file(tls_files: tuple[bytes, bytes, Path]) -> None:
    key_pem, cert_pem, ca_file = tls_files
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
    async with GrpcProviderServer(person, credentials=credentials) as srv:
        assert srv.url.startswith("grpcs://")
        options = {"ca_file": str(ca_file)}
        async with GrpcAdapter(config(srv.url, options=options)) as adapter:
            assert len(await adapter.detect(frame())) == 1
        async with GrpcAdapter(config(srv.url)) as untrusting:  # system roots only
            with pytest.raises(TransientProviderError, match="UNAVAILABLE"):
                await untrusting.detect(frame())
        async with GrpcAdapter(config(srv.url.replace("grpcs", "grpc"))) as plaintext:
            with pytest.raises(TransientProviderError, match="UNAVAILABLE"):
                await plaintext.detect(frame())


# -- configuration -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "changes", "message"),
    [
        ("http://127.0.0.1:1", {}, "must start with grpc:// or grpcs://"),
        ("grpc://", {}, "has no host"),
        ("grpc://host:99999", {}, "bad port"),
        ("grpc://host:1/detect", {}, "takes no path"),
        ("grpc://host:1", {"options": {"ca_file": "/etc/hosts"}}, "needs a grpcs://"),
        ("grpcs://host:1", {"options": {"ca_file": "/nope.pem"}}, "not a readable file"),
        ("grpc://host:1", {"timeout_seconds": 0}, "timeout_seconds must be > 0"),
        ("grpc://host:1", {"timeout_seconds": math.nan}, "timeout_seconds must be > 0"),
        ("grpc://host:1", {"options": {"stream": "sometimes"}}, "must be true or false"),
    ],
)
def test_bad_config_is_refused_clearly(url: str, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PermanentProviderError, match=message):
        GrpcAdapter(config(url, **changes))


@pytest.mark.parametrize(
    ("url", "target", "tls"),
    [
        ("grpc://detector", "detector:50051", False),
        ("grpcs://detector.example.com", "detector.example.com:443", True),
        ("GRPC://10.0.0.5:9000/", "10.0.0.5:9000", False),
        ("grpc://[::1]:7000", "[::1]:7000", False),
    ],
)
def test_endpoint_targets(url: str, target: str, tls: bool) -> None:
    endpoint = parse_endpoint(url)
    assert (endpoint.target, endpoint.tls) == (target, tls)


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    port=st.integers(1, 65535),
    tls=st.booleans(),
)
def test_endpoint_parsing_keeps_host_and_port(host: str, port: int, tls: bool) -> None:
    endpoint = parse_endpoint(f"{'grpcs' if tls else 'grpc'}://{host}:{port}")
    assert endpoint.target == f"{host}:{port}"
    assert endpoint.tls is tls


# -- conversion (property tests) -----------------------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False)
optional_text = st.none() | st.text(max_size=20)


@given(
    st.lists(
        st.builds(
            RawDetection,
            label=st.text(max_size=20),
            confidence=st.floats(0, 1),
            box=st.tuples(finite, finite, finite, finite),
            box_format=st.sampled_from(["xyxy", "xywh"]),
            units=st.sampled_from(["fraction", "pixel"]),
            person_id=optional_text,
            person_name=optional_text,
        ),
        max_size=5,
    )
)
def test_detections_survive_the_wire(detections: list[RawDetection]) -> None:
    wire = response_from_detections("r-1", detections).SerializeToString()
    assert detections_from_response(pb.DetectResponse.FromString(wire)) == detections


@given(
    camera=st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True),
    number=st.none() | st.integers(0, 2**63),
    when=st.datetimes(
        min_value=dt.datetime(1970, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.just(dt.UTC),
    ),
    threshold=st.floats(0, 1),
)
def test_frames_survive_the_wire(
    camera: str, number: int | None, when: dt.datetime, threshold: float
) -> None:
    sent = make_frame(camera, PNG, max_bytes=1024, frame_number=number, timestamp=when)
    wire = request_from_frame(sent, "r-9", threshold).SerializeToString()
    request = pb.DetectRequest.FromString(wire)
    assert request.request_id == "r-9"
    assert request.min_confidence == threshold
    assert frame_from_request(request, max_bytes=1024) == sent


@pytest.mark.parametrize("threshold", [-0.1, 1.5, math.nan])
def test_server_refuses_threshold_outside_unit_range(threshold: float) -> None:
    request = request_from_frame(frame(), "r", threshold)
    with pytest.raises(InvalidFrameError, match="min_confidence"):
        frame_from_request(request, max_bytes=1 << 20)


def test_status_numbers_from_stream_answers_map_like_statuses() -> None:
    assert isinstance(error_for_status(14, "down"), TransientProviderError)
    assert error_for_status(14, "down").message == "gRPC UNAVAILABLE: down"
    unknown = error_for_status(99, None)
    assert isinstance(unknown, PermanentProviderError)
    assert unknown.message == "gRPC UNKNOWN(99)"


# -- last, because its event loops end before the module's ---------------------


def test_thread_runner_serves_sync_callers() -> None:
    calls: list[str] = []

    def blocking(f: Frame) -> list[RawDetection]:
        time.sleep(0.01)  # a sync detector; runs off the server's loop
        calls.append(f.camera_id)
        return person(f)

    server = GrpcProviderServer(blocking, sync_in_thread=True)
    with server.running_in_thread() as srv, grpc.insecure_channel(srv.target) as channel:
        stub = provider_pb2_grpc.DetectionProviderStub(channel)
        response = stub.Detect(request_from_frame(frame(), "r-1", 0.5), timeout=5)
    assert response.request_id == "r-1"
    assert [d.label for d in response.detections] == ["person"]
    assert calls == ["cam-1"]
