"""Where a gRPC provider lives and how to open a channel to it.

``endpoint_url`` is ``grpc://host:port`` (plaintext, for loopback and
trusted networks) or ``grpcs://host:port`` (TLS, verified against the
system roots or ``options["ca_file"]``). The URL is checked when the adapter
is built, so a typo fails the provider test at once instead of becoming a
"transient" outage retried forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from detectflow.core.errors import PermanentProviderError

__all__ = ["DEFAULT_PORTS", "MAX_MESSAGE_BYTES", "Endpoint", "open_channel", "parse_endpoint"]

DEFAULT_PORTS = {"grpc": 50051, "grpcs": 443}

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""gRPC's default 4 MiB receive limit is below detectflow's 10 MiB frames."""

_USER_AGENT = "detectflow-grpc-adapter"


@dataclass(frozen=True, slots=True)
class Endpoint:
    target: str  # host:port, as grpc wants it
    tls: bool
    ca_file: Path | None = None


def parse_endpoint(url: str, options: Mapping[str, Any] | None = None) -> Endpoint:
    """Parse ``grpc[s]://host[:port]``; raises :class:`PermanentProviderError`."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise PermanentProviderError(
            f"gRPC endpoint_url must start with grpc:// or grpcs://, got {url!r}"
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise PermanentProviderError(f"gRPC endpoint_url has a bad port: {url!r}") from None
    if not host:
        raise PermanentProviderError(f"gRPC endpoint_url has no host: {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise PermanentProviderError(
            f"gRPC endpoint_url takes no path or query (the service name is fixed): {url!r}"
        )
    host_part = f"[{host}]" if ":" in host else host
    target = f"{host_part}:{port or DEFAULT_PORTS[scheme]}"
    ca = (options or {}).get("ca_file")
    if ca is not None and scheme != "grpcs":
        raise PermanentProviderError("options.ca_file needs a grpcs:// endpoint_url")
    ca_file = Path(str(ca)) if ca is not None else None
    if ca_file is not None and not ca_file.is_file():
        raise PermanentProviderError(f"options.ca_file {str(ca_file)!r} is not a readable file")
    return Endpoint(target, scheme == "grpcs", ca_file)


def open_channel(endpoint: Endpoint) -> grpc.aio.Channel:
    """A channel bound to the running event loop; it connects on first call."""
    options = [
        ("grpc.primary_user_agent", _USER_AGENT),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if not endpoint.tls:
        return grpc.aio.insecure_channel(endpoint.target, options=options)
    roots = endpoint.ca_file.read_bytes() if endpoint.ca_file is not None else None
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.aio.secure_channel(endpoint.target, credentials, options=options)
