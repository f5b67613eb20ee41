"""The pytest side of the kit: collect the suite, serve faults, warn when it is missing.

A test module that defines a fixture named ``detectflow_target`` gets the
:class:`~detectflow.testing.suite.AdapterConformance` tests collected into it,
as ``test_x.py::AdapterConformance::test_...``, unless it already subclasses
that class itself. Defining the fixture in a ``conftest.py`` instead collects
nothing by itself (the suite would otherwise run once per module below it),
so the terminal summary says so when no conformance test was collected.

Loaded in every pytest run of an environment with detectflow (entry point
``pytest11``), it stays inactive until used: it imports the suite only on
meeting the fixture and the fault server only when a test asks for it, and
adds nothing to a run that does neither. (PYTEST_DONT_REWRITE: see the
package docstring.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from detectflow.testing.faults import HttpFaultServer
    from detectflow.testing.suite import AdapterConformance

__all__ = [
    "FIXTURE_NAME",
    "detectflow_http_faults",
    "pytest_collection_modifyitems",
    "pytest_pycollect_makeitem",
    "pytest_terminal_summary",
]

FIXTURE_NAME = "detectflow_target"
"""The fixture a vendor defines to ask for the suite."""

_SUITE = ("detectflow.testing.suite", "AdapterConformance")

_conftests_with_target = pytest.StashKey[list[str]]()
_suite_collected = pytest.StashKey[bool]()


class _CollectedSuite(pytest.Class):
    """The suite class, collected into a module that never imported it."""

    def _getobj(self) -> type[AdapterConformance]:
        from detectflow.testing.suite import AdapterConformance

        return AdapterConformance


def _is_target_fixture(obj: object) -> bool:
    # pytest >= 8.4 wraps fixtures in FixtureFunctionDefinition (name in __name__);
    # older pytest marks the function itself with _pytestfixturefunction.
    is_fixture = hasattr(obj, "_fixture_function_marker") or hasattr(obj, "_pytestfixturefunction")
    return is_fixture and getattr(obj, "__name__", None) == FIXTURE_NAME


def _is_suite(cls: object) -> bool:
    """The suite class or a subclass, known by name: the suite module is imported only
    once a module uses it (and pytester's sub-sessions may import it afresh)."""
    return isinstance(cls, type) and any(
        (base.__module__, base.__qualname__) == _SUITE for base in cls.__mro__
    )


def _subclasses_suite(module: ModuleType) -> bool:
    return any(
        _is_suite(value) and (value.__module__, value.__qualname__) != _SUITE
        for value in vars(module).values()
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> pytest.Class | None:
    """Collect the suite where a module defines the target fixture (once per module)."""
    if not isinstance(collector, pytest.Module) or not _is_target_fixture(obj):
        return None
    if _subclasses_suite(collector.obj):
        return None
    return _CollectedSuite.from_parent(collector, name="AdapterConformance")


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Note conftest modules that define the fixture, to explain a missing suite later."""
    config.stash[_conftests_with_target] = [
        str(plugin.__file__)
        for plugin in config.pluginmanager.get_plugins()
        if isinstance(plugin, ModuleType)
        and Path(str(plugin.__file__)).name == "conftest.py"
        and any(_is_target_fixture(value) for value in vars(plugin).values())
    ]
    config.stash[_suite_collected] = any(
        isinstance(item, pytest.Function) and _is_suite(item.cls) for item in items
    )


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    conftests = config.stash.get(_conftests_with_target, [])
    if conftests and not config.stash.get(_suite_collected, True):
        terminalreporter.write_line(
            f"detectflow.testing: {FIXTURE_NAME} is defined in {', '.join(conftests)} but no "
            "conformance test was collected; define the fixture in a test module, or add "
            "`class TestMyAdapter(AdapterConformance): pass` to one",
            yellow=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def detectflow_http_faults() -> Iterator[HttpFaultServer]:
    """A session-wide :class:`HttpFaultServer` on loopback for HTTP adapters' fault factories."""
    from detectflow.testing.faults import HttpFaultServer

    with HttpFaultServer() as server:
        yield server
