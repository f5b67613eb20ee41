"""Conformance kit for provider adapters: prove a vendor's adapter keeps the contract.

Installing detectflow installs the pytest plugin (entry point ``pytest11``),
so there is nothing to enable: define one fixture in a test module::

    # tests/test_conformance.py
    import pytest
    from detectflow import ProviderConfig
    from detectflow.testing import ConformanceTarget, HttpFaultServer
    from acme_detect import AcmeAdapter

    def acme(url):
        return lambda timeout: AcmeAdapter(ProviderConfig(
            id="acme", provider_name="acme", provider_type="acme",
            endpoint_url=url, timeout_seconds=timeout))

    @pytest.fixture
    def detectflow_target(acme_server, detectflow_http_faults: HttpFaultServer):
        return ConformanceTarget(
            healthy=acme(acme_server.url),                        # deterministic per frame
            slow=acme(detectflow_http_faults.slow_url),           # never answers in time
            transient_fault=acme(detectflow_http_faults.status_url(503)),
            permanent_fault=acme(detectflow_http_faults.status_url(400)),
            malformed_answer=acme(detectflow_http_faults.garbage_url),
            unreachable=acme(detectflow_http_faults.refused_url),
        )

That module then holds ``AdapterConformance::test_*``: valid answers that
normalize, timeouts honoured within a grace, errors classified transient or
permanent, 100 concurrent calls without cross-talk, ``aclose`` idempotent and
``async with`` support, ``health()`` ok / not ok. A factory left ``None`` (or
returning None) skips its checks with that reason. An adapter whose class
declares ``in_process = True`` (a model inside detectflow's process) skips
the network fault checks by itself: ``ConformanceTarget(healthy=...)`` is a
whole target for it.

An adapter that subclasses :class:`~detectflow.adapters.batching.BatchingAdapter`
also gets ``test_batch_*``/``test_detect_batch_*``: frames of several
cameras grouped into one batch each get their own answer, ``detect_batch``
answers in its frames' order, and the target's ``failing_frame`` (e.g.
:func:`undecodable_frame`) fails alone in its batch
(:mod:`detectflow.testing.batch_checks`). Other adapters skip them.

Why this collection mechanism: the fixture is the one thing only the vendor
can write, so defining it is what asks for the suite; the tests appear in the
vendor's own module, where ``-k``, node ids and ``--deselect`` work as usual.
Where that is too implicit (a fixture in ``conftest.py``, several targets in
one module), subclass instead, which needs no plugin at all::

    class TestAcmeConformance(AdapterConformance):
        pass

The plugin also provides ``detectflow_http_faults``, a session-wide
:class:`HttpFaultServer` (hangs, 503, 400, garbage, dropped connections, a
refused port) on loopback, and :class:`BackgroundLoop` hosts any async test
provider on its own thread so it outlives each check's event loop. The checks themselves
(:mod:`detectflow.testing.checks`) are plain coroutines usable from scripts.

The plugin stays inactive until a module defines the fixture or asks for
``detectflow_http_faults``: it collects nothing, starts nothing and prints
nothing else, and this package imports its parts on first use, so every
other pytest run in an environment with detectflow pays almost nothing for
it. ``-p no:detectflow.testing`` turns it off; ``pytest_plugins =
["detectflow.testing"]`` in a conftest (or ``-p detectflow.testing``) still
works, and enables it where plugin autoloading is disabled.

The kit reports through its own messages, not ``assert``, so it opts out of
assertion rewriting (PYTEST_DONT_REWRITE): importing it in a conftest before
``pytest_plugins`` names it then raises no PytestAssertRewriteWarning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detectflow.testing._harness import CheckSkipped, ConformanceFailure
    from detectflow.testing.faults import HttpFaultServer
    from detectflow.testing.plugin import FIXTURE_NAME
    from detectflow.testing.suite import AdapterConformance
    from detectflow.testing.target import (
        AdapterFactory,
        ConformanceTarget,
        FrameFactory,
        conformance_frame,
        undecodable_frame,
    )
    from detectflow.testing.threads import BackgroundLoop

__all__ = [
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
]

# Where each export lives: imported on first access (PEP 562), so loading the
# pytest plugin does not import aiohttp, the checks and the suite. No __dir__
# listing them: pytest reads every name dir() gives a plugin module.
_HOMES = {
    "FIXTURE_NAME": "plugin",
    "AdapterConformance": "suite",
    "AdapterFactory": "target",
    "BackgroundLoop": "threads",
    "CheckSkipped": "_harness",
    "ConformanceFailure": "_harness",
    "ConformanceTarget": "target",
    "FrameFactory": "target",
    "HttpFaultServer": "faults",
    "conformance_frame": "target",
    "undecodable_frame": "target",
}

# Enabling this package as a pytest plugin registers the hooks and fixtures.
pytest_plugins = ["detectflow.testing.plugin"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
