"""Several providers through the server: inline send-frame fails over, the summary
shows every provider's circuit breaker, and the routing options are validated."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from detectflow.core.breaker import CIRCUIT_CLOSED, CIRCUIT_OPENED
from detectflow.simulator import Simulator, SimulatorThread, run_in_thread
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache
from tests.server.support import API, TestClient, add_provider, assert_error, frame_body


@pytest.fixture
def two_simulators() -> Iterator[list[SimulatorThread]]:
    handles = [run_in_thread(Simulator()), run_in_thread(Simulator())]
    try:
        yield handles
    finally:
        for handle in handles:
            handle.stop()


def providers_of(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get(f"{API}/summary")
    assert response.status_code == 200, response.text
    return {p["name"]: p for p in response.json()["data"]["providers"]}


def events_total(client: TestClient, event_type: str) -> int:
    response = client.get(f"{API}/events", params={"event_type": event_type})
    assert response.status_code == 200, response.text
    total: int = response.json()["meta"]["total"]
    return total


def test_summary_lists_every_provider_with_its_routing_and_a_closed_breaker(
    client: TestClient,
) -> None:
    add_provider(client, provider_name="main")
    add_provider(
        client,
        provider_name="lobby",
        is_active=False,
        options={"cameras": ["lobby"], "priority": 3},
    )
    providers = providers_of(client)
    assert providers["main"] == {
        "id": providers["main"]["id"],
        "name": "main",
        "provider_type": "scripted",
        "is_active": True,
        "cameras": None,
        "priority": 100,
        "breaker": "closed",
        "failures": 0,
        "opened_at": None,
    }
    assert providers["lobby"]["cameras"] == ["lobby"]
    assert providers["lobby"]["priority"] == 3


def test_send_frame_fails_over_and_the_breaker_opens_then_closes(
    client: TestClient, two_simulators: list[SimulatorThread]
) -> None:
    first, second = two_simulators
    port = first.simulator.port
    routing = {"cameras": ["cam-1"], "breaker_failures": 2, "breaker_cooldown_seconds": 1.5}
    add_provider(
        client,
        provider_name="first",
        provider_type="http_api",
        endpoint_url=first.detect_url(),
        options={**routing, "priority": 1},
    )
    add_provider(
        client,
        provider_name="second",
        provider_type="http_api",
        endpoint_url=second.detect_url(),
        is_active=False,
        options={**routing, "priority": 2},
    )
    ok = client.post(f"{API}/send-frame", json=frame_body("cam-1", 0))
    assert ok.json()["data"]["success"] is True
    assert first.simulator.stats.answered == 1

    first.stop()  # connections to it are now refused
    for number in (1, 2, 3):
        response = client.post(f"{API}/send-frame", json=frame_body("cam-1", number))
        assert response.json()["data"]["success"] is True, response.text
    assert second.simulator.stats.answered == 3
    opened = providers_of(client)["first"]
    assert opened["breaker"] == "open"
    assert opened["failures"] == 2
    assert opened["opened_at"] is not None
    assert providers_of(client)["second"]["breaker"] == "closed"
    assert events_total(client, CIRCUIT_OPENED) == 1

    restarted = run_in_thread(Simulator(port=port))
    try:
        time.sleep(1.6)  # the cool-down (long enough that a loaded machine stays inside it above)
        response = client.post(f"{API}/send-frame", json=frame_body("cam-1", 4))
        assert response.json()["data"]["success"] is True
        assert restarted.simulator.stats.answered == 1  # the probe went to the first
        closed = providers_of(client)["first"]
        assert (closed["breaker"], closed["failures"], closed["opened_at"]) == ("closed", 0, None)
        assert events_total(client, CIRCUIT_CLOSED) == 1
        client.post(f"{API}/send-frame", json=frame_body("cam-1", 5))
        assert restarted.simulator.stats.answered == 2
        assert second.simulator.stats.answered == 3
    finally:
        restarted.stop()


def test_summary_shows_breaker_states_published_by_another_process(
    client: TestClient, cache: MemoryCache, bus: MemoryBus
) -> None:
    provider = add_provider(client, provider_name="main")
    state = {
        "id": provider["id"],
        "name": "main",
        "breaker": "half_open",
        "failures": 5,
        "opened_at": "2025-11-05T12:34:56Z",
    }
    LiveView(cache, bus).publish_breakers([state])
    shown = providers_of(client)["main"]
    assert (shown["breaker"], shown["failures"], shown["opened_at"]) == (
        "half_open",
        5,
        "2025-11-05T12:34:56Z",
    )


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"cameras": "cam-1"}, "options.cameras must be a list"),
        ({"cameras": ["no spaces"]}, "options.cameras entries must be camera ids"),
        ({"priority": 1.5}, "options.priority"),
        ({"breaker_failures": 0}, "options.breaker_failures"),
        ({"breaker_cooldown_seconds": -1}, "options.breaker_cooldown_seconds"),
    ],
)
def test_routing_options_are_validated_on_create_and_update(
    client: TestClient, options: dict[str, Any], fragment: str
) -> None:
    body = {
        "provider_name": "p",
        "provider_type": "scripted",
        "endpoint_url": "scripted://local",
        "options": options,
    }
    created = client.post(f"{API}/providers", json=body)
    assert fragment in assert_error(created, 422, "validation_error")["message"]
    provider = add_provider(client)
    updated = client.put(f"{API}/providers/{provider['id']}", json={"options": options})
    assert fragment in assert_error(updated, 422, "validation_error")["message"]
