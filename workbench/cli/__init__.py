"""The ``workbench`` command line: one module per command, wired into one Typer app."""

from workbench.cli.app import app, main

__all__ = ["app", "main"]
