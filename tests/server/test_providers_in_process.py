"""POST /providers takes no endpoint_url for a type that runs in-process, and only for one."""

from __future__ import annotations

from detectflow.core.plugins import PluginRegistry
from tests.server.support import API, TestClient, assert_error, sqlite_only
from tests.testing import doubles


def _register(registry: PluginRegistry) -> None:
    assert registry.register(doubles.LocalPlugin(), "tests-local", "tests", "0")


@sqlite_only
def test_an_in_process_type_is_created_without_an_endpoint_url(
    client: TestClient, registry: PluginRegistry
) -> None:
    _register(registry)
    body = {"provider_name": "local", "provider_type": "local-test"}
    response = client.post(f"{API}/providers", json=body)
    assert response.status_code == 201, response.text
    created = response.json()["data"]
    assert created["endpoint_url"] == ""
    assert client.get(f"{API}/providers/{created['id']}").json()["data"] == created


@sqlite_only
def test_a_network_type_without_an_endpoint_url_is_refused_and_says_why(
    client: TestClient, registry: PluginRegistry
) -> None:
    _register(registry)
    body = {"provider_name": "remote", "provider_type": "scripted"}
    error = assert_error(client.post(f"{API}/providers", json=body), 422, "validation_error")
    assert error["details"] == [{"field": "body.endpoint_url", "message": "is required"}]
    assert "provider_type 'scripted' does not run in-process" in error["message"]
    assert client.get(f"{API}/providers").json()["data"] == []


@sqlite_only
def test_an_in_process_config_moved_to_a_network_type_needs_a_url(
    client: TestClient, registry: PluginRegistry
) -> None:
    _register(registry)
    body = {"provider_name": "local", "provider_type": "local-test"}
    provider_id = client.post(f"{API}/providers", json=body).json()["data"]["id"]
    url = f"{API}/providers/{provider_id}"
    assert_error(client.put(url, json={"provider_type": "scripted"}), 422, "validation_error")
    moved = client.put(url, json={"provider_type": "scripted", "endpoint_url": "scripted://x"})
    assert moved.status_code == 200, moved.text
