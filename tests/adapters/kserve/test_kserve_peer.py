"""The kserve adapter against KServe's own model server, over REST and gRPC.

The peer (:mod:`peer_models`, run from .venv-kserve) computes every answer
from the tensor it received: a frame with a white and a red rectangle comes
back as a person and a car exactly where they were drawn only if the
adapter letterboxed the frame as the model expects and mapped the boxes back
through the same letterbox.

Known limit of this peer, not of the adapter: KServe's Python server turns
binary REST inputs into JSON text internally (``InferRequest.from_bytes``
calls ``set_data_from_numpy(..., binary_data=False)``), so a ``BYTES`` input
holding a JPEG fails there with HTTP 500; the encoded-image model is tested
over gRPC, which keeps raw bytes.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detectflow.adapters.kserve import KServeAdapter
from detectflow.adapters.kserve.preprocess import (
    decode_rgb,
    image_tensor,
    letterbox_geometry,
    letterbox_image,
)
from detectflow.adapters.kserve.tensors import InferRequest, Tensor
from detectflow.adapters.probe import build_adapter, probe_provider
from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.core.frames import make_frame
from detectflow.core.models import Frame, ProviderConfig
from detectflow.core.normalize import normalize_detections
from detectflow.core.pipeline import RetryPolicy, run_frame
from detectflow.core.plugins import get_registry
from tests.adapters.kserve.peer import PEER_PYTHON, Peer, running_peer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WIRES = ["rest", "grpc"]
WIDTH, HEIGHT = 1280, 720
PERSON = (100, 200, 300, 400)  # white: the peer's class 0
CAR = (700, 100, 900, 600)  # red: the peer's class 2


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", autouse=True)
async def _one_event_loop_for_the_module(anyio_backend: str) -> AsyncIterator[None]:
    """grpc.aio hands late completions to the loop of their call: keep one loop."""
    yield  # noqa: PT022


@pytest.fixture(scope="module")
def batch_log() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / "batches.txt"


@pytest.fixture(scope="module")
def peer(batch_log: Path) -> Iterator[Peer]:
    models = "yolo,yolo_nhwc,boxes,opencv,batch,fixed,wrongshape,notready,text"
    with running_peer(models, {"PEER_BATCH_LOG": str(batch_log)}) as running:
        yield running


def config(url: str, **changes: Any) -> ProviderConfig:
    values: dict[str, Any] = {
        "id": "kserve-1",
        "provider_name": "triton",
        "provider_type": "kserve",
        "endpoint_url": url,
        "timeout_seconds": 20.0,
    }
    values.update(changes)
    return ProviderConfig(**values)


def picture(width: int, height: int, fill: int = 0) -> np.ndarray:
    rgb = np.full((height, width, 3), fill, dtype=np.uint8)
    x1, y1, x2, y2 = PERSON
    rgb[y1:y2, x1:x2] = 255
    x1, y1, x2, y2 = CAR
    rgb[y1:y2, x1:x2] = (255, 0, 0)
    return rgb


def encode(rgb: np.ndarray, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, kind)
    return out.getvalue()


def frame_of(image: bytes, camera: str = "cam-1", number: int = 1) -> Frame:
    return make_frame(camera, image, max_bytes=1 << 24, frame_number=number)


def in_pixels(box: tuple[float, float, float, float]) -> list[float]:
    return [box[0] * WIDTH, box[1] * HEIGHT, box[2] * WIDTH, box[3] * HEIGHT]


def assert_person_and_car(detections: list[Any], tolerance: float = 0.0) -> None:
    found = {d.label: in_pixels(d.box) for d in detections}
    assert sorted(found) == ["car", "person"]  # the peer's duplicates fell to NMS
    np.testing.assert_allclose(found["person"], PERSON, atol=tolerance)
    np.testing.assert_allclose(found["car"], CAR, atol=tolerance)


# -- the adapter is a provider type like any other ------------------------------------


def test_kserve_is_a_provider_type_registered_like_every_builtin() -> None:
    registry = get_registry()
    assert registry.provider_types()["kserve"] is KServeAdapter
    adapter = registry.create_adapter(config("grpc://127.0.0.1:1/yolo"))
    assert isinstance(adapter, KServeAdapter)
    assert any("kserve" in p.provider_types for p in registry.plugins())


def test_a_bad_url_or_option_is_refused_when_the_adapter_is_built() -> None:
    with pytest.raises(PermanentProviderError, match="/v2/models/<model>"):
        KServeAdapter(config("http://127.0.0.1:1/yolo"))
    with pytest.raises(PermanentProviderError, match="max_batch_size"):
        KServeAdapter(config("http://127.0.0.1:1/v2/models/yolo", options={"max_batch_size": 0}))
    with pytest.raises(PermanentProviderError, match="cannot read labels file"):
        KServeAdapter(config("grpc://127.0.0.1:1/yolo", options={"labels": "file:/nope.txt"}))


# -- letterbox and the way back, computed by the real peer ---------------------


@pytest.mark.parametrize("wire", WIRES)
async def test_boxes_land_on_the_original_frame_through_the_letterbox(
    peer: Peer, wire: str
) -> None:
    frame = frame_of(encode(picture(WIDTH, HEIGHT), "PNG"))
    async with KServeAdapter(config(peer.url(wire, "yolo"))) as adapter:
        detections = await adapter.detect(frame)
    assert_person_and_car(detections)
    normalized = normalize_detections(frame, detections)
    assert sorted(d.detection_type for d in normalized.detections) == ["person", "vehicle"]


@pytest.mark.parametrize("wire", WIRES)
async def test_a_uint8_nhwc_model_with_a_non_square_input_gets_the_same_boxes(
    peer: Peer, wire: str
) -> None:
    frame = frame_of(encode(picture(WIDTH, HEIGHT), "PNG"))
    async with KServeAdapter(config(peer.url(wire, "yolo_nhwc"))) as adapter:
        plan = await adapter.plan()
        assert "UINT8 NHWC 640x480" in plan.describe()
        assert_person_and_car(await adapter.detect(frame))


async def test_an_encoded_image_input_gets_the_jpeg_as_is_and_a_boxes_decoder(
    peer: Peer,
) -> None:
    frame = frame_of(encode(picture(WIDTH, HEIGHT), "JPEG"))
    options = {"box_format": "yxyx", "box_units": "fraction"}
    async with KServeAdapter(config(peer.grpc_url("boxes"), options=options)) as adapter:
        detections = await adapter.detect(frame)
    # JPEG blurs the rectangles' edges by a pixel or two before the peer sees them
    assert_person_and_car(detections, tolerance=3)


async def test_the_confidence_threshold_drops_detections_before_they_return(
    peer: Peer,
) -> None:
    frame = frame_of(encode(picture(WIDTH, HEIGHT), "PNG"))
    async with KServeAdapter(config(peer.rest_url("yolo"), confidence_threshold=0.95)) as adapter:
        assert await adapter.detect(frame) == []


# -- batching ------------------------------------------------------------------


def batch_sizes(log: Path) -> list[int]:
    sizes = [int(line) for line in log.read_text().split()] if log.exists() else []
    log.write_text("")
    return sizes


def grey(level: int, camera: str, number: int) -> Frame:
    return frame_of(encode(np.full((48, 64, 3), level, dtype=np.uint8)), camera, number)


@pytest.mark.parametrize("wire", WIRES)
async def test_frames_from_several_cameras_share_batches_and_get_their_own_answers(
    peer: Peer, wire: str, batch_log: Path
) -> None:
    batch_sizes(batch_log)
    # the peer echoes each image's mean brightness as its person score
    frames = [grey(40 + 8 * i, f"cam-{i % 4}", i) for i in range(20)]
    options = {"max_batch_size": 8, "max_batch_wait_ms": 50}
    batched = config(peer.url(wire, "batch"), options=options, confidence_threshold=0.1)
    async with KServeAdapter(batched) as adapter:
        answers = await asyncio.gather(*(adapter.detect(f) for f in frames))
        sent = adapter.batch_sizes
    seen = batch_sizes(batch_log)
    assert sum(seen) == 20 and max(seen) <= 8 and max(seen) > 1
    assert sorted(seen) == sorted(sent)
    for index, answer in enumerate(answers):
        letterboxed_mean = (40 + 8 * index) / 255  # 64x48 fills the 64x64 input but for grey
        assert len(answer) == 1
        assert answer[0].confidence == pytest.approx(
            (letterboxed_mean * 48 + 114 / 255 * 16) / 64, abs=1e-3
        )


async def test_a_model_with_a_fixed_batch_of_one_gets_one_frame_per_call(
    peer: Peer, batch_log: Path
) -> None:
    async with KServeAdapter(config(peer.grpc_url("fixed"))) as adapter:
        await asyncio.gather(*(adapter.detect(grey(100, "cam-1", i)) for i in range(5)))
        assert adapter.batch_sizes == []
        assert (await adapter.batch_limits()).max_batch_size == 1


# -- provider test, health and bad peers -------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
async def test_provider_test_refuses_a_model_that_does_not_fit_naming_what_it_found(
    peer: Peer, wire: str
) -> None:
    result = await probe_provider(
        config(peer.url(wire, "text")), open_adapter=build_adapter(get_registry())
    )
    assert not result.ok
    assert result.error is not None
    assert "model text does not fit" in result.error
    assert "found: tokens INT64 [-1, 5]" in result.error


@pytest.mark.parametrize("wire", WIRES)
async def test_provider_test_passes_on_a_fitting_model(peer: Peer, wire: str) -> None:
    result = await probe_provider(
        config(peer.url(wire, "yolo")), open_adapter=build_adapter(get_registry())
    )
    assert result.ok, result.error


@pytest.mark.parametrize("wire", WIRES)
async def test_health_reads_readiness_and_the_plan(peer: Peer, wire: str) -> None:
    async with KServeAdapter(config(peer.url(wire, "yolo"))) as adapter:
        healthy = await adapter.health()
    assert healthy.ok and "input 'images' FP32 NCHW 640x640" in healthy.message
    async with KServeAdapter(config(peer.url(wire, "notready"))) as adapter:
        unready = await adapter.health()
    assert not unready.ok and unready.message == "Model not ready"


@pytest.mark.parametrize("wire", WIRES)
async def test_a_model_that_is_not_ready_fails_frames_as_transient_with_the_reason(
    peer: Peer, wire: str
) -> None:
    frame = frame_of(encode(picture(WIDTH, HEIGHT), "PNG"))
    async with KServeAdapter(config(peer.url(wire, "notready"))) as adapter:
        with pytest.raises(TransientProviderError) as caught:
            await adapter.detect(frame)
    assert "not ready" in caught.value.message


@pytest.mark.parametrize("wire", WIRES)
async def test_an_answer_of_the_wrong_shape_fails_each_frame_permanently(
    peer: Peer, wire: str
) -> None:
    frames = [grey(100, "cam-1", i) for i in range(3)]
    async with KServeAdapter(config(peer.url(wire, "wrongshape"))) as adapter:
        outcomes = await asyncio.gather(
            *(adapter.detect(f) for f in frames), return_exceptions=True
        )
    assert all(isinstance(o, PermanentProviderError) for o in outcomes)
    assert all("its first dimension must be the batch" in str(o) for o in outcomes)


@pytest.mark.parametrize("wire", WIRES)
async def test_a_server_that_dies_mid_infer_fails_frames_as_transient_and_nothing_hangs(
    wire: str,
) -> None:
    with running_peer("crash,yolo") as dying:
        frame = frame_of(encode(picture(WIDTH, HEIGHT), "PNG"))
        async with KServeAdapter(config(dying.url(wire, "crash"))) as adapter:
            await adapter.plan()
            with pytest.raises(TransientProviderError):
                await adapter.detect(frame)
        assert dying.process.wait(timeout=30) == 3  # the peer really died in predict


@pytest.mark.parametrize("wire", WIRES)
async def test_the_pipeline_retries_a_transient_failure_and_records_the_reason(
    peer: Peer, wire: str
) -> None:
    frame = frame_of(encode(picture(WIDTH, HEIGHT), "PNG"))
    async with KServeAdapter(config(peer.url(wire, "notready"), max_retries=2)) as adapter:
        result = await run_frame(
            frame, adapter, retry=RetryPolicy(max_retries=2, base_seconds=0.001)
        )
    assert result.attempts == 3
    assert result.error is not None and "not ready" in result.error


# -- an independent client -------------------------------------------------------

TRITON_SCRIPT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
tensor = np.load(sys.argv[2])
client = grpcclient.InferenceServerClient(sys.argv[1])
inputs = [grpcclient.InferInput("images", list(tensor.shape), "FP32")]
inputs[0].set_data_from_numpy(tensor)
result = client.infer("yolo", inputs, outputs=[grpcclient.InferRequestedOutput("output0")])
print(json.dumps(result.as_numpy("output0").tolist()))
"""


