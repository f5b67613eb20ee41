"""Serve a detect function as a ``detectflow.provider.v1`` gRPC provider.

What ``detectflow simulate --protocol grpc`` serves, and the shortest way for
a vendor to put an in-process detector behind gRPC::

    async def detect(frame: Frame) -> list[RawDetection]: ...

    server = GrpcProviderServer(detect, port=50051, api_key="secret")
    await server.start()        # server.target == "127.0.0.1:50051"

Requests are validated as every detectflow source validates frames (bad
ones get INVALID_ARGUMENT). The handler chooses the status of a failure by
what it raises: :class:`TransientProviderError` -> UNAVAILABLE,
:class:`PermanentProviderError` -> INVALID_ARGUMENT, :class:`GrpcStatusError`
-> its own code, anything else -> INTERNAL. On ``DetectStream`` frames are
answered concurrently, each answer carrying its request's ``request_id``, and
a failed frame gets an answer with ``error`` set instead of ending the
stream. Pass ``credentials`` (``grpc.ssl_server_credentials(...)``) to serve
TLS. ``grpc.health.v1`` reports SERVING for ``""`` and for the service
name until :meth:`GrpcProviderServer.set_serving` says otherwise; it needs no
API key, so orchestrators can probe it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Self

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from detectflow.adapters.grpc.convert import frame_from_request, response_from_detections
from detectflow.adapters.grpc.endpoint import MAX_MESSAGE_BYTES
from detectflow.adapters.grpc.provider.v1 import provider_pb2 as pb
from detectflow.adapters.grpc.provider.v1 import provider_pb2_grpc
from detectflow.core.errors import InvalidFrameError, ProviderError
from detectflow.core.models import Frame, RawDetection

__all__ = ["SERVICE_NAME", "DetectHandler", "GrpcProviderServer", "GrpcStatusError"]

log = logging.getLogger(__name__)

SERVICE_NAME = "detectflow.provider.v1.DetectionProvider"

DetectHandler = Callable[[Frame], list[RawDetection] | Awaitable[list[RawDetection]]]

_Context = grpc.aio.ServicerContext[pb.DetectRequest, pb.DetectResponse]


class GrpcStatusError(Exception):
    """Raise from a handler to answer with a specific gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class GrpcProviderServer:
    """A grpc.aio server answering DetectionProvider and Health from ``handler``."""

    def __init__(
        self,
        handler: DetectHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        latency: float = 0.0,
        sync_in_thread: bool = False,
        max_frame_bytes: int = MAX_MESSAGE_BYTES,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.api_key = api_key
        self.latency = latency
        self.sync_in_thread = sync_in_thread
        self.max_frame_bytes = max_frame_bytes
        self.credentials = credentials
        self._server: grpc.aio.Server | None = None
        self._health: Any = None

    @property
    def target(self) -> str:
        return f"{self._host_part()}:{self.port}"

    def _host_part(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        """The ``endpoint_url`` a :class:`GrpcAdapter` config points at."""
        scheme = "grpc" if self.credentials is None else "grpcs"
        return f"{scheme}://{self.target}"

    async def start(self) -> None:
        """Bind and start serving; with ``port=0`` the bound port is in ``.port``."""
        if self._server is not None:
            return
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_frame_bytes + 64 * 1024),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        provider_pb2_grpc.add_DetectionProviderServicer_to_server(_Servicer(self), server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if self.credentials is None:
            port = server.add_insecure_port(self.target)
        else:
            port = server.add_secure_port(self.target, self.credentials)
        if port == 0:
            raise OSError(f"cannot bind gRPC server to {self.host}:{self.port}")
        self.port = port
        await server.start()
        self._server = server
        await self.set_serving(True)

    async def set_serving(self, serving: bool) -> None:
        """Flip what ``grpc.health.v1`` reports (SERVING or NOT_SERVING)."""
        if self._health is None:
            raise RuntimeError("the server is not started")
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            await self._health.set(service, status)

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving; calls in flight get ``grace`` seconds to finish. Idempotent."""
        server, self._server = self._server, None
        self._health = None
        if server is not None:
            await server.stop(grace)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[Self]:
        """Serve from an event loop in a background thread (for sync callers)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="detectflow-grpc", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=30)
            yield self
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()

    # -- answering -------------------------------------------------------

    def authorized(self, context: _Context) -> bool:
        if self.api_key is None:
            return True
        expected = f"Bearer {self.api_key}".encode()
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, expected)
        return False

    async def answer(self, request: pb.DetectRequest) -> pb.DetectResponse:
        """Run the handler on one request; failures raise :class:`GrpcStatusError`."""
        try:
            frame = frame_from_request(request, max_bytes=self.max_frame_bytes)
        except InvalidFrameError as exc:
            raise GrpcStatusError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        try:
            detections = await self._call_handler(frame)
            return response_from_detections(request.request_id, detections)
        except GrpcStatusError:
            raise
        except ProviderError as exc:
            code = (
                grpc.StatusCode.UNAVAILABLE if exc.transient else grpc.StatusCode.INVALID_ARGUMENT
            )
            raise GrpcStatusError(code, exc.message) from None
        except Exception as exc:
            log.exception("gRPC provider handler failed on frame %s", request.frame_id)
            raise GrpcStatusError(grpc.StatusCode.INTERNAL, f"handler failed: {exc!r}") from None

    async def _call_handler(self, frame: Frame) -> list[RawDetection]:
        if self.sync_in_thread and not inspect.iscoroutinefunction(self.handler):
            result = await asyncio.to_thread(self.handler, frame)
        else:
            result = self.handler(frame)
        if inspect.isawaitable(result):
            return await result
        return result


class _Servicer(provider_pb2_grpc.DetectionProviderServicer):
    def __init__(self, owner: GrpcProviderServer) -> None:
        self.owner = owner

    async def Detect(self, request: pb.DetectRequest, context: _Context) -> pb.DetectResponse:
        if not self.owner.authorized(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key")
        try:
            return await self.owner.answer(request)
        except GrpcStatusError as exc:
            await context.abort(exc.code, exc.details)

    async def DetectStream(
        self, request_iterator: AsyncIterator[pb.DetectRequest], context: _Context
    ) -> AsyncIterator[pb.DetectResponse]:
        if not self.owner.authorized(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key")
        answers: asyncio.Queue[pb.DetectResponse | None] = asyncio.Queue()

        async def answer(request: pb.DetectRequest) -> None:
            try:
                response = await self.owner.answer(request)
            except GrpcStatusError as exc:
                response = pb.DetectResponse(
                    request_id=request.request_id,
                    error=pb.StreamError(code=exc.code.value[0], message=exc.details),
                )
            answers.put_nowait(response)

        async def pump() -> None:
            try:
                async with asyncio.TaskGroup() as group:
                    async for request in request_iterator:
                        group.create_task(answer(request))
            finally:
                answers.put_nowait(None)

        pump_task = asyncio.get_running_loop().create_task(pump())
        try:
            while (response := await answers.get()) is not None:
                yield response
            await pump_task
        finally:
            if not pump_task.done():
                pump_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump_task
