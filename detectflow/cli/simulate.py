"""``detectflow simulate``: serve the simulated provider over HTTP, gRPC or MQTT."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import click

from detectflow.core.errors import ProviderError
from detectflow.simulator import DEFAULT_MQTT_URL, PROTOCOLS, SimulatedHandler, Simulator

__all__ = ["simulate"]

# -- the command -------------------------------------------------------------


@click.command("simulate")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (http, grpc)."
)
@click.option(
    "--port",
    default=8001,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (http, grpc).",
)
@click.option(
    "--latency", default=0.0, show_default=True, type=click.FloatRange(min=0), help="Seconds."
)
@click.option("--error-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction -> 503.")
@click.option("--timeout-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction hung.")
@click.option(
    "--malformed-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction invalid JSON."
)
@click.option(
    "--fail-first", default=0, type=click.IntRange(min=0), help="503 the first N tries per frame."
)
@click.option("--api-key", default=None, help="Require this key (bearer token or form field).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fault RNG.")
@click.option(
    "--protocol",
    default="http",
    show_default=True,
    type=click.Choice(PROTOCOLS),
    help="Wire protocol to serve: http_api (both dialects), grpc or mqtt.",
)
@click.option(
    "--mqtt-url",
    default=DEFAULT_MQTT_URL,
    show_default=True,
    help="For --protocol mqtt: the broker and the request topic to answer on.",
)
def simulate(
    host: str,
    port: int,
    latency: float,
    error_rate: float,
    timeout_rate: float,
    malformed_rate: float,
    fail_first: int,
    api_key: str | None,
    seed: int,
    protocol: str,
    mqtt_url: str,
) -> None:
    """Run a SIMULATED detection provider (synthetic detections, NOT a detector).

    Over http it serves both http_api dialects: POST /detect (detectflow
    JSON) and POST /v1/vision/detection (DeepStack / CodeProject.AI); over
    grpc detectflow.provider.v1; over mqtt MQTT 5 request/response on the
    --mqtt-url topic. Its boxes are made up from a hash of the image bytes,
    the same on every protocol, for demos, tests and benchmarks; it
    recognises nothing. Stop with Ctrl-C.
    """
    if protocol != "http":
        if malformed_rate:
            raise click.UsageError("--malformed-rate applies to --protocol http only")
        if protocol == "mqtt":
            from detectflow.adapters.mqtt_wire import parse_mqtt_url

            try:
                parse_mqtt_url(mqtt_url)
            except ValueError as exc:
                raise click.UsageError(f"--mqtt-url: {exc}") from None
        try:
            handler = SimulatedHandler(
                error_rate=error_rate, timeout_rate=timeout_rate, fail_first=fail_first, seed=seed
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        _run(_serve_other(protocol, handler, host, port, latency, api_key, mqtt_url), host, port)
        return
    try:
        simulator = Simulator(
            host=host,
            port=port,
            latency=latency,
            error_rate=error_rate,
            timeout_rate=timeout_rate,
            malformed_rate=malformed_rate,
            fail_first=fail_first,
            api_key=api_key,
            seed=seed,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _run(_serve_forever(simulator), host, port)


def _run(serving: Coroutine[Any, Any, None], host: str, port: int) -> None:
    try:
        asyncio.run(serving)
    except KeyboardInterrupt:
        click.echo("simulator stopped")
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    except ProviderError as exc:  # the MQTT broker refused or is down
        raise click.ClickException(exc.message) from None


async def _serve_other(
    protocol: str,
    handler: SimulatedHandler,
    host: str,
    port: int,
    latency: float,
    api_key: str | None,
    mqtt_url: str,
) -> None:
    """Serve ``handler`` over gRPC or MQTT until cancelled (Ctrl-C)."""
    if protocol == "grpc":
        from detectflow.adapters.grpc.server import GrpcProviderServer

        server = GrpcProviderServer(
            handler, host=host, port=port, api_key=api_key or None, latency=latency
        )
        try:
            await server.start()
        except RuntimeError as exc:  # grpcio reports a port in use this way
            raise OSError(str(exc)) from None
        try:
            click.echo(f"SIMULATED detection provider (synthetic detections) on {server.url}")
            click.echo(f"  provider type grpc, endpoint_url: {server.url}")
            await asyncio.Event().wait()
        finally:
            await server.stop()
        return
    from detectflow.adapters.mqtt_responder import MqttResponder

    responder = MqttResponder(handler, url=mqtt_url, api_key=api_key or None, latency=latency)
    try:
        await responder.start()
        click.echo(f"SIMULATED detection provider (synthetic detections) on {mqtt_url}")
        click.echo(f"  provider type mqtt, endpoint_url: {mqtt_url}")
        await asyncio.Event().wait()
    finally:
        await responder.stop()


async def _serve_forever(simulator: Simulator) -> None:
    async with simulator:
        click.echo(f"SIMULATED detection provider (synthetic detections) on {simulator.url}")
        click.echo(f"  detectflow dialect: {simulator.detect_url('detectflow')}")
        click.echo(f"  deepstack dialect:  {simulator.detect_url('deepstack')}")
        await asyncio.Event().wait()
