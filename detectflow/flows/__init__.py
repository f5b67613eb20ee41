"""The Bytewax dataflow: sources, the detect engine, sinks.

``run_flow(settings, FlowOptions(...))`` runs it; ``build_dataflow(...)`` wires it for
callers that run it themselves.
"""

from detectflow.flows.dataflow import FlowError, FlowOptions, build_dataflow, run_flow
from detectflow.flows.engine import DetectEngine
from detectflow.flows.metrics import FlowMetrics

__all__ = [
    "DetectEngine",
    "FlowError",
    "FlowMetrics",
    "FlowOptions",
    "build_dataflow",
    "run_flow",
]
