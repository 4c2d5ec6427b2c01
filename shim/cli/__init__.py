"""The ``shim`` command (click): one entry point, ``main``."""

from shim.cli.commands import main

__all__ = ["main"]
