"""Every hook a detectflow plugin can implement.

A plugin is a module (or object) with functions decorated by
``detectflow.hookimpl``. Built-in adapters are registered through these same
hooks, so anything they do, a vendor's package can do too. A hookimpl may
accept fewer arguments than its spec, so adding an argument later does not
break existing plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeAlias

import pluggy

if TYPE_CHECKING:
    # Types only: the server imports this module and never loads Bytewax.
    from bytewax.inputs import Source
    from bytewax.outputs import Sink

    from detectflow.core.adapter import ProviderAdapter
    from detectflow.core.models import Detection, DetectionEvent, Frame, FrameResult

    FrameSource: TypeAlias = Source[Frame | FrameResult]
    """A Bytewax source of frames, and of failed results for input it refused."""
    FrameSourceFactory: TypeAlias = Callable[..., FrameSource]
    """``factory(url, settings, **context)``: context arguments are passed only
    when the factory declares them (see :func:`detectflow_frame_sources`)."""
    ResultSinkFactory: TypeAlias = Callable[..., Sink[FrameResult] | None]
    """``factory(settings, **context)``: context arguments are passed only when
    the factory declares them (see :func:`detectflow_sinks`)."""

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "detectflow"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def detectflow_provider_types() -> Iterable[type[ProviderAdapter]]:
    """Return the adapter classes this plugin provides.

    Each class sets ``provider_type`` (``http_api``, ``grpc``, ``mqtt``, or a
    vendor's own such as ``opencv``); a provider config whose
    ``provider_type`` matches is served by that class. When two plugins claim
    the same type, the one registered last wins and a warning names both.
    A class that runs its model in this process sets ``in_process = True``:
    its configs need no ``endpoint_url`` and the conformance kit skips the
    network fault checks for it.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``in_process``
    """


@hookspec
def detectflow_label_map() -> Mapping[str, str]:
    """Return extra ``label -> detection_type`` entries (lower-case labels).

    Merged over the built-in table (person, face, vehicle...), later plugins
    winning, so a vendor can map ``"pickup"`` to ``"vehicle"``. The merged
    table is built once per set of registered plugins, not once per frame:
    return a fixed table.

    .. versionadded:: 0.1
    """


@hookspec
def detectflow_transform_detections(
    frame: Frame, detections: list[Detection]
) -> list[Detection] | None:
    """Post-process a frame's normalized detections (label mapping, person
    linking, face matching).

    Implementations run as a chain: each receives the previous one's output.
    Return a new list to replace the detections, or None to leave them as
    they are. An implementation that raises fails the frame permanently with
    the plugin's name in the reason.

    .. versionadded:: 0.1
    """


@hookspec
def detectflow_on_detection(detection: Detection) -> None:
    """Called once for each stored detection (alerts, notifications).

    Runs on the dataflow's sink path after the detection is written: keep it
    quick, hand slow work to a queue of your own. Exceptions are logged and
    do not fail the frame.

    .. versionadded:: 0.1
    """


@hookspec
def detectflow_on_event(event: DetectionEvent) -> None:
    """Called once for each stored event (``detection_completed``,
    ``detection_failed``...). Same rules as :func:`detectflow_on_detection`.

    .. versionadded:: 0.1
    """


@hookspec
def detectflow_frame_sources() -> Mapping[str, FrameSourceFactory]:
    """Return frame source factories keyed by URL scheme (``sql``, ``redis``...).

    ``detectflow flow run --source URL`` picks the factory for the URL's
    scheme and calls it as ``factory(url, settings)``, adding the context
    arguments it declares (``database``, ``engine``, ``until_empty``,
    ``stop``, ``metrics``, ``events``: the flow's writer of events that are
    no frame's outcome, such as ``camera_offline``; ``camera_id``: the
    ``--camera-id`` of a single-camera source); it returns a Bytewax source
    yielding :class:`~detectflow.core.models.Frame` objects (or failed
    results for input it refused, see :mod:`detectflow.flows.source_common`).

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 the ``events`` and ``camera_id`` context arguments
    """


@hookspec
def detectflow_sinks() -> Mapping[str, ResultSinkFactory]:
    """Return extra sink factories keyed by name, called as
    ``factory(settings)`` plus the context arguments it declares
    (``database``, ``metrics``); each returns a Bytewax sink that receives
    :class:`~detectflow.core.models.FrameResult` objects, or None when it is
    not configured (the flow then runs without it). A sink with a
    ``close()`` method has it called once when the flow ends.

    .. versionadded:: 0.1
    .. versionchanged:: 0.3 context arguments, None, ``close()``
    """
