"""The ``swarmget`` command line: thin commands that parse, call one service, and format.

``app`` holds the command group, the exit codes (listed there and in the README) and how a
failure is reported; ``get`` the download command (its routing and running are
``swarmget.run.get``'s); ``services`` the commands that run a node, a hub or a relay and
``config show``; ``operator`` the commands that ask the local node (``peers``, ``status``,
``portal``) and ``doctor``; ``control`` pauses and resumes a download of the local node.
Each command's module is imported when that command runs (``app.COMMAND_MODULES``): a
download handed to the node does not import the node's, hub's or relay's code.
"""

from __future__ import annotations

from swarmget.cli.app import (
    EXIT_CHANGED,
    EXIT_CHECKSUM,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_USAGE,
    exit_code_for,
    main,
)
from swarmget.core.urls import parse_hub_urls

__all__ = [
    "EXIT_CHANGED",
    "EXIT_CHECKSUM",
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "exit_code_for",
    "main",
    "parse_hub_urls",
]
