"""Many detects on one long-lived ``DetectStream`` call.

A unary call per frame costs a new HTTP/2 stream each time; a provider that
batches frames (Triton-style) wants them arriving on one stream instead.
Each request carries a fresh ``request_id``; a reader task hands every
answer to the caller waiting for that id, so answers may come back in any
order. A caller waits at most ``timeout_seconds``; an answer that arrives
later, or for an id nobody waits for, is dropped and counted in
:attr:`StreamClient.unmatched`. When the stream breaks, every caller still
waiting gets the stream's error and the next detect opens a new stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

import grpc

from detectflow.adapters.grpc.convert import detections_from_response, request_from_frame
from detectflow.adapters.grpc.provider.v1 import provider_pb2 as pb
from detectflow.adapters.grpc.status import error_for_rpc, error_for_status
from detectflow.core.errors import ProviderError, TransientProviderError
from detectflow.core.models import Frame, RawDetection

if TYPE_CHECKING:
    from detectflow.adapters.grpc.provider.v1.provider_pb2_grpc import (
        DetectionProviderAsyncStub,
    )

__all__ = ["StreamClient"]

log = logging.getLogger(__name__)

_Call = grpc.aio.StreamStreamCall[pb.DetectRequest, pb.DetectResponse]


class _Stream:
    """One open DetectStream call, its outgoing queue and its waiters."""

    def __init__(self, client: StreamClient, stub: DetectionProviderAsyncStub) -> None:
        self.client = client
        self.outbox: asyncio.Queue[pb.DetectRequest | None] = asyncio.Queue()
        self.waiters: dict[str, asyncio.Future[pb.DetectResponse]] = {}
        self.call: _Call = stub.DetectStream(self._requests(), metadata=client.metadata)
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _requests(self) -> AsyncIterator[pb.DetectRequest]:
        while (request := await self.outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        error: ProviderError
        try:
            async for response in self.call:
                if response is None:  # undecodable: whose answer it was is unknowable
                    self.client.unmatched += 1
                    log.warning("dropped a detect stream answer that is no DetectResponse")
                    continue
                waiter = self.waiters.get(response.request_id)
                if waiter is None or waiter.done():
                    self.client.unmatched += 1
                    log.debug("dropped a stream answer nobody waits for: %r", response.request_id)
                    continue
                waiter.set_result(response)
            error = TransientProviderError("the provider ended the detect stream")
        except grpc.aio.AioRpcError as exc:
            error = error_for_rpc(exc)
        except asyncio.CancelledError:
            self._fail_all(lambda: TransientProviderError("the gRPC adapter was closed"))
            raise
        finally:
            # End the request generator: grpc's task draining it is not
            # cancelled when the call ends by itself, and would hang forever.
            self.outbox.put_nowait(None)
        self._fail_all(lambda: type(error)(error.message, status=error.status))

    def _fail_all(self, make_error: Callable[[], ProviderError]) -> None:
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.set_exception(make_error())

    async def close(self) -> None:
        self.outbox.put_nowait(None)
        self.call.cancel()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


class StreamClient:
    """Multiplexes detects over one DetectStream call, reopened when it breaks."""

    def __init__(
        self,
        stub: DetectionProviderAsyncStub,
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float,
        min_confidence: float,
    ) -> None:
        self.stub = stub
        self.metadata = tuple(metadata)
        self.timeout = timeout
        self.min_confidence = min_confidence
        self.unmatched = 0
        self._ids = itertools.count(1)
        self._stream: _Stream | None = None

    def _open(self) -> _Stream:
        if self._stream is None or self._stream.reader.done():
            self._stream = _Stream(self, self.stub)
        return self._stream

    async def detect(self, frame: Frame) -> list[RawDetection]:
        stream = self._open()
        request_id = str(next(self._ids))
        waiter = asyncio.get_running_loop().create_future()
        stream.waiters[request_id] = waiter
        try:
            stream.outbox.put_nowait(request_from_frame(frame, request_id, self.min_confidence))
            async with asyncio.timeout(self.timeout):
                response = await waiter
        except TimeoutError:
            raise TransientProviderError(
                f"no answer on the detect stream within {self.timeout:g} s"
            ) from None
        finally:
            del stream.waiters[request_id]
        if response.HasField("error"):
            raise error_for_status(response.error.code, response.error.message)
        return detections_from_response(response)

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()
