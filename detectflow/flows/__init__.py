"""The Bytewax dataflow: sources, the detect engine, sinks.

``run_flow(settings, ...)`` runs it; ``build_dataflow(...)`` wires it for
callers that run it themselves.
"""

from detectflow.flows.dataflow import FlowError, build_dataflow, run_flow
from detectflow.flows.engine import DetectEngine
from detectflow.flows.metrics import FlowMetrics

__all__ = ["DetectEngine", "FlowError", "FlowMetrics", "build_dataflow", "run_flow"]
