"""The suite judges adapters: a good FunctionAdapter passes, each broken one fails its rule."""

from __future__ import annotations

import pytest

from detectflow.testing import AdapterConformance, ConformanceTarget
from tests.testing import doubles

pytest_plugins = ["pytester"]

# No `-p detectflow.testing`: the kit is a pytest11 plugin. The others only cost time here.
SUB_SESSION = ("-p", "no:hypothesispytest", "-p", "no:cacheprovider")

ALL_TESTS = {name for name in vars(AdapterConformance) if name.startswith("test_")}
BATCH_TESTS = {name for name in ALL_TESTS if "batch" in name}

# Which tests each broken target must fail; every other test must pass.
EXPECTED_FAILURES = {
    "runtime_error_for_503": {"test_transient_fault_is_transient"},
    "refusal_as_transient": {"test_permanent_fault_is_permanent"},
    "ignores_timeout": {"test_timeout_is_honoured"},
    "cross_talk": {"test_concurrent_calls_get_own_answers"},
    "pixels_as_fractions": {"test_valid_answers_normalize"},
    "bad_confidence": {"test_valid_answers_normalize"},
    # `async with` closes the adapter once, the kit closes it again afterwards
    "close_once": {"test_aclose_is_idempotent", "test_async_context_manager"},
    "raising_health": {"test_health_not_ok_when_unreachable"},
    "one_answer_for_all": {"test_concurrent_calls_get_own_answers"},
    "no_provider_type": {"test_declares_provider_type"},
    # single calls are batches of one, so only the checks that mix frames see it
    "batch_reversed": {
        "test_concurrent_calls_get_own_answers",
        "test_batch_mixing_cameras_answers_own_frames",
        "test_batch_partial_failure_fails_alone",
        "test_detect_batch_answers_in_order",
    },
    "batch_fails_whole": {"test_batch_partial_failure_fails_alone"},
    "batch_drops_failed_frame": {"test_batch_partial_failure_fails_alone"},
    "batch_never_groups": {"test_batch_mixing_cameras_answers_own_frames"},
}

FAILURE_TEXT = {
    "runtime_error_for_503": "expected TransientProviderError, got builtins.RuntimeError: HTTP 503",
    "refusal_as_transient": "expected PermanentProviderError, got *Transient*: HTTP 400",
    "ignores_timeout": "detect was still waiting after * s with timeout_seconds=0.5*",
    "cross_talk": "*frame * got the answer of frame * (cross-talk)*",
    "pixels_as_fractions": "*lies far outside the * frame; are units/box_format declared right?",
    "bad_confidence": "*answer does not normalize: confidence must be within [[]0, 1]*",
    "close_once": "*second aclose() raised builtins.RuntimeError: already closed*",
    "raising_health": "*health() raised *TransientProviderError: refused*",
    "one_answer_for_all": "*gave one answer for all 100 frames*cross-talk*looks right, so a "
    "constant answer proves nothing and fails*",
    "no_provider_type": "*provider_type must be a non-empty str*",
    "batch_reversed": "*frame 0 got the answer of frame 7 (cross-talk), at position 0*",
    "batch_fails_whole": "*detect_batch on a batch of 8 frames whose frame 3 is the target's "
    "failing_frame raised *PermanentProviderError: cannot decode*",
    "batch_drops_failed_frame": "*returned 7 results for 8 frames; it must return one per frame*",
    "batch_never_groups": "*were never grouped (detect_batch got batches of [[]1])*",
}


@pytest.fixture
def detectflow_target() -> ConformanceTarget:
    return doubles.good_target()


class TestFunctionAdapterConformance(AdapterConformance):
    """A FunctionAdapter that keeps the contract passes the whole suite in our own session."""


class TestBatchAdapterConformance(AdapterConformance):
    """A batching adapter that keeps the contract passes the batch checks too."""

    @pytest.fixture
    def detectflow_target(self) -> ConformanceTarget:
        return doubles.good_batch_target()


def test_every_broken_target_names_its_failures() -> None:
    assert set(EXPECTED_FAILURES) == set(doubles.BROKEN) == set(FAILURE_TEXT)
    assert all(names <= ALL_TESTS for names in EXPECTED_FAILURES.values())


def _module_for(target: str) -> str:
    return (
        "import pytest\n"
        "from tests.testing import doubles\n\n"
        "@pytest.fixture\n"
        "def detectflow_target():\n"
        f"    return doubles.BROKEN[{target!r}]()\n"
    )


@pytest.mark.parametrize("target", sorted(doubles.BROKEN))
def test_broken_adapter_fails_its_rule(pytester: pytest.Pytester, target: str) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_vendor=_module_for(target))
    result = pytester.runpytest_inprocess(*SUB_SESSION, "-rf")
    outcomes = result.parseoutcomes()
    failed = {
        line.split("::")[-1].split(" ")[0] for line in result.outlines if line.startswith("FAILED ")
    }
    assert failed == EXPECTED_FAILURES[target], result.stdout.str()
    # the batch checks skip themselves for adapters that do not batch
    skipped = set() if target.startswith("batch_") else BATCH_TESTS
    assert outcomes.get("skipped", 0) == len(skipped)
    assert outcomes.get("passed", 0) == len(ALL_TESTS) - len(failed) - len(skipped)
    assert "errors" not in outcomes
    result.stdout.fnmatch_lines([f"*{FAILURE_TEXT[target]}*"])


def test_a_failure_is_printed_once_without_a_chained_traceback(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_vendor=_module_for("one_answer_for_all"))
    node = "test_vendor.py::AdapterConformance::test_concurrent_calls_get_own_answers"
    # -rN: no short summary, whose line repeats the message in full under CI=true
    # (pytest truncates it to the terminal's width only outside CI)
    result = pytester.runpytest_inprocess(*SUB_SESSION, "-rN", node)
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert output.count("gave one answer for all 100 frames") == 1, output
    assert "During handling of the above exception" not in output
