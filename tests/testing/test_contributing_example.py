"""CONTRIBUTING.md's plugin example is a real plugin that passes the conformance kit.

The code blocks are taken from the file itself, so the example cannot drift
from what the kit accepts: each block that starts with a ``# path`` comment
is written at that path in a fresh directory (a pip-less plugin package on
``sys.path`` plus its test module), the plugin is registered the way its
``pyproject.toml`` block's entry point names it, and the kit runs on it in a
sub-session exactly as a vendor would run it.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from detectflow.cli import cli
from detectflow.core.plugins import get_registry
from detectflow.core.settings import Settings
from detectflow.testing import AdapterConformance

pytest_plugins = ["pytester"]

CONTRIBUTING = Path(__file__).resolve().parents[2] / "CONTRIBUTING.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PATH_HEADER = re.compile(r"#\s*([\w/]+\.(?:py|toml))\n")
SUITE = {name for name in vars(AdapterConformance) if name.startswith("test_")}
NETWORK_CHECKS = {
    "test_transient_fault_is_transient",
    "test_permanent_fault_is_permanent",
    "test_malformed_answer_is_permanent",
    "test_unreachable_is_transient",
    "test_health_not_ok_when_unreachable",
}
BATCH_CHECKS = {name for name in SUITE if "batch" in name}


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(CONTRIBUTING.read_text()) if lang == language]


def files() -> dict[str, str]:
    """The blocks that name their file in a first-line comment, by that path."""
    found = {}
    for language in ("python", "toml"):
        for code in blocks(language):
            header = PATH_HEADER.match(code)
            if header:
                found[header.group(1)] = code
    return found


@pytest.fixture
def plugin_dir(pytester: pytest.Pytester) -> Path:
    """The example written out as a pip-less package, importable, and registered."""
    example = files()
    for path, code in example.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    pytester.syspathinsert()
    entry_points = tomllib.loads(example["pyproject.toml"])["project"]["entry-points"]
    ((name, module_name),) = entry_points["detectflow"].items()
    (pytester.path / module_name.split(".")[0] / "__init__.py").touch()
    registry = get_registry(Settings.from_env({"DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD": "1"}))
    assert registry.register(importlib.import_module(module_name), name, "acme-detect", "0.1")
    return pytester.path


def test_the_example_has_a_plugin_its_entry_point_and_a_conformance_module() -> None:
    assert set(files()) == {"pyproject.toml", "acme_detect/plugin.py", "tests/test_conformance.py"}


def test_every_python_block_compiles() -> None:
    for code in blocks("python"):
        compile(code, "CONTRIBUTING.md", "exec")


def test_the_example_plugin_passes_the_kit(plugin_dir: Path, pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess(
        "-p", "no:hypothesispytest", "-p", "no:cacheprovider", "-rs", "-v"
    )
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "errors" not in outcomes, result.stdout.str()
    passed = {line.split("::")[-1].split(" ")[0] for line in result.outlines if " PASSED" in line}
    # the in-process example has no network faults, gives no slow factory, does not batch
    assert passed == SUITE - NETWORK_CHECKS - BATCH_CHECKS - {"test_timeout_is_honoured"}
    assert outcomes["skipped"] == len(NETWORK_CHECKS) + len(BATCH_CHECKS) + 1
    output = result.stdout.str()
    assert "AcmeAdapter runs in-process (in_process = True)" in output
    for situation in ("transient_fault", "permanent_fault", "malformed_answer", "unreachable"):
        assert f"the {situation!r} fault cannot happen" in output
    assert "the conformance target gives no 'slow' factory" in output
    assert "AcmeAdapter does not declare batch support" in output


def test_the_example_type_is_added_without_a_url(
    plugin_dir: Path, tmp_path: Path, secret_key: str
) -> None:
    """`detectflow provider add --type acme --activate`, as CONTRIBUTING says."""
    env = {
        "DETECTFLOW_DATA_DIR": str(tmp_path),
        "DETECTFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'detectflow.db'}",
        "DETECTFLOW_SECRET_KEY": secret_key,
        "DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    result = CliRunner().invoke(cli, ["provider", "add", "--type", "acme", "--activate"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("added provider ") and "(acme) [active]" in result.output
