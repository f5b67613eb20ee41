"""Provider type ``grpc``: the adapter, its protocol and a ready server.

The protocol is ``detectflow/adapters/grpc/provider/v1/provider.proto``
(package ``detectflow.provider.v1``, service ``DetectionProvider``); its
generated modules live beside it and are remade only by ``scripts/gen-grpc``.
:class:`GrpcAdapter` is the client detectflow uses; :class:`GrpcProviderServer`
serves any detect function over the same protocol.
"""

from detectflow.adapters.grpc.adapter import GrpcAdapter
from detectflow.adapters.grpc.server import DetectHandler, GrpcProviderServer, GrpcStatusError

__all__ = ["DetectHandler", "GrpcAdapter", "GrpcProviderServer", "GrpcStatusError"]
