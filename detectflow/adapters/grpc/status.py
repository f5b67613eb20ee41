"""Which gRPC status codes are worth a retry.

The dataflow's retry step only asks "transient or permanent?", so every
status a provider (or the channel itself) can produce lands on one side.
Transient: the provider is down, busy or slow, or the call was cut short by
the peer (UNAVAILABLE also covers "connection refused"). Everything else,
including INTERNAL and UNKNOWN (a provider that crashes on a frame will
crash on it again) is permanent.
"""

from __future__ import annotations

import grpc

from detectflow.core.errors import PermanentProviderError, ProviderError, TransientProviderError

__all__ = ["TRANSIENT_CODES", "error_for_rpc", "error_for_status"]

TRANSIENT_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)

_BY_VALUE: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def error_for_status(code: grpc.StatusCode | int, details: str | None) -> ProviderError:
    """The provider error for a status; ``code`` may be a number from a stream answer."""
    if isinstance(code, int):
        status = _BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
        name = status.name if code in _BY_VALUE else f"UNKNOWN({code})"
    else:
        status, name = code, code.name
    message = f"gRPC {name}: {details}" if details else f"gRPC {name}"
    cls = TransientProviderError if status in TRANSIENT_CODES else PermanentProviderError
    return cls(message, status=status.value[0])


def error_for_rpc(error: grpc.aio.AioRpcError) -> ProviderError:
    return error_for_status(error.code(), error.details())
