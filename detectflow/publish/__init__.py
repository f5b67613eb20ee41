"""Publishing what the flow finds: object events to MQTT (Frigate's topic layout)
and signed webhooks. Each is a sink found through the ``detectflow_sinks`` hook
(:mod:`detectflow.publish.plugin`), registered exactly as a vendor's would be;
both hand events to a worker of their own through a bounded queue, so a slow
broker or receiver never slows the flow."""

from __future__ import annotations

from detectflow.publish.signing import sign, verify

__all__ = ["sign", "verify"]
