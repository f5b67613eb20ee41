"""probe_provider: a real round trip of the probe image, recorded on the config."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from detectflow.adapters.probe import AdapterOpener, build_adapter, probe_provider
from detectflow.core.adapter import FunctionAdapter, ProviderAdapter, probe_frame
from detectflow.core.errors import PermanentProviderError
from detectflow.core.models import Frame, ProbeResult, ProviderConfig, RawDetection, TestStatus
from detectflow.core.plugins import get_registry
from detectflow.core.settings import Settings
from detectflow.simulator import Simulator
from detectflow.store import Database
from tests.databases import migrated_database

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def database(sqlite_url: str, secret_key: str) -> Iterator[Database]:
    with migrated_database(sqlite_url, secret_key) as db:
        yield db


@pytest.fixture
def opener() -> AdapterOpener:
    return build_adapter(get_registry(Settings(disable_plugin_autoload=True)))


def http_config(url: str, **fields: Any) -> ProviderConfig:
    base: dict[str, Any] = {"id": "p1", "provider_name": "sim", "provider_type": "http_api"}
    return ProviderConfig(endpoint_url=url, **{**base, **fields})


def lending(adapter: ProviderAdapter) -> tuple[AdapterOpener, list[ProviderConfig]]:
    """An opener lending one adapter, and the configs it was asked for."""
    asked: list[ProviderConfig] = []

    @asynccontextmanager
    async def open_adapter(config: ProviderConfig) -> AsyncIterator[ProviderAdapter]:
        asked.append(config)
        yield adapter

    return open_adapter, asked


async def test_a_working_provider_passes_and_success_is_recorded(
    database: Database, opener: AdapterOpener
) -> None:
    async with Simulator() as sim:
        config = database.create_provider(http_config(sim.detect_url("detectflow")))
        result = await probe_provider(config, open_adapter=opener, recorder=database)
        assert sim.stats.answered == 1, "the probe image went through /detect"
    assert result.ok and result.error is None
    assert result.message.startswith("Connection successful (")
    assert "on the probe image" in result.message
    assert result.response_time_ms > 0
    stored = database.get_provider(config.id)
    assert stored is not None
    assert stored.test_status == TestStatus.SUCCESS
    assert stored.last_tested is not None and stored.last_error is None


async def test_deepstack_is_tested_by_detecting_not_by_its_ping(opener: AdapterOpener) -> None:
    """The ping needs no key; detection does, so only a round trip catches a wrong key."""
    async with Simulator(api_key="right") as sim:
        config = http_config(
            sim.detect_url("deepstack"), api_key="wrong", options={"dialect": "deepstack"}
        )
        result = await probe_provider(config, open_adapter=opener)
    assert not result.ok
    assert result.message == "Connection failed"
    assert result.error is not None and "HTTP 401" in result.error


async def test_an_unreachable_provider_fails_and_the_failure_is_recorded(
    database: Database, opener: AdapterOpener, free_port: int
) -> None:
    config = database.create_provider(http_config(f"http://127.0.0.1:{free_port}/detect"))
    result = await probe_provider(config, open_adapter=opener, recorder=database)
    assert not result.ok
    assert result.error is not None and "could not reach provider" in result.error
    stored = database.get_provider(config.id)
    assert stored is not None
    assert stored.test_status == TestStatus.FAILED
    assert stored.last_error == result.error


async def test_the_timeout_bounds_the_whole_test(opener: AdapterOpener) -> None:
    async with Simulator(timeout_rate=1.0, hang_seconds=30) as sim:
        config = http_config(sim.detect_url("detectflow"), timeout_seconds=30)
        result = await probe_provider(config, open_adapter=opener, timeout=0.2)
    assert not result.ok
    assert result.error == "no answer within 0.2 s"
    assert 150 < result.response_time_ms < 5000


async def test_a_link_local_url_is_refused_before_any_connection() -> None:
    adapter = FunctionAdapter(lambda frame: [])
    open_adapter, asked = lending(adapter)
    config = http_config("http://169.254.169.254/latest/meta-data/")
    result = await probe_provider(config, open_adapter=open_adapter)
    assert not result.ok
    assert result.message == "Provider URL refused"
    assert result.error is not None and "169.254.169.254" in result.error
    assert asked == []
    allowed = await probe_provider(config, open_adapter=open_adapter, allow_link_local=True)
    assert allowed.ok and asked == [config]


async def test_an_unknown_provider_type_is_a_failed_test(opener: AdapterOpener) -> None:
    config = ProviderConfig(
        id="p", provider_name="x", provider_type="no-such-type", endpoint_url="x://y"
    )
    result = await probe_provider(config, open_adapter=opener)
    assert not result.ok
    assert result.message == "Provider not usable"
    assert result.error is not None and "no-such-type" in result.error


async def test_a_config_the_adapter_refuses_is_a_failed_test(opener: AdapterOpener) -> None:
    config = http_config("http://127.0.0.1/detect", options={"dialect": "klingon"})
    result = await probe_provider(config, open_adapter=opener)
    assert not result.ok
    assert result.error is not None and "unknown http dialect 'klingon'" in result.error


async def test_an_answer_that_cannot_be_normalized_fails_the_test() -> None:
    adapter = FunctionAdapter(lambda frame: [RawDetection("person", 1.7, (0.1, 0.1, 0.5, 0.5))])
    open_adapter, _ = lending(adapter)
    result = await probe_provider(http_config("scripted://x"), open_adapter=open_adapter)
    assert not result.ok
    assert result.message == "Provider answered nonsense"
    assert result.error is not None and "1.7" in result.error


async def test_the_probe_sends_the_built_in_probe_image() -> None:
    seen: list[Frame] = []

    def detect(frame: Frame) -> list[RawDetection]:
        seen.append(frame)
        return [RawDetection("person", 0.9, (0.1, 0.1, 0.5, 0.5))]

    open_adapter, _ = lending(FunctionAdapter(detect))
    result = await probe_provider(http_config("scripted://x"), open_adapter=open_adapter)
    assert result.ok
    assert result.message == "Connection successful (1 detection on the probe image)"
    assert [(f.camera_id, f.frame_id, f.width, f.height) for f in seen] == [
        ("detectflow-probe", "probe", 64, 48)
    ]


async def test_provider_errors_and_broken_adapters_are_failed_tests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(frame: Frame) -> list[RawDetection]:
        raise PermanentProviderError("frame refused: too small")

    def crash(frame: Frame) -> list[RawDetection]:
        raise RuntimeError("bug in vendor code")

    refused, _ = lending(FunctionAdapter(refuse))
    result = await probe_provider(http_config("scripted://x"), open_adapter=refused)
    assert (result.ok, result.error) == (False, "frame refused: too small")
    crashed, _ = lending(FunctionAdapter(crash))
    with caplog.at_level(logging.ERROR):
        result = await probe_provider(http_config("scripted://x"), open_adapter=crashed)
    assert not result.ok
    assert result.error == "adapter error: RuntimeError('bug in vendor code')"
    assert "failed its provider test" in caplog.text


async def test_a_provider_deleted_meanwhile_still_gets_its_result(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    open_adapter, _ = lending(FunctionAdapter(lambda frame: []))
    config = http_config("scripted://x", id="gone")
    with caplog.at_level(logging.WARNING):
        result = await probe_provider(config, open_adapter=open_adapter, recorder=database)
    assert isinstance(result, ProbeResult) and result.ok
    assert "provider gone was deleted" in caplog.text


async def test_build_adapter_closes_what_it_built(opener: AdapterOpener) -> None:
    config = http_config("http://127.0.0.1:1/detect")
    async with opener(config) as adapter:
        assert adapter.provider_type == "http_api"
    with pytest.raises(PermanentProviderError, match="closed"):
        await adapter.detect(probe_frame())
