"""The plugin loads without `-p`, stays inactive until used, collects the suite where the
fixture is, once, and says when it cannot."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUB_SESSION = ("-p", "no:hypothesispytest", "-p", "no:cacheprovider", "-p", "no:schemathesis")
SUITE_SIZE = 15
BATCH_CHECKS = 3  # skipped for an adapter that does not batch

GOOD_FIXTURE = """
import pytest
from tests.testing import doubles

@pytest.fixture
def detectflow_target():
    return doubles.good_batch_target()
"""


@pytest.fixture
def sub(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    return pytester


def test_fixture_in_a_module_collects_the_suite_there(sub: pytest.Pytester) -> None:
    sub.makepyfile(test_vendor=GOOD_FIXTURE)
    result = sub.runpytest_inprocess(*SUB_SESSION, "-v")
    result.assert_outcomes(passed=SUITE_SIZE)
    result.stdout.fnmatch_lines(
        ["test_vendor.py::AdapterConformance::test_valid_answers_* PASSED*"]
    )


def test_node_ids_of_the_collected_suite_can_be_selected(sub: pytest.Pytester) -> None:
    sub.makepyfile(test_vendor=GOOD_FIXTURE)
    node = "test_vendor.py::AdapterConformance::test_declares_provider_type"
    result = sub.runpytest_inprocess(*SUB_SESSION, node)
    result.assert_outcomes(passed=1)


def test_a_subclass_is_collected_once_not_twice(sub: pytest.Pytester) -> None:
    sub.makepyfile(
        test_vendor=GOOD_FIXTURE
        + "\nfrom detectflow.testing import AdapterConformance\n\n"
        + "class TestAcme(AdapterConformance):\n    pass\n"
    )
    result = sub.runpytest_inprocess(*SUB_SESSION, "-v")
    result.assert_outcomes(passed=SUITE_SIZE)
    result.stdout.fnmatch_lines(["test_vendor.py::TestAcme::test_declares_provider_type PASSED*"])


def test_a_subclass_needs_no_plugin(sub: pytest.Pytester) -> None:
    sub.makepyfile(
        test_vendor=GOOD_FIXTURE
        + "\nfrom detectflow.testing import AdapterConformance\n\n"
        + "class TestAcme(AdapterConformance):\n    pass\n"
    )
    result = sub.runpytest_inprocess(*SUB_SESSION, "-p", "no:detectflow.testing")
    result.assert_outcomes(passed=SUITE_SIZE)


def test_a_module_without_the_fixture_gets_no_suite(sub: pytest.Pytester) -> None:
    sub.makepyfile(test_other="def test_one():\n    pass\n")
    result = sub.runpytest_inprocess(*SUB_SESSION)
    result.assert_outcomes(passed=1)
    assert "detectflow.testing:" not in result.stdout.str()


def test_a_fixture_only_in_conftest_is_reported_not_ignored(sub: pytest.Pytester) -> None:
    sub.makeconftest(GOOD_FIXTURE)
    sub.makepyfile(test_other="def test_one():\n    pass\n")
    result = sub.runpytest_inprocess(*SUB_SESSION)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["detectflow.testing: detectflow_target is defined in *conftest.py but no conformance*"]
    )


def test_a_conftest_fixture_with_a_subclass_is_not_reported(sub: pytest.Pytester) -> None:
    sub.makeconftest(GOOD_FIXTURE)
    sub.makepyfile(
        test_vendor="from detectflow.testing import AdapterConformance\n\n"
        "class TestAcme(AdapterConformance):\n    pass\n"
    )
    result = sub.runpytest_inprocess(*SUB_SESSION)
    result.assert_outcomes(passed=SUITE_SIZE)
    assert "detectflow.testing:" not in result.stdout.str()


def test_missing_factories_skip_with_their_reason(sub: pytest.Pytester) -> None:
    sub.makepyfile(
        test_vendor="""
import pytest
from detectflow.testing import ConformanceTarget
from tests.testing import doubles

@pytest.fixture
def detectflow_target():
    return ConformanceTarget(healthy=doubles.factory(doubles.healthy), slow=lambda t: None)
"""
    )
    result = sub.runpytest_inprocess(*SUB_SESSION, "-rs")
    # timeout, transient, permanent, malformed, unreachable, health when unreachable
    result.assert_outcomes(passed=SUITE_SIZE - 6 - BATCH_CHECKS, skipped=6 + BATCH_CHECKS)
    result.stdout.fnmatch_lines(
        [
            "*the target's 'slow' factory returned None*",
            "*the conformance target gives no 'transient_fault' factory*",
        ]
    )


def test_async_factories_are_awaited(sub: pytest.Pytester) -> None:
    sub.makepyfile(
        test_vendor="""
