"""A provider plugin as a vendor would write it: one adapter, one label mapping."""

from detectflow import Frame, ProviderAdapter, RawDetection, hookimpl


class TinyAdapter(ProviderAdapter):
    provider_type = "tiny"

    async def detect(self, frame: Frame) -> list[RawDetection]:
        return [RawDetection("pickup", 0.9, (0.1, 0.1, 0.5, 0.5))]


@hookimpl
def detectflow_provider_types():
    return [TinyAdapter]


@hookimpl
def detectflow_label_map():
    return {"pickup": "vehicle"}
