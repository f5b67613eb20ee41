"""The plugin collects the suite where the fixture is, once, and says when it cannot."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUB_SESSION = ("-p", "detectflow.testing", "-p", "no:hypothesispytest", "-p", "no:cacheprovider")
SUITE_SIZE = 12

GOOD_FIXTURE = """
import pytest
from tests.testing import doubles

@pytest.fixture
def detectflow_target():
    return doubles.good_target()
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
    result = sub.runpytest_inprocess("-p", "no:hypothesispytest", "-p", "no:cacheprovider")
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
    result.assert_outcomes(passed=SUITE_SIZE - 6, skipped=6)
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
    result.assert_outcomes(passed=SUITE_SIZE - 6, skipped=6)


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
