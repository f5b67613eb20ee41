"""Provider type ``kserve``: models served over the open inference protocol (KServe v2).

NVIDIA Triton, KServe, Seldon MLServer, OpenVINO Model Server and
TorchServe's KServe mode all speak it, so any detection model a team already
serves plugs in without a plugin. ``endpoint_url`` names the model and the
wire (see :mod:`.endpoint`); ``api_key`` goes as a bearer token (header or
gRPC metadata); ``timeout_seconds`` bounds each call; detections below
``confidence_threshold`` are dropped before NMS.

On first use (and at ``provider test``) the adapter reads the model's
metadata and resolves how to call it (:mod:`.plan`); a model that does not
fit is refused there, naming what was found. Frames are letterboxed into the
model's input off the event loop (:mod:`.preprocess`), sent in batches when
the model's batch dimension is dynamic (:mod:`detectflow.adapters.batching`:
``max_batch_size`` default 8, ``max_batch_wait_ms`` default 5), decoded
(:mod:`.decoders`) and mapped back onto the frame.

Options beyond :mod:`.plan`'s: ``binary_data`` (REST, default true: tensors
as raw bytes), ``ca_file`` (gRPC TLS roots), ``max_batch_wait_ms``,
``max_batches_in_flight`` (default 4).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detectflow.adapters.batching import (
    BatchingAdapter,
    BatchLimits,
    BatchOutcome,
    batch_limits_from_options,
)
from detectflow.adapters.kserve.client import InferClient
from detectflow.adapters.kserve.endpoint import ModelEndpoint, parse_model_url
from detectflow.adapters.kserve.labels import label_for, resolve_labels
from detectflow.adapters.kserve.plan import EncodedInput, ImageInput, ModelPlan, resolve_plan
from detectflow.adapters.kserve.preprocess import (
    Letterbox,
    decode_rgb,
    image_tensor,
    letterbox_geometry,
    letterbox_image,
    to_source,
)
from detectflow.adapters.kserve.rest import RestClient
from detectflow.adapters.kserve.tensors import InferRequest, InferResult, Tensor
from detectflow.core.errors import (
    InvalidFrameError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, ProbeResult, ProviderConfig, RawDetection

__all__ = ["INLINE_PREPARE_BYTES", "KServeAdapter", "detectflow_provider_types"]

INLINE_PREPARE_BYTES = 64 * 1024
"""Batches of frames up to this many encoded bytes are decoded and letterboxed
on the event loop; larger ones in a worker thread. Handing a small frame to a
thread cost more than decoding it (bench/kserve.py, 64x64 PNGs: the thread
hop and the GIL it takes back were most of the adapter's 1.7 ms CPU per
frame), while a 1080p JPEG takes ~10 ms to decode and must not stall the loop."""


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One frame ready to send: its tensor item and the geometry to map boxes back."""

    item: Any  # an image array without batch dimension, or the encoded bytes
    box: Letterbox | None  # None: source size unknown, boxes stay in pixels


