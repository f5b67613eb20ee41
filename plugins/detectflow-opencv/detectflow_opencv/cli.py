"""The ``detectflow-opencv`` command: serve the detector, or run it on files.

``serve`` makes the detector a DeepStack-compatible HTTP service (see
:mod:`detectflow_opencv.serve`); ``detect`` prints what it finds in image
files as the same JSON, to check a setup without any server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from detectflow_opencv import __version__

__all__ = ["cli", "main"]


def _settings(faces: bool, people: bool, option: tuple[str, ...]) -> Any:
    from detectflow import PermanentProviderError

    from detectflow_opencv.detector import DetectorSettings

    options: dict[str, Any] = {}
    for item in option:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--option")
        try:
            options[key.strip()] = json.loads(text)
        except ValueError:
            raise click.BadParameter(
                f"the value of {key.strip()} is not a number: {text!r}", param_hint="--option"
            ) from None
    try:
        return DetectorSettings(faces=faces, people=people).with_options(options)
    except PermanentProviderError as exc:
        raise click.BadParameter(exc.message, param_hint="--option") from None


_detector_options = [
    click.option("--faces/--no-faces", default=True, help="Look for faces (Haar cascade)."),
    click.option("--people/--no-people", default=True, help="Look for people (HOG)."),
    click.option(
        "--option",
        multiple=True,
        metavar="KEY=VALUE",
        help="Detector tuning, repeatable: scale_factor, min_neighbors, min_face_size, "
        "hog_scale, hog_stride, max_side.",
    ),
]


def _with_detector_options(func: Any) -> Any:
    for decorate in reversed(_detector_options):
        func = decorate(func)
    return func


@click.group()
@click.version_option(__version__, prog_name="detectflow-opencv")
def cli() -> None:
    """OpenCV face and people detection for detectflow."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=5000, show_default=True)
@click.option("--api-key", envvar="DETECTFLOW_OPENCV_API_KEY", help="Require this key.")
@click.option("--max-bytes", type=click.IntRange(1), default=10 * 1024 * 1024, show_default=True)
@click.option("--timeout", type=click.FloatRange(0.01), default=60.0, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@_with_detector_options
def serve(
    host: str,
    port: int,
    api_key: str | None,
    max_bytes: int,
    timeout: float,
    workers: int,
    faces: bool,
    people: bool,
    option: tuple[str, ...],
) -> None:
    """Serve the DeepStack HTTP dialect (POST /v1/vision/detection)."""
    from detectflow_opencv.detector import OpenCVDetector
    from detectflow_opencv.serve import ServeOptions
    from detectflow_opencv.serve import serve as run

    detector = OpenCVDetector(_settings(faces, people, option))
    options = ServeOptions(
        api_key=api_key, max_bytes=max_bytes, timeout=timeout, max_workers=workers
    )
    run(host, port, detector=detector, options=options)


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.4, show_default=True)
@_with_detector_options
def detect(
    images: tuple[Path, ...],
    min_confidence: float,
    faces: bool,
    people: bool,
    option: tuple[str, ...],
) -> None:
    """Print one DeepStack-shaped JSON answer per image file."""
    from detectflow import PermanentProviderError

    from detectflow_opencv.detector import OpenCVDetector, decode_image
    from detectflow_opencv.serve import predictions

    detector = OpenCVDetector(_settings(faces, people, option))
    failed = False
    for path in images:
        answer: dict[str, Any] = {"file": str(path)}
        try:
            bgr = decode_image(path.read_bytes())
            height, width = bgr.shape[:2]
            found = detector.detect_array(bgr)
            answer |= {
                "success": True,
                "predictions": predictions(found, width, height, min_confidence),
            }
        except (OSError, PermanentProviderError) as exc:
            failed = True
            reason = exc.message if isinstance(exc, PermanentProviderError) else str(exc)
            answer |= {"success": False, "error": reason}
        click.echo(json.dumps(answer))
    if failed:
        sys.exit(1)


def main() -> None:
    cli(prog_name="detectflow-opencv")
