"""Shape resolution: from a model's metadata (and the options) to how to call it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detectflow.adapters.kserve.decoders import BoxesDecoder, YoloV5Decoder, YoloV8Decoder
from detectflow.adapters.kserve.labels import COCO_LABELS, label_for, resolve_labels
from detectflow.adapters.kserve.metadata import (
    ModelMetadata,
    TensorSpec,
    metadata_from_grpc,
    metadata_from_json,
)
from detectflow.adapters.kserve.plan import EncodedInput, ImageInput, resolve_plan
from detectflow.adapters.kserve.v2 import grpc_predict_v2_pb2 as pb
from detectflow.core.errors import PermanentProviderError
from detectflow.core.normalize import detection_type_for


def model(inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]):
    return ModelMetadata(
        "m",
        tuple(TensorSpec(n, d, tuple(s)) for n, d, s in inputs),
        tuple(TensorSpec(n, d, tuple(s)) for n, d, s in outputs),
    )


YOLOV8 = model([("images", "FP32", [-1, 3, 640, 640])], [("output0", "FP32", [-1, 84, 8400])])


def test_a_stock_yolov8_export_resolves_without_options() -> None:
    plan = resolve_plan(YOLOV8, {})
    assert plan.input == ImageInput("images", "FP32", "NCHW", 640, 640, batched=True)
    assert isinstance(plan.decoder, YoloV8Decoder) and plan.decoder.channels_first is True
    assert plan.max_batch_size == 8
    assert plan.labels == COCO_LABELS
    assert "decoder yolov8 on output0" in plan.describe()


@pytest.mark.parametrize(
    ("inputs", "outputs", "options", "expect"),
    [
        # transposed yolov8, NHWC uint8, fixed batch of one
        ([("x", "UINT8", [1, 480, 640, 3])], [("y", "FP32", [1, 8400, 84])], {},
         (ImageInput("x", "UINT8", "NHWC", 640, 480, True), YoloV8Decoder, 1)),
        # yolov5 recognized by 5 + 80 columns; FP16; no batch dimension
        ([("x", "FP16", [3, 320, 320])], [("y", "FP16", [6300, 85])], {},
         (ImageInput("x", "FP16", "NCHW", 320, 320, False), YoloV5Decoder, 1)),
        # dynamic spatial dims take input_size
        ([("x", "FP32", [-1, 3, -1, -1])], [("y", "FP32", [-1, 84, -1])],
         {"input_size": "512x384"},
         (ImageInput("x", "FP32", "NCHW", 512, 384, True), YoloV8Decoder, 8)),
        # two classes: the labels tell yolov8 [A, 4 + 2] from yolov5
        ([("x", "FP32", [-1, 3, 640, 640])], [("y", "FP32", [-1, 8400, 7])],
         {"labels": "cat,dog"},
         (ImageInput("x", "FP32", "NCHW", 640, 640, True), YoloV5Decoder, 8)),
        # TF Object Detection API: encoded images in, named outputs
        ([("encoded", "BYTES", [-1])],
         [("detection_boxes", "FP32", [-1, 100, 4]), ("detection_scores", "FP32", [-1, 100]),
          ("detection_classes", "FP32", [-1, 100]), ("num_detections", "FP32", [-1])],
         {"box_format": "yxyx", "box_units": "fraction"},
         (EncodedInput("encoded", True, ()), BoxesDecoder, 8)),
    ],
)  # fmt: skip
def test_layouts_datatypes_and_decoders_come_from_the_shapes(
    inputs: Any, outputs: Any, options: dict[str, Any], expect: tuple[Any, type, int]
) -> None:
    plan = resolve_plan(model(inputs, outputs), options)
    source, decoder_type, batch = expect
    assert plan.input == source
    assert isinstance(plan.decoder, decoder_type)
    assert plan.max_batch_size == batch


def test_the_boxes_decoder_finds_its_outputs_by_name_including_the_count() -> None:
    plan = resolve_plan(
        model(
            [("encoded", "BYTES", [-1, 1])],
            [
                ("num_detections", "FP32", [-1]),
                ("detection_classes", "FP32", [-1, 100]),
                ("detection_scores", "FP32", [-1, 100]),
                ("detection_boxes", "FP32", [-1, 100, 4]),
            ],
        ),
        {"box_format": "yxyx", "box_units": "fraction"},
    )
    decoder = plan.decoder
    assert isinstance(decoder, BoxesDecoder)
    assert decoder.outputs == (
        "detection_boxes",
        "detection_scores",
        "detection_classes",
        "num_detections",
    )
    assert (decoder.box_format, decoder.fractions) == ("yxyx", True)
    assert plan.input == EncodedInput("encoded", True, (1,))


def test_options_choose_among_several_inputs_and_outputs() -> None:
    metadata = model(
        [("mask", "FP32", [-1, 640, 640]), ("images", "FP32", [-1, 3, 640, 640])],
        [("proto", "FP32", [-1, 32, 160, 160]), ("output0", "FP32", [-1, 116, 8400])],
    )
    plan = resolve_plan(metadata, {"input": "images", "outputs": "output0", "decoder": "yolov8"})
    assert plan.input.name == "images" and plan.decoder.outputs == ("output0",)


@pytest.mark.parametrize(
    ("inputs", "outputs", "options", "says"),
    [
        ([("tokens", "INT64", [-1, 5])], [("logits", "FP32", [-1, 2])], {},
         "no image-like input (an FP32/FP16/UINT8 image tensor or a BYTES input; set option "
         "input when there are several); found: tokens INT64 [-1, 5]"),
        ([("a", "FP32", [-1, 3, 8, 8]), ("b", "FP32", [-1, 3, 8, 8])], [("y", "FP32", [-1, 84, 9])],
         {}, "several inputs"),
        ([("x", "FP32", [-1, 1, 640, 640])], [("y", "FP32", [-1, 84, 8400])], {},
         "no 3-channel (RGB) dimension first or last"),
        ([("x", "FP32", [4, 3, 640, 640])], [("y", "FP32", [4, 84, 8400])], {},
         "fixed batch of 4"),
        ([("x", "FP32", [-1, 3, 64, 64])], [("y", "FP32", [-1, 10])], {},
         "output y FP32 [-1, 10] is no known detection layout"),
        ([("x", "FP32", [-1, 3, 64, 64])], [("y", "FP32", [-1, 300, 6])], {},
         "could be yolov8 [A, 4+C] or yolov5 [A, 5+C]"),
        ([("x", "FP32", [-1, 3, 64, 64])], [("a", "FP32", [-1, 9]), ("b", "FP32", [-1, 9])], {},
         "cannot tell which output holds the detections"),
        ([("x", "FP32", [-1, 3, 64, 64])],
         [("p", "FP32", [-1, 9, 4]), ("q", "FP32", [-1, 9]), ("r", "FP32", [-1, 9])], {},
         "cannot tell the boxes, scores and classes outputs apart"),
        ([("x", "FP32", [-1, 3, 64, 64])], [("y", "FP32", [-1, 84, 9])], {"input": "nope"},
         "model has no input 'nope'; found: x FP32 [-1, 3, 64, 64]"),
        ([("x", "FP32", [-1, 3, 64, 64])], [("y", "FP32", [-1, 84, 9])], {"outputs": "z"},
         "model has no output 'z'; found: y FP32 [-1, 84, 9]"),
        ([("x", "FP32", [-1, 3, 64, 64])], [("y", "FP32", [-1, 84, 9])], {"decoder": "ssd"},
         "option decoder must be one of"),
        ([("x", "FP32", [-1, 3, 64, 64])], [("y", "FP32", [-1, 84, 9])], {"layout": "CHW"},
         "option layout must be NCHW or NHWC"),
        ([("x", "FP32", [-1, 3, -1, -1])], [("y", "FP32", [-1, 84, 9])], {"input_size": "big"},
         "option input_size must be 640 or 640x480"),
        ([("x", "FP32", [-1, 3, 64, 64])], [("y", "FP32", [-1, 84, 9])],
         {"iou_threshold": 2}, "iou_threshold must be in (0, 1]"),
    ],
)  # fmt: skip
def test_models_that_do_not_fit_are_refused_naming_what_was_found(
    inputs: Any, outputs: Any, options: dict[str, Any], says: str
) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        resolve_plan(model(inputs, outputs), options)
    assert says in caught.value.message


def test_metadata_reads_alike_from_rest_json_and_grpc() -> None:
    body = {
        "name": "yolo",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 3, 640, 640]}],
        "outputs": [{"name": "output0", "datatype": "FP32", "shape": [-1, 84, 8400]}],
    }
    message = pb.ModelMetadataResponse(name="yolo", versions=["1"], platform="onnxruntime_onnx")
    message.inputs.add(name="images", datatype="FP32", shape=[-1, 3, 640, 640])
    message.outputs.add(name="output0", datatype="FP32", shape=[-1, 84, 8400])
    assert metadata_from_json(body) == metadata_from_grpc(message)
    assert metadata_from_json(body).inputs[0].describe() == "images FP32 [-1, 3, 640, 640]"


@pytest.mark.parametrize(
    "body",
    [[], {"inputs": "x"}, {"inputs": [{"name": "x", "datatype": "FP32", "shape": ["a"]}]}],
)
def test_malformed_metadata_is_a_permanent_error(body: Any) -> None:
    with pytest.raises(PermanentProviderError, match="malformed model metadata"):
        metadata_from_json(body)


def test_labels_come_from_coco_a_list_a_string_or_a_file(tmp_path: Path) -> None:
    assert len(COCO_LABELS) == 80 and COCO_LABELS[2] == "car" and COCO_LABELS[79] == "toothbrush"
    assert resolve_labels(None) == resolve_labels("coco") == COCO_LABELS
    assert resolve_labels(["a", "b"]) == resolve_labels("a, b") == ("a", "b")
    names = tmp_path / "labels.txt"
    names.write_text("plate\n\nface\n")
    assert resolve_labels(str(names)) == resolve_labels(f"file:{names}") == ("plate", "face")
    assert label_for(("a",), 3) == "class_3"
    with pytest.raises(PermanentProviderError, match="cannot read labels file"):
        resolve_labels(f"file:{tmp_path / 'missing.txt'}")
    with pytest.raises(PermanentProviderError, match="empty class"):
        resolve_labels("a,,b")


def test_coco_vehicle_classes_map_to_the_vehicle_type() -> None:
    vehicles = {n for n in COCO_LABELS if detection_type_for(n) == "vehicle"}
    assert vehicles == {"bicycle", "car", "motorcycle", "bus", "truck"}
    assert detection_type_for(COCO_LABELS[0]) == "person"
