"""The ``detectflow`` command line, one module per command family.

:mod:`~detectflow.cli.commands` holds the group and the small commands;
``flow``, ``provider``, ``maintenance``, ``demo`` and ``simulate`` their
own; :mod:`~detectflow.cli.context` gives every command its settings and
database; :mod:`~detectflow.cli.runner` starts the server, dataflow and
schedule together for ``up`` and ``demo``. Heavy modules are imported inside the
commands that need them, so ``detectflow --help`` stays fast.
"""

from detectflow.cli.commands import cli, main

__all__ = ["cli", "main"]
