"""Models for KServe's own model server: the real v2 peer of the kserve adapter tests.

Runs in .venv-kserve (scripts/setup makes it), never in detectflow's .venv:
``python peer_models.py --http_port P --grpc_port G --models yolo,batch``.
Every model computes its answer from the tensor it received, so a test
proves what the adapter sent, not a canned reply.

- ``yolo``: YOLOv8-shaped (``images`` FP32 [-1, 3, 640, 640] ->
  ``output0`` FP32 [-1, 84, 16]). It finds bright axis-aligned rectangles in
  the letterboxed input (white: class 0 person; red: class 2 car) and
  reports each as cx, cy, w, h in input pixels, plus a weaker duplicate one
  pixel off that NMS must remove.
- ``yolo_nhwc``: the same on a UINT8 [-1, 480, 640, 3] input (non-square,
  channels last).
- ``boxes``: a ``BYTES`` input ([-1]) of encoded images, decoded here with
  Pillow; the same rectangles answered as ``detection_boxes`` (fractions,
  y1 x1 y2 x2 like the TF Object Detection API), ``detection_scores``,
  ``detection_classes``, ``num_detections``.
- ``opencv``: detectflow's OpenCV plugin detector (faces) on a ``BYTES``
  input, answering ``boxes`` (xyxy pixels), ``scores``, ``classes`` (0
  person, 1 face) and ``count``; needs the repository on PYTHONPATH, which
  :func:`peer.running_peer` sets.
- ``batch``: zero work on FP32 [-1, 3, 64, 64]; appends each batch size it
  sees to $PEER_BATCH_LOG; sleeps $PEER_COST_MS + $PEER_PER_IMAGE_MS per image,
  at most $PEER_INSTANCES calls at once (default 1), as a GPU would run them.
- ``zero``: zero work on FP32 [-1, 3, 64, 64], for the benchmark.
- ``fixed``: like ``batch`` with a fixed batch of 1 (no batching possible).
- ``slow``: ``batch`` that takes a minute to answer.
- ``wrongshape``: metadata promises [-1, 84, 16]; answers [84, 16] without
  the batch dimension.
- ``notready``: registered but never ready.
- ``crash``: kills the whole server process in the middle of an infer.
- ``text``: a model with no image-like input (INT64 [-1, 5]), for refusals.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import time
from typing import ClassVar

import numpy as np

ANCHORS = 16


def bright_boxes(rgb: np.ndarray) -> list[tuple[float, float, float, float, int]]:
    """x1, y1, x2, y2 (pixels, exclusive ends) and class of bright rectangles in HxWx3 [0, 1].

    Rectangles are found by guillotine cuts: runs of columns with any bright
    pixel, then runs of rows within each; enough for the separate
    rectangles the tests draw.
    """
    mask = rgb.max(axis=2) > 0.8
    found = []
    for x1, x2 in _runs(mask.any(axis=0)):
        for y1, y2 in _runs(mask[:, x1:x2].any(axis=1)):
            patch = rgb[y1:y2, x1:x2][mask[y1:y2, x1:x2]]
            red = patch[:, 0].mean() > 0.8 and patch[:, 1].mean() < 0.3
            found.append((float(x1), float(y1), float(x2), float(y2), 2 if red else 0))
    return found


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def yolo_output(rgb: np.ndarray) -> np.ndarray:
    out = np.zeros((84, ANCHORS), dtype=np.float32)
    slot = 0
    for x1, y1, x2, y2, cls in bright_boxes(rgb)[: ANCHORS // 2]:
        for shift, score in ((0.0, 0.9), (1.0, 0.8)):  # the box, and a duplicate for NMS
            out[0:4, slot] = ((x1 + x2) / 2 + shift, (y1 + y2) / 2, x2 - x1, y2 - y1)
            out[4 + cls, slot] = score
            slot += 1
    return out


def main() -> None:
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", required=True)
    own, _ = parser.parse_known_args()

    semaphore: list[asyncio.Semaphore] = []

    def instances() -> asyncio.Semaphore:
        if not semaphore:  # made on first use, inside the server's event loop
            semaphore.append(asyncio.Semaphore(int(os.environ.get("PEER_INSTANCES", "1"))))
        return semaphore[0]

    def respond(request: InferRequest, name: str, outputs: dict[str, np.ndarray]) -> InferResponse:
        infer_outputs = []
        for out_name, array in outputs.items():
            datatype = {"f": "FP32", "i": "INT64"}[array.dtype.kind]
            output = InferOutput(name=out_name, shape=list(array.shape), datatype=datatype)
            output.set_data_from_numpy(array, binary_data=True)
            infer_outputs.append(output)
        return InferResponse(
            response_id=request.id or "", model_name=name, infer_outputs=infer_outputs
        )

    class Peer(Model):
        inputs: ClassVar[list[dict]] = []
        outputs: ClassVar[list[dict]] = []

        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.ready = self.load()

        def load(self) -> bool:
            return True

        def get_input_types(self) -> list[dict]:
            return self.inputs

        def get_output_types(self) -> list[dict]:
            return self.outputs

    class Yolo(Peer):
        inputs: ClassVar[list[dict]] = [
            {"name": "images", "datatype": "FP32", "shape": [-1, 3, 640, 640]}
        ]
        outputs: ClassVar[list[dict]] = [
            {"name": "output0", "datatype": "FP32", "shape": [-1, 84, ANCHORS]}
        ]

        async def predict(self, payload: InferRequest, headers=None, response_headers=None):
            images = payload.inputs[0].as_numpy().transpose(0, 2, 3, 1)
            result = np.stack([yolo_output(image) for image in images])
            return respond(payload, self.name, {"output0": result})

    class YoloNhwc(Peer):
        inputs: ClassVar[list[dict]] = [
            {"name": "pixels", "datatype": "UINT8", "shape": [-1, 480, 640, 3]}
        ]
        outputs: ClassVar[list[dict]] = [
            {"name": "output0", "datatype": "FP32", "shape": [-1, 84, ANCHORS]}
        ]

        async def predict(self, payload: InferRequest, headers=None, response_headers=None):
            images = payload.inputs[0].as_numpy().astype(np.float32) / 255
            result = np.stack([yolo_output(image) for image in images])
            return respond(payload, self.name, {"output0": result})

    class Boxes(Peer):
        inputs: ClassVar[list[dict]] = [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}]
        outputs: ClassVar[list[dict]] = [
            {"name": "detection_boxes", "datatype": "FP32", "shape": [-1, 8, 4]},
            {"name": "detection_scores", "datatype": "FP32", "shape": [-1, 8]},
            {"name": "detection_classes", "datatype": "FP32", "shape": [-1, 8]},
            {"name": "num_detections", "datatype": "FP32", "shape": [-1]},
        ]

        async def predict(self, payload: InferRequest, headers=None, response_headers=None):
            from PIL import Image

            encoded_images = payload.inputs[0].as_numpy().reshape(-1)
            boxes = np.zeros((len(encoded_images), 8, 4), dtype=np.float32)
            scores = np.zeros(boxes.shape[:2], dtype=np.float32)
            classes = np.zeros(boxes.shape[:2], dtype=np.float32)
            counts = np.zeros(len(boxes), dtype=np.float32)
            for i, encoded in enumerate(encoded_images):
                with Image.open(io.BytesIO(encoded)) as image:
                    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
                h, w = rgb.shape[:2]
                found = bright_boxes(rgb)[:8]
                for k, (x1, y1, x2, y2, cls) in enumerate(found):
                    boxes[i, k] = (y1 / h, x1 / w, y2 / h, x2 / w)
                    scores[i, k] = 0.9
                    classes[i, k] = cls
                counts[i] = len(found)
                scores[i, len(found) :] = 0.95  # padding past the count must be ignored
            return respond(
                payload,
                self.name,
                {
                    "detection_boxes": boxes,
                    "detection_scores": scores,
                    "detection_classes": classes,
                    "num_detections": counts,
                },
            )

    class OpenCV(Peer):
        """detectflow's OpenCV plugin detector behind the open protocol (faces only)."""

        inputs: ClassVar[list[dict]] = [{"name": "jpeg", "datatype": "BYTES", "shape": [-1]}]
        outputs: ClassVar[list[dict]] = [
            {"name": "boxes", "datatype": "FP32", "shape": [-1, 10, 4]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, 10]},
            {"name": "classes", "datatype": "FP32", "shape": [-1, 10]},
            {"name": "count", "datatype": "FP32", "shape": [-1]},
        ]
        names = ("person", "face")

        def load(self) -> bool:
            from detectflow_opencv.detector import DetectorSettings, OpenCVDetector

            self.detector = OpenCVDetector(DetectorSettings(people=False))
            return True

        async def predict(self, payload: InferRequest, headers=None, response_headers=None):
            images = payload.inputs[0].as_numpy().reshape(-1)
            boxes = np.zeros((len(images), 10, 4), dtype=np.float32)
            scores = np.zeros(boxes.shape[:2], dtype=np.float32)
            classes = np.zeros(boxes.shape[:2], dtype=np.float32)
            counts = np.zeros(len(images), dtype=np.float32)
            for i, encoded in enumerate(images):
                found = self.detector.detect(bytes(encoded))[:10]
                for k, raw in enumerate(found):  # xywh pixels -> xyxy pixels
                    x, y, w, h = raw.box
                    boxes[i, k] = (x, y, x + w, y + h)
                    scores[i, k] = raw.confidence
                    classes[i, k] = self.names.index(raw.label)
                counts[i] = len(found)
            outputs = {"boxes": boxes, "scores": scores, "classes": classes, "count": counts}
            return respond(payload, self.name, outputs)

    class Batch(Peer):
        inputs: ClassVar[list[dict]] = [
            {"name": "images", "datatype": "FP32", "shape": [-1, 3, 64, 64]}
        ]
        outputs: ClassVar[list[dict]] = [
            {"name": "output0", "datatype": "FP32", "shape": [-1, 84, 8]}
        ]

        async def predict(self, payload: InferRequest, headers=None, response_headers=None):
            images = payload.inputs[0].as_numpy()
            n = len(images)
            log = os.environ.get("PEER_BATCH_LOG")
            if log and self.name == "batch":
                with open(log, "a") as f:
                    f.write(f"{n}\n")
            cost = float(os.environ.get("PEER_COST_MS", "0"))
            per_image = float(os.environ.get("PEER_PER_IMAGE_MS", "0"))
            if cost or per_image:
                async with instances():  # like a GPU: this many calls run at once
                    await asyncio.sleep((cost + per_image * n) / 1000)
            result = np.zeros((n, 84, 8), dtype=np.float32)
            # echo each image's mean brightness as a person score, so answers
            # can be told apart and matched back to their frames
            result[:, 0:4, 0] = (32, 32, 16, 16)
            result[:, 4, 0] = images.reshape(n, -1).mean(axis=1)
            return respond(payload, self.name, {"output0": result})

    class Fixed(Batch):
        inputs: ClassVar[list[dict]] = [
            {"name": "images", "datatype": "FP32", "shape": [1, 3, 64, 64]}
        ]
        outputs: ClassVar[list[dict]] = [
            {"name": "output0", "datatype": "FP32", "shape": [1, 84, 8]}
        ]

    class Slow(Batch):
        async def predict(self, payload: InferRequest, headers=None, response_headers=None):
            await asyncio.sleep(60)  # far past any timeout a test gives
            return await super().predict(payload, headers, response_headers)

    class WrongShape(Yolo):
        async def predict(self, payload: InferRequest, headers=None, response_headers=None):
            result = np.zeros((84, ANCHORS), dtype=np.float32)
            return respond(payload, self.name, {"output0": result})

    class NotReady(Yolo):
        async def healthy(self) -> bool:  # registered, but never ready
            return False

    class Crash(Yolo):
        async def predict(self, payload: InferRequest, headers=None, response_headers=None):
            sys.stdout.flush()
            os._exit(3)

    class Text(Peer):
        inputs: ClassVar[list[dict]] = [{"name": "tokens", "datatype": "INT64", "shape": [-1, 5]}]
        outputs: ClassVar[list[dict]] = [{"name": "logits", "datatype": "FP32", "shape": [-1, 2]}]

    kinds = {
        "yolo": Yolo,
        "yolo_nhwc": YoloNhwc,
        "boxes": Boxes,
        "opencv": OpenCV,
        "batch": Batch,
        "zero": Batch,
        "fixed": Fixed,
        "slow": Slow,
        "wrongshape": WrongShape,
        "notready": NotReady,
        "crash": Crash,
        "text": Text,
    }
    models = [kinds[name](name) for name in own.models.split(",")]
    ModelServer().start(models)


if __name__ == "__main__":
    start = time.monotonic()
    main()
