"""A simulated detection provider: synthetic answers, real HTTP, chosen faults.

Demos, tests and benchmarks need a provider that answers like a real one,
fast, and misbehaves on request, without a GPU or a model. The simulator is
an aiohttp.web server that speaks both ``http_api`` dialects:

- ``POST /detect``: the detectflow JSON dialect (boxes in fractions);
- ``POST /v1/vision/detection``: the DeepStack / CodeProject.AI multipart
  dialect (boxes in integer pixels, CodeProject.AI's extra fields included);
- ``GET /v1/server/status/ping``, ``GET /health``, ``GET /stats``.

Its detections are NOT real: they are derived from ``sha256(image)``, so the
same bytes always get the same 1-3 boxes (labels person, face, car, truck,
bicycle, dog), whatever the dialect, seed or faults. ``min_confidence`` is
honoured as a real provider would; the first box is always >= 0.6 so a demo
at the default threshold always shows something.

Faults, decided by one RNG seeded with ``seed`` (one draw per request, in
arrival order): ``error_rate`` answers 503, ``timeout_rate`` hangs for
``hang_seconds`` before answering, ``malformed_rate`` answers invalid JSON.
``fail_first=N`` answers 503 to the first N requests for each frame, which
lets a test prove retries deterministically. ``api_key`` makes requests
without the right bearer token (or DeepStack ``api_key`` form field) get 401.

``detectflow simulate --protocol grpc`` (``detectflow.provider.v1`` through
:class:`~detectflow.adapters.grpc.server.GrpcProviderServer`) and
``--protocol mqtt`` (MQTT 5 request/response through
:class:`~detectflow.adapters.mqtt_responder.MqttResponder`) serve the same
answers from :class:`SimulatedHandler`: same bytes, same boxes, whatever the
wire. There ``error_rate`` and ``fail_first`` answer UNAVAILABLE / status
503, ``timeout_rate`` hangs; ``malformed_rate`` is HTTP only, since those
servers encode every answer themselves.


The package: :mod:`~detectflow.simulator.answers` (the boxes and faults, one
handler for every wire), :mod:`~detectflow.simulator.http` (the aiohttp
server), :mod:`~detectflow.simulator.threads` (hosting it from synchronous
code); the ``detectflow simulate`` command is in :mod:`detectflow.cli.simulate`.
"""

from detectflow.simulator.answers import (
    DEFAULT_MQTT_URL,
    LABELS,
    PROTOCOLS,
    SimulatedDetection,
    SimulatedHandler,
    SimulatorStats,
    simulate_detections,
)
from detectflow.simulator.http import DETECT_PATHS, Dialect, Simulator
from detectflow.simulator.threads import SimulatorThread, run_in_thread

__all__ = [
    "DEFAULT_MQTT_URL",
    "DETECT_PATHS",
    "LABELS",
    "PROTOCOLS",
    "Dialect",
    "SimulatedDetection",
    "SimulatedHandler",
    "Simulator",
    "SimulatorStats",
    "SimulatorThread",
    "run_in_thread",
    "simulate_detections",
]
