"""``detectflow flow run`` with a provider plugin that kills its own process on one frame.

A poison frame: whatever takes it dies (SIGKILL, as a segfaulting native
library or the OOM killer would do it). Run as
``python -m tests.flows.poison_flow [flow run options]``; the provider type
is :data:`POISON_TYPE` and the frame that kills is :data:`POISON_FRAME_ID`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from detectflow import ProviderAdapter, hookimpl
from detectflow.cli.flow import flow_run
from detectflow.core.models import Frame, RawDetection
from detectflow.core.plugins import get_registry

__all__ = ["POISON_FRAME_ID", "POISON_TYPE", "KillingAdapter"]

POISON_TYPE = "poison_test"
POISON_FRAME_ID = "poison-frame"


class KillingAdapter(ProviderAdapter):
    """Finds a person in every frame but one; that one kills the process."""

    provider_type = POISON_TYPE

    async def detect(self, frame: Frame) -> list[RawDetection]:
        if frame.frame_id == POISON_FRAME_ID:
            os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.sleep(0.05)
        return [RawDetection("person", 0.9, (0.1, 0.1, 0.5, 0.9))]


class _PoisonPlugin:
    @hookimpl
    def detectflow_provider_types(self) -> list[type[ProviderAdapter]]:
        return [KillingAdapter]


if __name__ == "__main__":
    get_registry().register(_PoisonPlugin(), "poison", "tests", "0")
    flow_run.main(sys.argv[1:], prog_name="poison flow")
