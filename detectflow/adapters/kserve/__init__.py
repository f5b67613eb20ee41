"""Provider type ``kserve``: the open inference protocol (KServe v2 / Triton), REST and gRPC.

Needs the ``kserve`` extra (numpy, Pillow, protobuf); ``grpc://`` endpoints
also the ``grpc`` extra. See :mod:`.adapter` for the options.
"""

from detectflow.adapters.kserve.adapter import KServeAdapter
from detectflow.adapters.kserve.endpoint import ModelEndpoint, parse_model_url
from detectflow.adapters.kserve.plan import ModelPlan, resolve_plan

__all__ = ["KServeAdapter", "ModelEndpoint", "ModelPlan", "parse_model_url", "resolve_plan"]
