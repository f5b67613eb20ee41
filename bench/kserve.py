"""What does the ``kserve`` adapter cost, and what does batching buy? Measured against
KServe's own model server (from .venv-kserve, as the tests run it), in one run.

1. Zero-work model (FP32 [-1, 3, 64, 64] in, [-1, 84, 8] out), ``--in-flight``
   calls at once, over gRPC and REST: the adapter's frames/s (unbatched: PNG
   decode, letterbox, tensor, infer, decode, NMS per frame) next to clients
   sending the same tensor with no adapter around them: a bare grpc.aio loop
   and tritonclient's aio gRPC client (in the peer's venv), a bare
   ``AiohttpTransport`` loop and bare aiohttp for REST. The ratio asked for:
   adapter / best bare client on the same wire, target >= 0.8.
2. Batching: a model costing 20 ms per call plus 2 ms per image, running at
   most ``--instances`` calls at once (a GPU's model instances); 32 frames in
   flight, over gRPC. Batched (max 8, up to ``--instances`` batches in flight)
   against unbatched, and against the ceiling 8 / 36 ms x instances.
   Targets: >= 0.85 of the ceiling, >= 3x unbatched.

The peer shares the machine's cores with the clients, so absolute figures
move with load; the ratios are taken within one run.

    .venv/bin/python -m bench.kserve [--seconds 3] [--in-flight 16] [--instances 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc
import httpx
import numpy as np
from httpx_aiohttp import AiohttpTransport
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectflow.adapters.kserve import KServeAdapter  # noqa: E402
from detectflow.adapters.kserve.tensors import (  # noqa: E402
    HEADER_LENGTH,
    InferRequest,
    Tensor,
    encode_rest_request,
    grpc_request,
)
from detectflow.adapters.kserve.v2 import grpc_predict_v2_pb2_grpc  # noqa: E402
from detectflow.core.frames import make_frame  # noqa: E402
from detectflow.core.models import Frame, ProviderConfig  # noqa: E402
from tests.adapters.kserve.peer import PEER_PYTHON, Peer, running_peer  # noqa: E402

try:
    from bench._common import Call, aiohttp_call, drive, transport_call
except ModuleNotFoundError:  # run as ``python bench/kserve.py``
    from _common import Call, aiohttp_call, drive, transport_call  # type: ignore[no-redef]

__all__ = ["main"]

SIDE = 64
COST_MS, PER_IMAGE_MS, MAX_BATCH = 20.0, 2.0, 8

TRITON_DRIVER = """
import asyncio, sys, time
import numpy as np
import tritonclient.grpc.aio as grpcclient

async def main(target, seconds, in_flight):
    client = grpcclient.InferenceServerClient(target)
    tensor = np.load(sys.argv[4])
    inputs = [grpcclient.InferInput("images", list(tensor.shape), "FP32")]
    inputs[0].set_data_from_numpy(tensor)
    outputs = [grpcclient.InferRequestedOutput("output0")]
    done = 0
    deadline = 0.0

    async def worker():
        nonlocal done
        while time.perf_counter() < deadline:
            result = await client.infer("zero", inputs, outputs=outputs)
            result.as_numpy("output0")
            done += 1

    deadline = time.perf_counter() + min(0.5, seconds / 4)
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    print(done / (time.perf_counter() - start))
    await client.close()

asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""


def _frame(number: int) -> Frame:
    out = io.BytesIO()
    Image.fromarray(np.full((SIDE, SIDE, 3), 128, dtype=np.uint8)).save(out, "PNG")
    return make_frame(f"cam-{number % 4}", out.getvalue(), max_bytes=1 << 20)


def _tensor() -> np.ndarray:
    return np.full((1, 3, SIDE, SIDE), 128 / 255, dtype=np.float32)


def _adapter(url: str, **options: object) -> KServeAdapter:
    return KServeAdapter(
        ProviderConfig(
            id="bench",
            provider_name="bench",
            provider_type="kserve",
            endpoint_url=url,
            timeout_seconds=30,
            options=options,
        )
    )


CPU_MS: dict[str, float] = {}
"""Client CPU ms per call of the best round, by name (in-process clients only)."""


async def _rate(call: Call, seconds: float, in_flight: int) -> tuple[float, float]:
    """Calls/s and this process's CPU ms per call."""
    done, wall, cpu = await drive(call, seconds, in_flight, warm_up=min(0.5, seconds / 4))
    return done / wall, cpu * 1000 / max(done, 1)


async def _adapter_rate(
    adapter: KServeAdapter, seconds: float, in_flight: int
) -> tuple[float, float]:
    frames = [_frame(i) for i in range(in_flight)]
    index = 0

    async def call() -> None:
        nonlocal index
        index += 1
        await adapter.detect(frames[index % len(frames)])

    try:
        return await _rate(call, seconds, in_flight)
    finally:
        await adapter.aclose()


