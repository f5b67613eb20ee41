"""detectflow.testing exports exactly its public API and chains its pytest plugin."""

from __future__ import annotations

import detectflow.testing


def test_package_exports_its_public_api() -> None:
    assert set(detectflow.testing.__all__) == {
        "FIXTURE_NAME",
        "AdapterConformance",
        "AdapterFactory",
        "BackgroundLoop",
        "CheckSkipped",
        "ConformanceFailure",
        "ConformanceTarget",
        "FrameFactory",
        "HttpFaultServer",
        "conformance_frame",
        "undecodable_frame",
    }
    assert all(hasattr(detectflow.testing, name) for name in detectflow.testing.__all__)


def test_enabling_the_package_enables_the_plugin_module() -> None:
    assert detectflow.testing.pytest_plugins == ["detectflow.testing.plugin"]
    assert detectflow.testing.FIXTURE_NAME == "detectflow_target"


def test_the_kit_opts_out_of_assertion_rewriting() -> None:
    from detectflow.testing import plugin

    assert "PYTEST_DONT_REWRITE" in (detectflow.testing.__doc__ or "")
    assert "PYTEST_DONT_REWRITE" in (plugin.__doc__ or "")
