"""Every benchmark, briefly, in one table: a regression check in one command.

Each bench runs in a process of its own (``python -m bench.<name>`` with
short settings) and hands back the figures its ``main`` returns; the table
shows each ratio against the baseline that bench measured in the same run,
and the target its issue set. Short runs are noisier than full ones: a
MISSED here is a reason to run that bench at its defaults on a quiet
machine, not a verdict. ``scripts/bench`` runs this.

    .venv/bin/python -m bench.all [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BENCHES", "main"]

Rows = list[tuple[str, float, float]]
"""(figure, ratio to the same run's baseline, target: at least this)."""


@dataclass(frozen=True)
class Bench:
    module: str
    argv: tuple[str, ...]
    rows: Callable[[dict[str, Any]], Rows]


def _ingest(f: dict[str, Any]) -> Rows:
    bare = f["bare"]
    return [
        ("send-frame queue / bare, 16 clients", f["queue"]["16"]["rps"] / bare["16"]["rps"], 0.5),
        ("send-frame inline / bare, 1 client", f["inline"]["1"]["rps"] / bare["1"]["rps"], 0.3),
    ]


BENCHES: dict[str, Bench] = {
    "flow_throughput": Bench(
        "bench.flow_throughput",
        ("--frames", "4000"),
        lambda f: [("flow frames/s / raw COPY + pipeline", f["ratio"], 0.25)],
    ),
    "flow_latency": Bench(
        "bench.flow_latency",
        ("--frames", "800"),
        lambda f: [("flow at 50 ms provider / ceiling", f["ratio"], 0.9)],
    ),
    "adapters": Bench(
        "bench.adapters",
        ("--seconds", "1", "--rounds", "2"),
        lambda f: [(f"{case} adapter / bare client", ratio, 0.8) for case, ratio in f.items()],
    ),
    "http_clients": Bench(
        "bench.http_clients",
        ("--seconds", "1"),
        lambda f: [("http adapter / bare client, 0 ms", f["adapter_vs_bare_0ms"], 0.8)],
    ),
    "redis_pipeline": Bench(
        "bench.redis_pipeline",
        ("--seconds", "0.3", "--rounds", "2"),
        lambda f: [("live publish pipelined / unpipelined", f["ratio"], 1.0)],
    ),
    "api": Bench(
        "bench.api",
        ("--seconds", "1", "--ws-clients", "300", "--broadcasts", "3"),
        lambda f: [
            (
                "GET /live / bare, 32 clients",
                f["detectflow"]["many"]["rps"] / f["bare"]["many"]["rps"],
                0.5,
            ),
            ("WebSocket fan-out p99, bare / ours", f["fan_out_ratio"], 0.8),
        ],
    ),
    "ingest": Bench("bench.ingest", ("--seconds", "1"), _ingest),
    "gateway": Bench(
        "bench.gateway",
        ("--seconds", "1"),
        lambda f: [("DeepStack gateway / provider direct, 32 clients", f["ratio"], 0.7)],
    ),
    "publish": Bench(
        "bench.publish",
        ("--cameras", "150"),
        lambda f: [
            ("MQTT events/s / bare paho, QoS 1", f["mqtt_ratio"], 0.8),
            ("webhook events/s / bare aiohttp POSTs", f["webhook_ratio"], 0.8),
        ],
    ),
    "video": Bench(
        "bench.video",
        ("--seconds", "4"),
        lambda f: [
            ("video: bare decode / flow CPU (<= 1.2x)", 1 / f["flow_vs_bare"], 0.83),
            ("video: 250 ms / capture-to-stored p99", 250 / f["latency_p99_ms"], 1.0),
        ],
    ),
    "kserve": Bench(
        "bench.kserve",
        ("--seconds", "1"),
        lambda f: [
            ("kserve gRPC adapter / bare client", f["grpc_adapter_vs_bare"], 0.8),
            ("kserve batched / ceiling", f["batched_vs_ceiling"], 0.85),
            ("kserve batched / unbatched", f["batched_vs_unbatched"], 3.0),
        ],
    ),
}

_RUNNER = (
    "import json, sys\n"
    "from importlib import import_module\n"
    "figures = import_module(sys.argv[1]).main(sys.argv[2:])\n"
    "print('@@figures ' + json.dumps(figures, default=str))\n"
)


def run(name: str, bench: Bench) -> tuple[Rows, str | None]:
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, bench.module, *bench.argv],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("@@figures "):
            return bench.rows(json.loads(line[len("@@figures ") :])), None
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return [], f"{name} failed (exit {done.returncode}): " + " | ".join(tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(BENCHES))
    args = parser.parse_args(argv)
    failures: list[str] = []
    table: list[tuple[str, str, float, float]] = []
    for name in args.only or BENCHES:
        started = time.monotonic()
        rows, error = run(name, BENCHES[name])
        print(f"{name}: {time.monotonic() - started:.0f} s", flush=True)
        if error:
            failures.append(error)
        table.extend((name, figure, ratio, target) for figure, ratio, target in rows)
    width = max((len(f) for _, f, _, _ in table), default=10)
    print(f"\n{'bench':<16} {'figure':<{width}} {'ratio':>7} {'target':>7}  verdict")
    for name, figure, ratio, target in table:
        verdict = "met" if ratio >= target else "MISSED"
        print(f"{name:<16} {figure:<{width}} {ratio:>7.2f} {'>= ' + str(target):>7}  {verdict}")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
