"""Where a KServe v2 model lives: the ``endpoint_url`` of a ``kserve`` provider.

Two spellings, one per wire:

- ``http(s)://host[:port][/prefix]/v2/models/<model>[/versions/<version>]``:
  the REST protocol. Anything before ``/v2/`` is kept (a gateway's path
  prefix); the model URL is what metadata, ``/ready`` and ``/infer`` hang off.
- ``grpc(s)://host[:port]/<model>[/<version>]``: ``inference.GRPCInferenceService``.

The URL is parsed when the adapter is built, so a typo fails ``provider add``
and ``provider test`` at once instead of becoming an outage retried forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from detectflow.core.errors import PermanentProviderError

__all__ = ["ModelEndpoint", "parse_model_url"]

Wire = Literal["rest", "grpc"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 8081, "grpcs": 443}
_WIRES: dict[str, Wire] = {"http": "rest", "https": "rest", "grpc": "grpc", "grpcs": "grpc"}


@dataclass(frozen=True, slots=True)
class ModelEndpoint:
    """One model (and optionally one version) on one inference server."""

    wire: Wire
    tls: bool
    host: str
    port: int
    model: str
    version: str = ""
    prefix: str = ""  # REST only: the path before /v2/

    @property
    def target(self) -> str:
        """``host:port`` as grpc wants it (IPv6 hosts bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def model_url(self) -> str:
        """REST: ``.../v2/models/<model>[/versions/<version>]``, the base of every call."""
        scheme = "https" if self.tls else "http"
        path = f"{self.prefix}/v2/models/{quote(self.model, safe='')}"
        if self.version:
            path += f"/versions/{quote(self.version, safe='')}"
        return f"{scheme}://{self.target}{path}"

    def describe(self) -> str:
        """The model as people name it: ``yolo`` or ``yolo (version 2)``."""
        return f"{self.model} (version {self.version})" if self.version else self.model


def parse_model_url(url: str) -> ModelEndpoint:
    """Parse either spelling; raises :class:`PermanentProviderError` naming what is wrong."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    wire = _WIRES.get(scheme)
    if wire is None:
        raise PermanentProviderError(
            "kserve endpoint_url must start with http://, https://, grpc:// or grpcs://, "
            f"got {url!r}"
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise PermanentProviderError(f"kserve endpoint_url has a bad port: {url!r}") from None
    if not host:
        raise PermanentProviderError(f"kserve endpoint_url has no host: {url!r}")
    if parts.query or parts.fragment:
        raise PermanentProviderError(f"kserve endpoint_url takes no query or fragment: {url!r}")
    segments = [unquote(s) for s in parts.path.split("/")]
    if wire == "rest":
        prefix, model, version = _rest_path(segments, url)
    else:
        prefix, model, version = "", *_grpc_path(segments, url)
    return ModelEndpoint(
        wire=wire,
        tls=scheme in ("https", "grpcs"),
        host=host,
        port=port or _DEFAULT_PORTS[scheme],
        model=model,
        version=version,
        prefix=prefix,
    )


def _rest_path(segments: list[str], url: str) -> tuple[str, str, str]:
    # segments of "/p/v2/models/m/versions/1" are ["", "p", "v2", "models", "m", "versions", "1"]
    parts = segments[1:]
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    for start in range(len(parts) - 1):
        if parts[start] == "v2" and parts[start + 1] == "models":
            rest = parts[start + 2 :]
            prefix = "".join(f"/{quote(p, safe='')}" for p in parts[:start])
            if len(rest) == 1 and rest[0]:
                return prefix, rest[0], ""
            if len(rest) == 3 and rest[0] and rest[1] == "versions" and rest[2]:
                return prefix, rest[0], rest[2]
            break
    raise PermanentProviderError(
        "kserve REST endpoint_url must end in /v2/models/<model> or "
        f"/v2/models/<model>/versions/<version>, got {url!r}"
    )


def _grpc_path(segments: list[str], url: str) -> tuple[str, str]:
    parts = [s for s in segments[1:]]
    if parts and parts[-1] == "":
        parts.pop()
    if len(parts) in (1, 2) and all(parts):
        return parts[0], parts[1] if len(parts) == 2 else ""
    raise PermanentProviderError(
        f"kserve gRPC endpoint_url must be grpc[s]://host:port/<model>[/<version>], got {url!r}"
    )
