"""Detect one image with a DeepStack client library nobody here wrote, print its answer.

Runs in .venv-nvr (``scripts/setup`` makes it), never in detectflow's
.venv: the clients pull OpenCV, matplotlib and requests, and two of them
install a top-level ``tests`` package that would shadow ours.

    .venv-nvr/bin/python tests/server/nvr_clients.py CLIENT PORT IMAGE [API_KEY]

CLIENT is ``deepstack-python`` (Home Assistant's DeepStack integrations),
``deepstack-sdk`` (DeepStack's own SDK) or ``codeproject-ai-api``. It prints
the predictions as a JSON list of ``[label, x_min, y_min, x_max, y_max]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def detect(client: str, port: int, image: bytes, api_key: str) -> list[list[object]]:
    if client == "deepstack-python":
        from deepstack.core import DeepstackObject

        found = DeepstackObject("127.0.0.1", port, api_key=api_key, min_confidence=0.0).detect(
            image
        )
        return [[p["label"], p["x_min"], p["y_min"], p["x_max"], p["y_max"]] for p in found]
    if client == "deepstack-sdk":
        from deepstack_sdk import Detection, ServerConfig

        config = ServerConfig(f"http://127.0.0.1:{port}", api_key=api_key or None)
        response = Detection(config).detectObject(image, min_confidence=0.0)
        return [[d.label, d.x_min, d.y_min, d.x_max, d.y_max] for d in response]
    if client == "codeproject-ai-api":
        from codeprojectai.core import CodeProjectAIObject

        found = CodeProjectAIObject("127.0.0.1", port, min_confidence=0.0).detect(image)
        return [[p["label"], p["x_min"], p["y_min"], p["x_max"], p["y_max"]] for p in found]
    raise SystemExit(f"unknown client {client!r}")


if __name__ == "__main__":
    name, port, path, *key = sys.argv[1:]
    print(json.dumps(detect(name, int(port), Path(path).read_bytes(), key[0] if key else "")))