@pytest.mark.parametrize("wire", WIRES)
async def test_tritonclient_sending_the_same_tensor_gets_the_same_answer(
    peer: Peer, wire: str, tmp_path: Path
) -> None:
    """tritonclient (in the peer's venv) and the adapter send one tensor; the model agrees."""
    checked = subprocess.run(
        [str(PEER_PYTHON), "-c", "import tritonclient.grpc"], capture_output=True, check=False
    )
    if checked.returncode != 0:
        pytest.skip(f"tritonclient is not installed in the peer venv: {checked.stderr[-300:]!r}")
    rgb = decode_rgb(encode(picture(WIDTH, HEIGHT), "PNG"))
    box = letterbox_geometry(WIDTH, HEIGHT, 640, 640)
    tensor = image_tensor(letterbox_image(rgb, box), "NCHW", np.dtype("float32"))[None]
    np.save(tmp_path / "tensor.npy", tensor)
    triton = subprocess.run(
        [
            str(PEER_PYTHON),
            "-c",
            TRITON_SCRIPT,
            f"127.0.0.1:{peer.grpc_port}",
            str(tmp_path / "tensor.npy"),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    theirs = np.array(json.loads(triton.stdout))
    async with KServeAdapter(config(peer.url(wire, "yolo"))) as adapter:
        ours = await adapter.client.infer(
            InferRequest([Tensor("images", "FP32", tensor)], ["output0"])
        )
        detections = await adapter.detect(frame_of(encode(picture(WIDTH, HEIGHT), "PNG")))
    np.testing.assert_array_equal(ours.outputs["output0"].data, theirs)
    assert_person_and_car(detections)


async def test_the_opencv_plugin_served_over_the_protocol_finds_the_astronauts_face(
    peer: Peer,
) -> None:
    """An encoded (BYTES) input and the boxes decoder, against a real detector."""
    from skimage import data

    astronaut = data.astronaut()  # 512 x 512 RGB
    frame = make_frame("cam-1", encode(astronaut, "JPEG"), max_bytes=1 << 22)
    options = {"outputs": "boxes,scores,classes,count", "labels": "person,face"}
    async with KServeAdapter(
        config(peer.grpc_url("opencv"), options=options, confidence_threshold=0.3)
    ) as adapter:
        detections = await adapter.detect(frame)
    faces = [d for d in detections if d.label == "face"]
    assert faces, detections
    x1, y1, x2, y2 = (v * 512 for v in faces[0].box)
    # the face lies in rows 20-260, columns 100-340 (the crop the OpenCV plugin tests use)
    assert 100 < (x1 + x2) / 2 < 340 and 20 < (y1 + y2) / 2 < 260
    assert normalize_detections(frame, faces).detections[0].detection_type == "face"
