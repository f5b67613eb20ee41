"""Where the real services live and whether they answer.

``scripts/test`` starts any service that is down before pytest runs; these
checks decide, per service, whether its tests run or are skipped. Under
``CI=true`` a missing service fails the run instead of skipping it.
"""

from __future__ import annotations

import os
import socket
from functools import cache

POSTGRES_HOST = os.environ.get("DETECTFLOW_TEST_PG_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("DETECTFLOW_TEST_PG_PORT", "5432"))
POSTGRES_USER = os.environ.get("DETECTFLOW_TEST_PG_USER", "postgres")
POSTGRES_ADMIN_DB = os.environ.get("DETECTFLOW_TEST_PG_DB", "test")
REDIS_URL = os.environ.get("DETECTFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MQTT_HOST = os.environ.get("DETECTFLOW_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("DETECTFLOW_TEST_MQTT_PORT", "1883"))

SERVICES = {
    "postgres": (POSTGRES_HOST, POSTGRES_PORT),
    "redis": ("127.0.0.1", 6379),
    "mqtt": (MQTT_HOST, MQTT_PORT),
}


@cache
def available(service: str) -> bool:
    host, port = SERVICES[service]
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def postgres_url(database: str) -> str:
    return f"postgresql+psycopg://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"
