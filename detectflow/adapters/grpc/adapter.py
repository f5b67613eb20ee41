"""Provider type ``grpc``: detection services speaking ``detectflow.provider.v1``.

Config: ``endpoint_url`` ``grpc://host:port`` or ``grpcs://host:port``
(see :mod:`.endpoint`); ``timeout_seconds`` is each call's deadline;
``api_key`` goes out as metadata ``authorization: Bearer <key>``;
``confidence_threshold`` is sent as ``min_confidence``. Options:

``stream`` (default false)
    Send frames on one long-lived ``DetectStream`` call instead of one unary
    ``Detect`` call each (see :mod:`.stream`).
``ca_file``
    PEM roots to verify a ``grpcs://`` provider against, instead of the
    system's.
``health_service`` (default ``""``, the whole server)
    The service name asked in ``grpc.health.v1.Health/Check``.

Statuses map as :mod:`.status` says; a malformed answer is permanent. The
channel is opened on first use inside the running event loop and bound to
it, so use one adapter per event loop; :meth:`GrpcAdapter.aclose` closes it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from detectflow.adapters.grpc.convert import detections_from_response, request_from_frame
from detectflow.adapters.grpc.endpoint import open_channel, parse_endpoint
from detectflow.adapters.grpc.provider.v1 import provider_pb2_grpc
from detectflow.adapters.grpc.status import error_for_rpc, error_for_status
from detectflow.adapters.grpc.stream import StreamClient
from detectflow.core.adapter import ProviderAdapter
from detectflow.core.errors import PermanentProviderError
from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, ProbeResult, ProviderConfig, RawDetection

if TYPE_CHECKING:
    from detectflow.adapters.grpc.provider.v1.provider_pb2_grpc import (
        DetectionProviderAsyncStub,
    )

__all__ = ["GrpcAdapter", "detectflow_provider_types"]

_SERVING = 1  # grpc.health.v1.HealthCheckResponse.SERVING


class GrpcAdapter(ProviderAdapter):
    """A gRPC detection provider behind one lazily opened channel."""

    provider_type = "grpc"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        options = config.options
        self.endpoint = parse_endpoint(config.endpoint_url, options)
        if not config.timeout_seconds > 0:
            raise PermanentProviderError(
                f"timeout_seconds must be > 0, got {config.timeout_seconds!r}"
            )
        self.timeout = float(config.timeout_seconds)
        self.use_stream = _flag(options, "stream")
        self.health_service = str(options.get("health_service", ""))
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {config.api_key}"),) if config.api_key else ()
        )
        self._ids = itertools.count(1)
        self._channel: grpc.aio.Channel | None = None
        self._stub: DetectionProviderAsyncStub | None = None
        self._stream: StreamClient | None = None

    def _provider(self) -> DetectionProviderAsyncStub:
        if self._stub is None:
            self._channel = open_channel(self.endpoint)
            self._stub = provider_pb2_grpc.DetectionProviderStub(self._channel)
        return self._stub

    @property
    def late_answers(self) -> int:
        """Stream answers dropped because nobody waited for them any more."""
        return self._stream.unmatched if self._stream is not None else 0

    async def detect(self, frame: Frame) -> list[RawDetection]:
        stub = self._provider()
        if self.use_stream:
            if self._stream is None:
                self._stream = StreamClient(
                    stub,
                    metadata=self.metadata,
                    timeout=self.timeout,
                    min_confidence=self.config.confidence_threshold,
                )
            return await self._stream.detect(frame)
        request_id = str(next(self._ids))
        request = request_from_frame(frame, request_id, self.config.confidence_threshold)
        try:
            response = await stub.Detect(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            raise error_for_rpc(exc) from None
        if response is None:  # grpc.aio's answer to bytes that are no DetectResponse
            raise PermanentProviderError("malformed provider answer: not a DetectResponse")
        if response.HasField("error"):
            raise error_for_status(response.error.code, response.error.message)
        if response.request_id not in ("", request_id):
            raise PermanentProviderError(
                f"malformed provider answer: request_id {response.request_id!r} "
                f"does not echo {request_id!r}"
            )
        return detections_from_response(response)

    async def health(self) -> ProbeResult:
        """Ask ``grpc.health.v1``; a provider without it gets the probe-frame round trip."""
        self._provider()
        start = time.perf_counter()
        stub: Any = health_pb2_grpc.HealthStub(self._channel)
        request: Any = health_pb2.HealthCheckRequest(service=self.health_service)
        try:
            response: Any = await stub.Check(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return await super().health()
            elapsed = (time.perf_counter() - start) * 1000
            return ProbeResult(False, elapsed, "Connection failed", error_for_rpc(exc).message)
        elapsed = (time.perf_counter() - start) * 1000
        status = str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
        if response.status == _SERVING:
            return ProbeResult(True, elapsed, f"Connection successful ({status})")
        return ProbeResult(False, elapsed, "Provider not serving", f"health status {status}")

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        channel, self._channel = self._channel, None
        self._stub = None
        if stream is not None:
            await stream.aclose()
        if channel is not None:
            await channel.close()


def _flag(options: Mapping[str, Any], name: str) -> bool:
    value = options.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise PermanentProviderError(f"option {name!r} must be true or false, got {value!r}")


@hookimpl
def detectflow_provider_types() -> Iterable[type[ProviderAdapter]]:
    return [GrpcAdapter]