class KServeAdapter(BatchingAdapter):
    """One served model, over REST or gRPC, batched when the model allows."""

    provider_type = "kserve"

    def __init__(self, config: ProviderConfig, client: InferClient | None = None) -> None:
        super().__init__(config)
        options = config.options
        self.endpoint: ModelEndpoint = parse_model_url(config.endpoint_url)
        if not config.timeout_seconds > 0:
            raise PermanentProviderError(
                f"timeout_seconds must be > 0, got {config.timeout_seconds!r}"
            )
        self.timeout = float(config.timeout_seconds)
        # Options that need no server are checked now, so `provider add` refuses them.
        resolve_labels(options.get("labels"))
        batch_limits_from_options(options)
        self.client: InferClient = client or _open_client(self.endpoint, config)
        self._plan: ModelPlan | None = None
        self._refusal: PermanentProviderError | None = None
        self._plan_lock: asyncio.Lock | None = None
        self._ids = itertools.count(1)

    # -- the model ---------------------------------------------------------

    async def plan(self, *, ask_ready: bool = True) -> ModelPlan:
        """How to call the model, read from its metadata once (a refusal is kept too)."""
        if self._plan is not None:
            return self._plan
        if self._refusal is not None:
            raise PermanentProviderError(self._refusal.message)
        if self._plan_lock is None:
            self._plan_lock = asyncio.Lock()
        async with self._plan_lock:
            if self._plan is None and self._refusal is None:
                # Some servers (KServe's gRPC) run a model that is not ready:
                # ask first, so no frame is answered by a model still loading.
                if ask_ready and not await self.client.ready():
                    raise TransientProviderError(f"model {self.endpoint.describe()} is not ready")
                metadata = await self.client.metadata()
                try:
                    self._plan = resolve_plan(metadata, self.config.options)
                except PermanentProviderError as exc:
                    self._refusal = PermanentProviderError(
                        f"model {self.endpoint.describe()} does not fit: {exc.message}"
                    )
        if self._plan is None:
            assert self._refusal is not None
            raise PermanentProviderError(self._refusal.message)
        return self._plan

    async def batch_limits(self) -> BatchLimits:
        plan = await self.plan()
        if not plan.input.batched:
            return BatchLimits(max_batch_size=1)
        return batch_limits_from_options(self.config.options, max_batch_size=plan.max_batch_size)

    # -- detect ------------------------------------------------------------

    async def detect_batch(self, frames: Sequence[Frame]) -> Sequence[BatchOutcome]:
        plan = await self.plan()
        if sum(len(f.image) for f in frames) <= INLINE_PREPARE_BYTES:
            prepared = _prepare_all(frames, plan)
        else:
            prepared = await asyncio.to_thread(_prepare_all, frames, plan)
        sendable = [i for i, p in enumerate(prepared) if isinstance(p, _Prepared)]
        outcomes: list[BatchOutcome] = [p if isinstance(p, ProviderError) else [] for p in prepared]
        if not sendable:
            return outcomes
        items = [prepared[i] for i in sendable]
        ready = [p for p in items if isinstance(p, _Prepared)]
        request = InferRequest(
            [_input_tensor(plan, [p.item for p in ready])],
            plan.decoder.outputs,
            str(next(self._ids)),
        )
        result = await self.client.infer(request)
        per_image = _split_outputs(result, plan, len(ready))
        threshold = self.config.confidence_threshold
        for index, outputs, item in zip(sendable, per_image, ready, strict=True):
            outcomes[index] = _detections(plan, outputs, item, threshold)
        return outcomes

    # -- health ------------------------------------------------------------

    async def health(self) -> ProbeResult:
        """Model readiness, then the metadata check: no inference needed."""
        start = time.perf_counter()

        def took() -> float:
            return (time.perf_counter() - start) * 1000

        try:
            if not await self.client.ready():
                return ProbeResult(
                    False,
                    took(),
                    "Model not ready",
                    f"model {self.endpoint.describe()} is not ready",
                )
            plan = await self.plan(ask_ready=False)  # readiness was just asked
        except ProviderError as exc:
            return ProbeResult(False, took(), "Connection failed", exc.message)
        return ProbeResult(True, took(), f"Connection successful (model ready; {plan.describe()})")

    async def aclose(self) -> None:
        await super().aclose()
        await self.client.aclose()


def _open_client(endpoint: ModelEndpoint, config: ProviderConfig) -> InferClient:
    options = config.options
    timeout = float(config.timeout_seconds)
    if endpoint.wire == "rest":
        binary = options.get("binary_data", True)
        if not isinstance(binary, bool):
            binary = str(binary).strip().lower() not in ("false", "0", "no")
        return RestClient(endpoint, timeout=timeout, api_key=config.api_key, binary=binary)
    try:
        from detectflow.adapters.kserve.grpc_client import GrpcClient
    except ImportError as exc:  # the grpc extra is not installed
        raise PermanentProviderError(
            f"grpc:// kserve endpoints need grpcio: pip install 'detectflow[grpc,kserve]' ({exc})"
        ) from None
    ca = options.get("ca_file")
    return GrpcClient(
        endpoint, timeout=timeout, api_key=config.api_key, ca_file=None if ca is None else str(ca)
    )


