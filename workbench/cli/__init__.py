"""The ``workbench`` command line: one module per command, wired into one Typer app.

:mod:`workbench.cli.app` holds the app, the entry point and the table printer; each command
module registers its command on that app when imported, and this package imports them all, so
``workbench.cli:main`` (or ``python -m workbench.cli``) sees every command.
:mod:`workbench.cli.options` holds the vocabulary the commands share.
"""

from workbench.cli import (  # noqa: F401  (registers the commands)
    batching,
    cost,
    demo,
    export,
    monitor,
    optimize,
    profile,
    report,
    runs,
)
from workbench.cli.app import app, main

__all__ = ["app", "main"]
