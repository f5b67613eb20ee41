"""Adapters are reused across requests and replaced without breaking a frame in flight."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from detectflow.adapters.pool import AdapterPool
from detectflow.core.errors import PluginError
from detectflow.core.models import ProviderConfig
from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from tests.server.support import ScriptedAdapter, ScriptedPlugin


@pytest.fixture
def registry() -> PluginRegistry:
    ScriptedAdapter.instances.clear()
    registry = get_registry(Settings(disable_plugin_autoload=True))
    assert registry.register(ScriptedPlugin(), "tests-scripted", "tests", "0")
    return registry


CONFIG = ProviderConfig(id="p1", provider_name="p", provider_type="scripted", endpoint_url="x")


def test_one_adapter_serves_every_lease_of_an_unchanged_config(registry: PluginRegistry) -> None:
    async def main() -> None:
        pool = AdapterPool(registry)
        async with pool.lease(CONFIG) as first:
            pass
        tested = replace(CONFIG, test_status="success", last_error="x")
        async with pool.lease(tested) as second:
            assert second is first
        assert pool.open_count == 1
        await pool.aclose()
        assert isinstance(first, ScriptedAdapter) and first.closed

    anyio.run(main)


def test_a_changed_config_gets_a_new_adapter_and_the_old_closes_when_idle(
    registry: PluginRegistry,
) -> None:
    async def main() -> None:
        pool = AdapterPool(registry)
        async with pool.lease(CONFIG) as old:
            assert isinstance(old, ScriptedAdapter)
            async with pool.lease(replace(CONFIG, timeout_seconds=5)) as new:
                assert new is not old
                assert not old.closed  # still in use by the outer lease
            assert pool.open_count == 2
        assert old.closed
        assert pool.open_count == 1
        await pool.discard(CONFIG.id)
        assert isinstance(new, ScriptedAdapter) and new.closed
        assert pool.open_count == 0
        await pool.aclose()

    anyio.run(main)


def test_unknown_types_raise_plugin_error_and_a_closed_pool_refuses(
    registry: PluginRegistry,
) -> None:
    async def main() -> None:
        pool = AdapterPool(registry)
        with pytest.raises(PluginError):
            async with pool.lease(replace(CONFIG, provider_type="nope")):
                pass
        await pool.aclose()
        with pytest.raises(RuntimeError):
            async with pool.lease(CONFIG):
                pass

    anyio.run(main)