# -- the steps of one batch (pure functions of their arguments) ----------------


def _prepare_all(frames: Sequence[Frame], plan: ModelPlan) -> list[_Prepared | ProviderError]:
    """Decode and letterbox each frame (runs in a worker thread: Pillow and numpy)."""
    out: list[_Prepared | ProviderError] = []
    for frame in frames:
        try:
            out.append(_prepare(frame, plan))
        except InvalidFrameError as exc:
            out.append(PermanentProviderError(str(exc)))
    return out


def _prepare(frame: Frame, plan: ModelPlan) -> _Prepared:
    source = plan.input
    if isinstance(source, EncodedInput):
        box = None
        if frame.width and frame.height:
            box = letterbox_geometry(frame.width, frame.height, frame.width, frame.height)
        return _Prepared(frame.image, box)
    rgb = decode_rgb(frame.image)
    height, width = rgb.shape[:2]
    box = letterbox_geometry(width, height, source.width, source.height)
    return _Prepared(image_tensor(letterbox_image(rgb, box), source.layout, source.dtype), box)


def _input_tensor(plan: ModelPlan, items: Sequence[Any]) -> Tensor:
    source = plan.input
    if isinstance(source, ImageInput):
        data = np.stack(items) if source.batched else items[0]
        return Tensor(source.name, source.datatype, data)
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    if source.item_shape:
        array = array.reshape(len(items), *source.item_shape)
    return Tensor(source.name, "BYTES", array)


def _split_outputs(
    result: InferResult, plan: ModelPlan, count: int
) -> list[Mapping[str, npt.NDArray[Any]]]:
    """Each image's share of the outputs; a batch dimension that does not match is permanent."""
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name in plan.decoder.outputs:
        tensor = result.outputs.get(name)
        if tensor is None:
            found = ", ".join(f"{t.name} {list(t.shape)}" for t in result.outputs.values())
            raise PermanentProviderError(
                f"the model's answer has no output {name!r}; found: {found or 'none'}"
            )
        arrays[name] = tensor.data
    if not plan.input.batched:
        return [arrays]
    for name, array in arrays.items():
        if array.ndim == 0 or array.shape[0] != count:
            raise PermanentProviderError(
                f"output {name!r} has shape {list(array.shape)} for a batch of {count} "
                "(its first dimension must be the batch)"
            )
    return [{name: array[i] for name, array in arrays.items()} for i in range(count)]


def _detections(
    plan: ModelPlan,
    outputs: Mapping[str, npt.NDArray[Any]],
    item: _Prepared,
    threshold: float,
) -> BatchOutcome:
    source = plan.input
    if isinstance(source, ImageInput):
        input_size = (source.width, source.height)
    elif item.box is not None:
        input_size = (item.box.src_w, item.box.src_h)
    else:
        input_size = (1, 1)
    try:
        decoded = plan.decoder.decode(outputs, threshold, input_size)
    except PermanentProviderError as exc:
        return exc
    scores = np.clip(decoded.scores, 0.0, 1.0)
    box = item.box
    if box is None:  # the frame's size is unknown: pixels, normalized later
        frame_boxes, units = np.asarray(decoded.boxes, dtype=np.float64), "pixel"
    else:
        frame_boxes, units = to_source(decoded.boxes, box), "fraction"
        frame_boxes[:, 0::2] /= box.src_w
        frame_boxes[:, 1::2] /= box.src_h
    return [
        RawDetection(
            label_for(plan.labels, int(c)),
            float(s),
            (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            "xyxy",
            "pixel" if units == "pixel" else "fraction",
        )
        for b, s, c in zip(frame_boxes, scores, decoded.classes, strict=True)
    ]


@hookimpl
def detectflow_provider_types() -> list[type[KServeAdapter]]:
    return [KServeAdapter]
