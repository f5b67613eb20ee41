"""What does each provider adapter cost over its bare client library? Measure it.

For every adapter (``http_api`` in the detectflow and deepstack dialects,
``grpc``, ``mqtt``) this drives its simulator at zero latency with 32 calls
in flight, then makes the same calls, with the same request bytes, through
the bare client the adapter is built on:

- HTTP: ``httpx_aiohttp.AiohttpTransport`` called directly (what
  :mod:`detectflow.adapters.http` does), plus bare ``aiohttp`` for reference;
- gRPC: a ``grpc.aio`` channel and the generated ``DetectionProvider`` stub;
- MQTT: a paho MQTT 5 client doing request/response by hand (response topic,
  correlation data, one future per request), against the same broker.

Each simulator is a ``detectflow simulate --protocol ...`` subprocess, so the
client process is measured alone (MQTT also goes through Mosquitto). Prints
frames/s, client CPU per call and adapter / bare (the target is >= 0.8).

    .venv/bin/python -m bench.adapters [--seconds 5] [--in-flight 32] [--only grpc]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import aiohttp
import grpc
import httpx
import paho.mqtt.client as mqtt
from httpx_aiohttp import AiohttpTransport
from paho.mqtt.enums import CallbackAPIVersion

from detectflow.adapters.grpc.adapter import GrpcAdapter
from detectflow.adapters.grpc.convert import request_from_frame
from detectflow.adapters.grpc.provider.v1 import provider_pb2_grpc
from detectflow.adapters.http import HttpAdapter
from detectflow.adapters.mqtt import MqttAdapter
from detectflow.adapters.mqtt_link import publish_properties
from detectflow.adapters.mqtt_wire import encode_request, parse_mqtt_url
from detectflow.core.adapter import ProviderAdapter, probe_frame
from detectflow.core.models import ProviderConfig

try:
    from bench._common import Call, aiohttp_call, drive, transport_call
except ModuleNotFoundError:  # run as ``python bench/adapters.py``
    from _common import Call, aiohttp_call, drive, transport_call  # type: ignore[no-redef]

__all__ = ["CASES", "Budget", "Row", "main"]

CASES = ("http-detectflow", "http-deepstack", "grpc", "mqtt")
TARGET = 0.8


@dataclass(frozen=True, slots=True)
class Budget:
    seconds: float  # per client, split over the rounds
    in_flight: int
    rounds: int


@dataclass(frozen=True, slots=True)
class Row:
    case: str
    client: str
    rate: float
    cpu_ms: float


# -- driving -----------------------------------------------------------------


@contextmanager
def simulator(*args: str) -> Iterator[dict[str, str]]:
    """Run ``detectflow simulate`` in a child process; yields the URLs it prints."""
    command = [sys.executable, "-c", "from detectflow.cli import main; main()", "simulate"]
    process = subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    urls: dict[str, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:
            label, _, url = line.strip().rpartition(": ")
            if "://" in url and label:
                # "  deepstack dialect:  http://...", "  provider type grpc, endpoint_url: ..."
                urls[label.strip().rpartition(", ")[2]] = url.strip()
            if "endpoint_url" in urls or (len(urls) == 2 and "deepstack dialect" in urls):
                break
        if not urls:
            raise RuntimeError(
                f"simulate did not start: {process.stderr.read() if process.stderr else ''}"
            )
        yield urls
    finally:
        process.terminate()
        process.communicate(timeout=10)


def config(kind: str, url: str, **options: object) -> ProviderConfig:
    return ProviderConfig(
        id=kind,
        provider_name=kind,
        provider_type=kind,
        endpoint_url=url,
        timeout_seconds=30,
        confidence_threshold=0.0,
        options=options,
    )


async def measure(case: str, clients: list[tuple[str, Call]], budget: Budget) -> list[Row]:
    """Interleave the clients in ``rounds`` slices, order reversed every other round.

    The simulator warms up and the machine's load drifts during a run;
    taking turns gives every client the same share of both, so the ratio
    compares clients, not moments.
    """
    totals = {name: [0, 0.0, 0.0] for name, _ in clients}
    for round_number in range(budget.rounds):
        order = clients if round_number % 2 == 0 else clients[::-1]
        for name, call in order:
            seconds = budget.seconds / budget.rounds
            warm_up = min(0.3, seconds / 4)  # refill the pipeline first
            done, wall, cpu = await drive(call, seconds, budget.in_flight, warm_up)
            totals[name][0] += done
            totals[name][1] += wall
            totals[name][2] += cpu
    return [
        Row(case, name, done / wall, cpu * 1000 / max(done, 1))
        for name, (done, wall, cpu) in ((n, totals[n]) for n, _ in clients)
    ]


def adapter_call(adapter: ProviderAdapter) -> Call:
    frame = probe_frame()

    async def call() -> None:
        await adapter.detect(frame)

    return call


# -- HTTP --------------------------------------------------------------------


async def http_case(case: str, url: str, dialect: str, budget: Budget) -> list[Row]:
    adapter = HttpAdapter(config("http_api", url, dialect=dialect))
    encoded = adapter.encode(probe_frame())
    headers = {"Content-Type": encoded.content_type}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    transport = AiohttpTransport(limits=limits)
    bare_transport = transport_call(transport, url, encoded.content, headers)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        bare_aiohttp = aiohttp_call(session, url, encoded.content, headers)
        try:
            return await measure(
                case,
                [
                    ("bare AiohttpTransport", bare_transport),
                    ("adapter", adapter_call(adapter)),
                    ("bare aiohttp", bare_aiohttp),
                ],
                budget,
            )
        finally:
            await transport.aclose()
            await adapter.aclose()


# -- gRPC --------------------------------------------------------------------


async def grpc_case(url: str, budget: Budget) -> list[Row]:
    adapter = GrpcAdapter(config("grpc", url))
    request = request_from_frame(probe_frame(), "1", 0.0)
    async with grpc.aio.insecure_channel(url.removeprefix("grpc://")) as channel:
        stub = provider_pb2_grpc.DetectionProviderStub(channel)

        async def bare() -> None:
            await stub.Detect(request, timeout=30)

        try:
            return await measure(
                "grpc",
                [("bare grpc.aio stub", bare), ("adapter", adapter_call(adapter))],
                budget,
            )
        finally:
            await adapter.aclose()


# -- MQTT --------------------------------------------------------------------


@asynccontextmanager
async def bare_mqtt(url: str) -> AsyncIterator[Call]:
    """Request/response written directly on paho: what any MQTT 5 requester must do."""
    endpoint = parse_mqtt_url(url)
    loop = asyncio.get_running_loop()
    response_topic = f"bench/responses/{uuid.uuid4().hex}"
    pending: dict[bytes, asyncio.Future[bytes | bytearray]] = {}
    subscribed = asyncio.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )

    def on_connect(
        c: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        c.subscribe(response_topic, qos=1)

    def on_subscribe(
        c: mqtt.Client, userdata: object, mid: int, rcs: object, props: object
    ) -> None:
        loop.call_soon_threadsafe(subscribed.set)

    def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        future = pending.pop(correlation, None) if correlation else None
        if future is not None:
            loop.call_soon_threadsafe(future.set_result, message.payload)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    payload = encode_request(probe_frame(), 0.0)

    async def call() -> None:
        correlation = os.urandom(16)
        future: asyncio.Future[bytes | bytearray] = loop.create_future()
        pending[correlation] = future
        props = publish_properties()
        props.ResponseTopic = response_topic
        props.CorrelationData = correlation
        props.MessageExpiryInterval = 30
        client.publish(endpoint.topic, payload, qos=1, properties=props)
        json.loads(await future)

    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        yield call
    finally:
        client.disconnect()
        client.loop_stop()


async def mqtt_case(url: str, budget: Budget) -> list[Row]:
    adapter = MqttAdapter(config("mqtt", url))
    try:
        async with bare_mqtt(url) as bare:
            return await measure(
                "mqtt",
                [("bare paho request/response", bare), ("adapter", adapter_call(adapter))],
                budget,
            )
    finally:
        await adapter.aclose()


# -- main --------------------------------------------------------------------


def run_case(case: str, budget: Budget, broker: str) -> list[Row]:
    if case.startswith("http"):
        dialect = case.removeprefix("http-")
        with simulator("--protocol", "http", "--port", "0") as urls:
            url = urls[f"{dialect} dialect"]
            return asyncio.run(http_case(case, url, dialect, budget))
    if case == "grpc":
        with simulator("--protocol", "grpc", "--port", "0") as urls:
            return asyncio.run(grpc_case(urls["endpoint_url"], budget))
    topic_url = f"{broker.rstrip('/')}/detectflow-bench/{uuid.uuid4().hex}/detect"
    with simulator("--protocol", "mqtt", "--mqtt-url", topic_url) as urls:
        return asyncio.run(mqtt_case(urls["endpoint_url"], budget))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="Per client (default 5).")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10, help="Turns each client takes.")
    parser.add_argument("--only", choices=CASES, action="append", help="Run only these cases.")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="For the mqtt case.")
    args = parser.parse_args(argv)
    print(
        f"{args.in_flight} in flight, {args.seconds:g} s per client, zero simulator latency; "
        "simulators in child processes; CPU = this process only"
    )
    print(f"{'case':<16} {'client':<28} {'frames/s':>9} {'CPU ms/call':>12}")
    failed = []
    ratios: dict[str, float] = {}
    for case in args.only or CASES:
        rows = run_case(case, Budget(args.seconds, args.in_flight, args.rounds), args.broker)
        for r in rows:
            print(f"{r.case:<16} {r.client:<28} {r.rate:>9.0f} {r.cpu_ms:>12.3f}")
        adapter = next(r for r in rows if r.client == "adapter")
        bare = rows[0]
        ratio = adapter.rate / bare.rate
        ratios[case] = ratio
        verdict = "ok" if ratio >= TARGET else f"BELOW {TARGET}"
        line = f"{case:<16} adapter / {bare.client} = {ratio:.2f} ({verdict})"
        for other in rows[2:]:
            line += f"; adapter / {other.client} = {adapter.rate / other.rate:.2f}"
        print(line, flush=True)
        if ratio < TARGET:
            failed.append(case)
    print("all adapters >= 0.8 of their bare client" if not failed else f"below 0.8: {failed}")
    return ratios


if __name__ == "__main__":
    main()
