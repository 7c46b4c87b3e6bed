"""The command line: ``dhtquery demo | node | publish | search | bench``."""

from .app import CliError, app, main

__all__ = ["CliError", "app", "main"]
