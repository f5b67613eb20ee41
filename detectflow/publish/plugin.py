"""The built-in publishing plugin: the MQTT and webhook sinks, through the sinks hook.

Registered like a vendor's plugin (:data:`detectflow.core.plugins.DEFAULT_PLUGINS`).
Each factory returns None when its publisher is not configured
(``DETECTFLOW_PUBLISH_MQTT_URL`` unset; ``DETECTFLOW_WEBHOOKS=false``), and
imports the dataflow engine only when called, from a running flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from detectflow.core.hookspecs import hookimpl
from detectflow.core.settings import Settings

if TYPE_CHECKING:
    from detectflow.core.hookspecs import ResultSinkFactory
    from detectflow.publish.sinks import PublisherSink
    from detectflow.publish.webhooks import WebhookStore

__all__ = ["detectflow_sinks", "mqtt_sink", "webhook_sink"]


def mqtt_sink(settings: Settings) -> PublisherSink | None:
    """Object events and counts to ``settings.publish_mqtt_url`` (docs/mqtt.md)."""
    from detectflow.publish.mqtt import MqttPublisher
    from detectflow.publish.sinks import PublisherSink

    publisher = MqttPublisher.from_settings(settings)
    if publisher is None:
        return None
    publisher.start()
    return PublisherSink(publisher)


def webhook_sink(settings: Settings, database: WebhookStore | None = None) -> PublisherSink | None:
    """Signed deliveries to the subscriptions of ``/api/v1/webhooks`` (docs/webhooks.md)."""
    from detectflow.publish.sinks import PublisherSink
    from detectflow.publish.webhooks import WebhookPublisher

    if database is None or not hasattr(database, "list_webhooks"):
        return None  # a flow over a store without subscriptions
    publisher = WebhookPublisher.from_settings(settings, database)
    if publisher is None:
        return None
    publisher.start()
    return PublisherSink(publisher)


@hookimpl
def detectflow_sinks() -> Mapping[str, ResultSinkFactory]:
    return {"mqtt": mqtt_sink, "webhooks": webhook_sink}