import pytest
from detectflow.testing import ConformanceTarget
from tests.testing import doubles

async def healthy(timeout):
    return doubles.timed(doubles.healthy, timeout)

@pytest.fixture
def detectflow_target():
    return ConformanceTarget(healthy=healthy)
"""
    )
    result = sub.runpytest_inprocess(*SUB_SESSION)
    result.assert_outcomes(passed=SUITE_SIZE - 6 - BATCH_CHECKS, skipped=6 + BATCH_CHECKS)


def test_a_factory_returning_no_adapter_fails_clearly(sub: pytest.Pytester) -> None:
    sub.makepyfile(
        test_vendor="""
import pytest
from detectflow.testing import ConformanceTarget

@pytest.fixture
def detectflow_target():
    return ConformanceTarget(healthy=lambda timeout: "http://example.invalid")
"""
    )
    result = sub.runpytest_inprocess(*SUB_SESSION)
    result.assert_outcomes(failed=SUITE_SIZE - 6, skipped=6)
    result.stdout.fnmatch_lines(["*'healthy' factory returned str, not a *ProviderAdapter*"])


def test_the_plugin_serves_http_faults(sub: pytest.Pytester) -> None:
    sub.makepyfile(
        test_faults="""
import httpx

def test_faults(detectflow_http_faults):
    answer = httpx.post(detectflow_http_faults.status_url(503), content=b"x")
    assert answer.status_code == 503
"""
    )
    result = sub.runpytest_inprocess(*SUB_SESSION)
    result.assert_outcomes(passed=1)


# -- loading: an installed pytest11 plugin, inactive until used ---------------

REPO = Path(__file__).resolve().parents[2]


def test_the_distribution_declares_the_kit_under_pytest11() -> None:
    found = [
        (ep.value, ep.dist.name if ep.dist else None)
        for ep in metadata.entry_points(group="pytest11", name="detectflow.testing")
    ]
    assert found == [("detectflow.testing", "detectflow")]


@pytest.fixture
def fresh(sub: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """Sub-sessions in a new interpreter: nothing imported by this run can help them."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return sub


def test_a_new_process_collects_the_suite_without_dash_p(fresh: pytest.Pytester) -> None:
    fresh.makepyfile(test_vendor=GOOD_FIXTURE)
    result = fresh.runpytest_subprocess(*SUB_SESSION)
    result.assert_outcomes(passed=SUITE_SIZE)


def test_the_plugin_is_inactive_until_its_fixture_is_used(fresh: pytest.Pytester) -> None:
    fresh.makepyfile(
        test_other="""
import sys

def test_the_kit_is_loaded_but_nothing_of_it_ran():
    loaded = {name for name in sys.modules if name.startswith("detectflow.testing")}
    assert loaded == {"detectflow.testing", "detectflow.testing.plugin"}, loaded
    assert "aiohttp" not in sys.modules
"""
    )
    result = fresh.runpytest_subprocess(*SUB_SESSION)
    result.assert_outcomes(passed=1)
    assert "detectflow.testing:" not in result.stdout.str()  # no summary note either


@pytest.mark.parametrize(
    "enable",
    [
        pytest.param(("-p", "detectflow.testing"), id="dash-p-package"),
        pytest.param(("-p", "detectflow.testing.plugin"), id="dash-p-module"),
    ],
)
def test_enabling_the_kit_explicitly_as_before_still_works(
    sub: pytest.Pytester, enable: tuple[str, str]
) -> None:
    sub.makepyfile(test_vendor=GOOD_FIXTURE)
    result = sub.runpytest_inprocess(*SUB_SESSION, *enable)
    result.assert_outcomes(passed=SUITE_SIZE)


def test_a_conftest_naming_the_kit_still_works(sub: pytest.Pytester) -> None:
    sub.makeconftest('pytest_plugins = ["detectflow.testing"]\n')
    sub.makepyfile(test_vendor=GOOD_FIXTURE)
    result = sub.runpytest_inprocess(*SUB_SESSION)
    result.assert_outcomes(passed=SUITE_SIZE)


def test_with_autoload_disabled_dash_p_enables_it(
    sub: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    sub.makepyfile(test_vendor=GOOD_FIXTURE)
    assert sub.runpytest_inprocess(*SUB_SESSION).ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result = sub.runpytest_inprocess(*SUB_SESSION, "-p", "detectflow.testing")
    result.assert_outcomes(passed=SUITE_SIZE)


def test_dash_p_no_turns_the_kit_off(sub: pytest.Pytester) -> None:
    sub.makepyfile(test_vendor=GOOD_FIXTURE)
    result = sub.runpytest_inprocess(*SUB_SESSION, "-p", "no:detectflow.testing")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
