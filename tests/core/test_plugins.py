"""The plugin manager, with real packages installed by pip and found by entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from detectflow import Detection, Frame, ProviderAdapter, RawDetection, hookimpl
from detectflow.core.errors import PluginError
from detectflow.core.models import ProviderConfig
from detectflow.core.plugins import get_registry
from detectflow.core.settings import Settings

PKGS = Path(__file__).parent.parent / "plugin_pkgs"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the test plugin packages into a folder of their own."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PKGS / "tiny"),
            str(PKGS / "broken"),
        ],
        check=True,
    )
    return target


def run_cli(site: Path, *args: str, env: dict[str, str] | None = None) -> str:
    environ = {**os.environ, "PYTHONPATH": str(site), **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "detectflow.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_an_installed_plugin_is_found_by_entry_point_with_package_and_version(plugin_site):
    listing = json.loads(run_cli(plugin_site, "plugins", "--json"))
    by_name = {p["name"]: p for p in listing["plugins"]}
    assert by_name["tiny"]["package"] == "detectflow-tiny"
    assert by_name["tiny"]["version"] == "1.2.3"
    assert by_name["tiny"]["provider_types"] == ["tiny"]
    assert "detectflow_label_map" in by_name["tiny"]["hooks"]


def test_broken_plugins_are_named_and_the_rest_keep_working(plugin_site):
    listing = json.loads(run_cli(plugin_site, "plugins", "--json"))
    failures = {f["name"]: f["error"] for f in listing["failures"]}
    assert "this plugin fails on import" in failures["explodes"]
    assert "detectflow_no_such_hook" in failures["unknown_hook"]
    names = {p["name"] for p in listing["plugins"]}
    assert "tiny" in names and "explodes" not in names and "unknown_hook" not in names


def test_autoload_can_be_disabled_and_plugins_blocked(plugin_site):
    off = json.loads(
        run_cli(plugin_site, "plugins", "--json", env={"DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD": "1"})
    )
    assert "tiny" not in {p["name"] for p in off["plugins"]}
    assert off["failures"] == [] or all(
        f["name"].startswith("detectflow.") for f in off["failures"]
    )
    blocked = json.loads(
        run_cli(
            plugin_site,
            "plugins",
            "--json",
            env={"DETECTFLOW_BLOCKED_PLUGINS": "tiny,explodes,unknown_hook"},
        )
    )
    assert {p["name"] for p in blocked["plugins"]}.isdisjoint({"tiny", "explodes"})
    assert not any(f["name"] in {"explodes", "unknown_hook"} for f in blocked["failures"])


def test_the_plugins_table_names_package_and_version(plugin_site):
    out = run_cli(plugin_site, "plugins")
    assert "detectflow-tiny" in out and "1.2.3" in out and "explodes" in out


# -- hooks, registered temporarily as a plugin object --------------------


class EchoAdapter(ProviderAdapter):
    provider_type = "echo"

    async def detect(self, frame: Frame) -> list[RawDetection]:
        return [RawDetection("pickup", 0.7, (0.0, 0.0, 0.5, 0.5))]


class ExamplePlugin:
    def __init__(self) -> None:
        self.seen: list[object] = []

    @hookimpl
    def detectflow_provider_types(self) -> list[type[ProviderAdapter]]:
        return [EchoAdapter]

    @hookimpl
    def detectflow_label_map(self) -> dict[str, str]:
        return {"Pickup": "vehicle"}

    @hookimpl
    def detectflow_transform_detections(self, detections: list[Detection]) -> list[Detection]:
        return [d for d in detections if d.confidence > 0.5]

    @hookimpl
    def detectflow_on_detection(self, detection: Detection) -> None:
        self.seen.append(detection)

    @hookimpl
    def detectflow_on_event(self, event: object) -> None:
        self.seen.append(event)
        raise RuntimeError("a notifier that fails must not break the others")

    @hookimpl
    def detectflow_frame_sources(self) -> dict[str, object]:
        return {"echo": lambda url, settings: None}

    @hookimpl
    def detectflow_sinks(self) -> dict[str, object]:
        return {"echo": lambda settings: None}


@pytest.fixture
def example() -> Iterator[ExamplePlugin]:
    registry = get_registry(Settings.from_env({"DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD": "1"}))
    plugin = ExamplePlugin()
    assert registry.register(plugin, "example", "example-pkg", "0.1")
    yield plugin
    registry.pm.unregister(plugin)


def config(provider_type: str) -> ProviderConfig:
    return ProviderConfig(id="p", provider_name="p", provider_type=provider_type, endpoint_url="")


def test_provider_types_hook_makes_adapters(example):
    adapter = get_registry().create_adapter(config("echo"))
    assert isinstance(adapter, EchoAdapter)


def test_unknown_provider_type_names_the_known_ones(example):
    with pytest.raises(PluginError, match="echo"):
        get_registry().create_adapter(config("nope"))


def test_label_map_hook_extends_the_table(example):
    labels = get_registry().label_map()
    assert labels["pickup"] == "vehicle"
    assert labels["car"] == "vehicle"


def test_label_map_follows_plugins_registered_later() -> None:
    from detectflow.core.plugins import _new_registry

    registry = _new_registry(Settings(disable_plugin_autoload=True))
    assert registry.label_map().get("drone") is None

    class Drones:
        @hookimpl
        def detectflow_label_map(self) -> dict[str, str]:
            return {"Drone": "aircraft"}

    drones = Drones()
    assert registry.register(drones, "drones", "drones", "1")
    assert registry.label_map()["drone"] == "aircraft"
    registry.pm.unregister(drones)
    assert registry.label_map().get("drone") is None


def test_transform_hook_chain_and_notifications(example):
    import asyncio

    from detectflow.core.pipeline import run_frame

    registry = get_registry()
    frame = Frame("cam", b"", "f", timestamp=__import__("datetime").datetime.now())
    adapter = registry.create_adapter(config("echo"))
    result = asyncio.run(run_frame(frame, adapter, registry=registry))
    assert [d.detection_type for d in result.detections] == ["vehicle"]
    registry.notify_detection(result.detections[0])
    registry.notify_event(result.events[0])  # raises inside; logged, not propagated
    assert example.seen == [result.detections[0], result.events[0]]
    assert registry.has_notifiers()


def test_transform_hook_that_raises_fails_the_frame_with_the_plugin_name():
    import asyncio
    from datetime import datetime

    from detectflow.core.pipeline import run_frame

    class Bad:
        @hookimpl
        def detectflow_transform_detections(self, detections: list[Detection]) -> None:
            raise ValueError("boom")

    registry = get_registry(Settings.from_env({"DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD": "1"}))
    registry.register(Bad(), "bad-transform", "x", "1")
    frame = Frame("cam", b"", "f", timestamp=datetime.now())
    adapter = EchoAdapter(config("echo"))
    result = asyncio.run(run_frame(frame, adapter, registry=registry))
    assert not result.ok
    assert "bad-transform" in (result.error or "")


def test_source_and_sink_hooks_are_merged(example):
    registry = get_registry()
    assert "echo" in registry.frame_sources()
    assert "echo" in registry.sinks()


def test_every_hook_is_documented_and_versioned():
    from detectflow.core import hookspecs

    names = [n for n in dir(hookspecs) if n.startswith("detectflow_")]
    assert len(names) >= 7
    for name in names:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert len(doc) > 40, name
        assert ".. versionadded::" in doc, name


def test_every_hook_has_a_test():
    """Like datasette's test_plugin_hooks_have_tests: a hook nobody tests fails here."""
    from detectflow.core import hookspecs

    source = Path(__file__).read_text()
    for name in (n for n in dir(hookspecs) if n.startswith("detectflow_")):
        assert f"def {name}(" in source, f"{name} has no test plugin implementing it"
