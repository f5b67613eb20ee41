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

__all__ = [
    "AdapterFactory",
    "ConformanceTarget",
    "FrameFactory",
    "conformance_frame",
    "undecodable_frame",
]

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


# PNG signature (8 bytes) and IHDR chunk (25 bytes): the size, and no pixels.
_PNG_HEADER_BYTES = 33


@lru_cache(maxsize=16)
def undecodable_frame(index: int) -> Frame:
    """A frame whose image cannot be decoded: a PNG cut right after its header.

    It passes detectflow's frame validation (the header gives its format and
    size), so it reaches the adapter, which fails it when it decodes the
    pixels. Suits ``ConformanceTarget.failing_frame`` for adapters that decode
    images themselves (letterboxing into a tensor); a provider that gets the
    encoded bytes needs a frame its server refuses instead.
    """
    good = conformance_frame(index)
    return make_frame(
        good.camera_id,
        good.image[:_PNG_HEADER_BYTES],
        max_bytes=1 << 20,
        frame_id=f"{good.frame_id}-undecodable",
        frame_number=index,
    )


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

    ``failing_frame`` is a fault of one frame, not of the provider: a frame
    the ``healthy`` provider fails (permanently or transiently) while it
    answers the others. The batch checks put it in a batch of good frames; left
    None, the partial-failure check is skipped (the kit cannot make one frame
    of a batch fail for every provider by itself).
    """

    healthy: AdapterFactory
    slow: AdapterFactory | None = None
    transient_fault: AdapterFactory | None = None
    permanent_fault: AdapterFactory | None = None
    malformed_answer: AdapterFactory | None = None
    unreachable: AdapterFactory | None = None
    frame: FrameFactory = conformance_frame
    """Frames to send; the default suits any provider that takes PNG."""
    failing_frame: FrameFactory | None = None
    """A frame ``healthy`` fails alone (see above); :func:`undecodable_frame` suits
    an adapter that decodes images itself."""
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