async def _zero_work(peer: Peer, seconds: float, in_flight: int) -> dict[str, float]:
    rates: dict[str, float] = {}
    request = InferRequest([Tensor("images", "FP32", _tensor())], ["output0"])

    # gRPC: bare grpc.aio with the same message, then the adapter
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{peer.grpc_port}")
    stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
    message = grpc_request(request, "zero")

    async def bare_grpc() -> None:
        await stub.ModelInfer(message)

    # three rounds, best of each: the peer shares the cores, so the first runs
    # warm it up and later ones would otherwise look faster
    for _ in range(3):
        best(rates, "grpc: bare grpc.aio", await _rate(bare_grpc, seconds, in_flight))
        adapter = _adapter(peer.grpc_url("zero"), max_batch_size=1)
        best(rates, "grpc: kserve adapter", await _adapter_rate(adapter, seconds, in_flight))
    await channel.close()

    # REST: bare transport and bare aiohttp posting the same body, then the adapter
    # no outputs named: the server answers in JSON, which the bare loops parse
    body, length = encode_rest_request(InferRequest(request.inputs))
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(length)}
    url = peer.rest_url("zero") + "/infer"
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    transport = AiohttpTransport(limits=limits)
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            call = transport_call(transport, url, body, headers)
            best(rates, "rest: bare AiohttpTransport", await _rate(call, seconds, in_flight))
            call = aiohttp_call(session, url, body, headers)
            best(rates, "rest: bare aiohttp", await _rate(call, seconds, in_flight))
            adapter = _adapter(peer.rest_url("zero"), max_batch_size=1)
            best(rates, "rest: kserve adapter", await _adapter_rate(adapter, seconds, in_flight))
    await transport.aclose()
    return rates


def best(rates: dict[str, float], name: str, measured: tuple[float, float] | float) -> None:
    rate, cpu = measured if isinstance(measured, tuple) else (measured, None)
    if rate > rates.get(name, 0.0):
        rates[name] = rate
        if cpu is not None:
            CPU_MS[name] = cpu


def _tritonclient_rate(peer: Peer, seconds: float, in_flight: int, tmp: Path) -> float | None:
    np.save(tmp / "tensor.npy", _tensor())
    result = subprocess.run(
        [str(PEER_PYTHON), "-c", TRITON_DRIVER, f"127.0.0.1:{peer.grpc_port}", str(seconds),
         str(in_flight), str(tmp / "tensor.npy")],
        capture_output=True, text=True, check=False, timeout=120 + seconds * 4,
    )  # fmt: skip
    if result.returncode != 0:
        print(f"  (tritonclient not measured: {result.stderr.strip()[-300:]})")
        return None
    return float(result.stdout.strip())


async def _batching(peer: Peer, seconds: float, instances: int) -> dict[str, float]:
    # the defaults: up to 4 batches in flight, so one waits at the server while
    # the model instances run, and no instance idles between batches
    batched = _adapter(peer.grpc_url("batch"), max_batch_size=MAX_BATCH, max_batch_wait_ms=5)
    unbatched = _adapter(peer.grpc_url("batch"), max_batch_size=1)
    return {
        "batched": (await _adapter_rate(batched, seconds, 32))[0],
        "unbatched": (await _adapter_rate(unbatched, seconds, 32))[0],
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--instances", type=int, default=2)
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}

    import tempfile

    print(f"== zero-work model, {args.in_flight} in flight, {args.seconds:g} s each")
    with running_peer("zero") as peer, tempfile.TemporaryDirectory() as tmp:
        rates = asyncio.run(_zero_work(peer, args.seconds, args.in_flight))
        for _ in range(3):
            triton = _tritonclient_rate(peer, args.seconds, args.in_flight, Path(tmp))
            if triton is not None:
                best(rates, "grpc: tritonclient aio (own process)", triton)
    for name, rate in rates.items():
        cpu = f"{CPU_MS[name]:6.2f} ms client CPU/frame" if name in CPU_MS else ""
        print(f"  {name:40s} {rate:8.0f} frames/s  {cpu}")
    for wire in ("grpc", "rest"):
        bare = max(r for n, r in rates.items() if n.startswith(wire) and "adapter" not in n)
        ratio = rates[f"{wire}: kserve adapter"] / bare
        figures[f"{wire}_adapter_vs_bare"] = ratio
        print(f"  {wire}: adapter / best bare client = {ratio:.2f} (target >= 0.8)")

    env = {
        "PEER_COST_MS": str(COST_MS),
        "PEER_PER_IMAGE_MS": str(PER_IMAGE_MS),
        "PEER_INSTANCES": str(args.instances),
    }
    ceiling = MAX_BATCH / ((COST_MS + PER_IMAGE_MS * MAX_BATCH) / 1000) * args.instances
    print(
        f"== batching: {COST_MS:g} ms per call + {PER_IMAGE_MS:g} ms per image, "
        f"{args.instances} model instance(s), 32 frames in flight, gRPC"
    )
    with running_peer("batch", env) as peer:
        batching = asyncio.run(_batching(peer, args.seconds, args.instances))
    print(f"  batched (max {MAX_BATCH})   {batching['batched']:8.0f} frames/s")
    print(f"  unbatched          {batching['unbatched']:8.0f} frames/s")
    print(f"  ceiling            {ceiling:8.0f} frames/s ({MAX_BATCH} / 36 ms x {args.instances})")
    print(f"  batched / ceiling   = {batching['batched'] / ceiling:.2f} (target >= 0.85)")
    print(
        f"  batched / unbatched = {batching['batched'] / batching['unbatched']:.1f}x (target >= 3x)"
    )
    figures["batched_vs_ceiling"] = batching["batched"] / ceiling
    figures["batched_vs_unbatched"] = batching["batched"] / batching["unbatched"]
    return figures


if __name__ == "__main__":
    main()
