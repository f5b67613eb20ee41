"""The dataflow's detect engine batches frames for a kserve provider without knowing it.

The engine keeps many ``detect`` calls in flight on its one event loop; the
kserve adapter's batcher groups them into infer calls. KServe's own server
records the batch sizes it saw, and every frame's result is its own.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detectflow.core.frames import make_frame
from detectflow.core.models import Frame, FrameResult, ProviderConfig
from detectflow.core.plugins import get_registry
from detectflow.core.settings import Settings
from detectflow.flows.engine import DetectEngine
from tests.adapters.kserve.peer import Peer, running_peer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batch_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kserve-flow") / "batches.txt"


@pytest.fixture(scope="module")
def peer(batch_log: Path) -> Iterator[Peer]:
    with running_peer("batch", {"PEER_BATCH_LOG": str(batch_log), "PEER_COST_MS": "20"}) as run:
        yield run


def grey(level: int, number: int) -> Frame:
    out = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), level, dtype=np.uint8)).save(out, "PNG")
    return make_frame(f"cam-{number % 3}", out.getvalue(), max_bytes=1 << 20, frame_number=number)


def collect(engine: DetectEngine, count: int, timeout: float = 60.0) -> list[FrameResult]:
    got: list[FrameResult] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += engine.poll()
        time.sleep(0.005)
    return got


@pytest.mark.parametrize("wire", ["rest", "grpc"])
def test_the_detect_engine_sends_kserve_frames_in_batches(
    peer: Peer, batch_log: Path, tmp_path: Path, wire: str
) -> None:
    batch_log.write_text("")
    settings = Settings(data_dir=tmp_path, disable_plugin_autoload=True)
    config = ProviderConfig(
        id="kserve",
        provider_name="triton",
        provider_type="kserve",
        endpoint_url=peer.url(wire, "batch"),
        confidence_threshold=0.1,
        options={"max_batch_size": 8, "max_batch_wait_ms": 20},
    )
    frames = [grey(40 + 8 * i, i) for i in range(24)]
    with DetectEngine(
        settings, lambda: config, registry=get_registry(settings), max_in_flight=24
    ) as engine:
        for frame in frames:
            engine.submit(frame)
        results = collect(engine, len(frames))
    assert len(results) == len(frames)
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    sizes = [int(n) for n in batch_log.read_text().split()]
    assert sum(sizes) == len(frames) and max(sizes) > 1 and max(sizes) <= 8
    # each frame got the score the peer computed from its own image
    by_number = {r.frame.frame_number: r.detections[0].confidence for r in results}
    levels = {number: by_number[number] for number in sorted(by_number)}
    assert list(levels.values()) == sorted(levels.values())  # brighter frames, higher scores
