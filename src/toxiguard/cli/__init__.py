"""The `toxiguard` command line: a thin Typer layer over the library functions."""

from toxiguard.cli.root import app, main

__all__ = ["app", "main"]
