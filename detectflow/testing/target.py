"""What a vendor hands the conformance kit: how to get their adapter, healthy and faulty.

The kit cannot know how a vendor's provider is reached or how to make it
misbehave, so the vendor describes it once as a :class:`ConformanceTarget`:
one factory per situation, each called with the timeout the check needs and
returning a fresh adapter facing that situation. A situation the vendor cannot
produce is left as ``None`` and the checks that need it are skipped with that
reason, never passed silently. An adapter class that declares ``in_process``
(a model inside detectflow, never "unreachable") has its network faults
skipped by the kit itself, whatever the target gives for them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache

from detectflow.core.adapter import ProviderAdapter
from detectflow.core.frames import make_frame
from detectflow.core.models import Frame
from detectflow.samples import sample_frame

__all__ = ["AdapterFactory", "ConformanceTarget", "FrameFactory", "conformance_frame"]

AdapterFactory = Callable[[float], ProviderAdapter | Awaitable[ProviderAdapter | None] | None]
"""Called with ``timeout_seconds``; returns (or awaits to) a new adapter, or None to skip."""

FrameFactory = Callable[[int], Frame]
"""Called with an index; returns a frame whose image differs from every other index's."""

# Three shapes, so an adapter that mixes up width and height shows it.
_SIZES = ((160, 120), (96, 64), (64, 96))


@lru_cache(maxsize=256)
def conformance_frame(index: int) -> Frame:
    """The kit's default frames: small deterministic PNGs, distinct per index.

    Cameras and sizes vary with the index, so an answer delivered to the wrong
    frame (cross-talk) differs from the right one in content, not just in id.
    """
    width, height = _SIZES[index % len(_SIZES)]
    camera = f"conformance-{index % 7}"
    image = sample_frame(camera, index, width, height)
    frame_id = "conformance-" + hashlib.sha256(f"{camera}:{index}".encode()).hexdigest()[:16]
    return make_frame(camera, image, max_bytes=1 << 20, frame_id=frame_id, frame_number=index)


@dataclass(frozen=True, slots=True)
class ConformanceTarget:
    """How to get the adapter under test facing each situation the kit checks.

    Every factory is called inside the check's running event loop with the
    ``timeout_seconds`` the adapter must honour, and must return a *new*
    adapter (the kit closes it). It may be a coroutine function. Returning
    None, or leaving the factory None, skips the checks that need it.

    - ``healthy``: a working provider whose answers are deterministic per
      frame and not all the same (else cross-talk cannot be told apart);
    - ``slow``: a provider that does not answer within the timeout;
    - ``transient_fault``: a provider fault worth retrying (HTTP 503, gRPC
      UNAVAILABLE, a busy queue);
    - ``permanent_fault``: the provider refuses the frame (HTTP 400/401,
      gRPC INVALID_ARGUMENT);
    - ``malformed_answer``: the provider answers, but with nonsense;
    - ``unreachable``: nothing listens where the adapter connects.
    """

    healthy: AdapterFactory
    slow: AdapterFactory | None = None
    transient_fault: AdapterFactory | None = None
    permanent_fault: AdapterFactory | None = None
    malformed_answer: AdapterFactory | None = None
    unreachable: AdapterFactory | None = None
    frame: FrameFactory = conformance_frame
    """Frames to send; the default suits any provider that takes PNG."""
    valid_frames: int = 4
    """How many frames the valid-answers check sends."""
    concurrency: int = 100
    """How many ``detect`` calls the cross-talk check keeps in flight at once."""
    timeout_seconds: float = 0.5
    """The timeout given to ``slow`` and the fault factories."""
    grace_seconds: float = 0.5
    """How far past ``timeout_seconds`` a timed-out call may still end."""
    healthy_timeout_seconds: float = 10.0
    """The timeout given to ``healthy``: generous, as the checks load it hard."""
