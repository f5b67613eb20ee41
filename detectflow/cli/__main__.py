"""``python -m detectflow.cli``: the same as the ``detectflow`` command."""

from detectflow.cli.commands import main

main()
