"""The ``swarmget`` command line: thin commands that parse, call one service, and format.

``app`` holds the command group, the exit codes (listed there and in the README) and how a
failure is reported; ``get`` the download command (its routing and running are
``swarmget.run.get``'s); ``services`` the commands that run a node, a hub or a relay and
``config show``; ``operator`` the commands that ask the local node (``peers``, ``status``,
``portal``) and ``doctor``; ``control`` pauses and resumes a download of the local node.
Importing this package registers every command on ``main``.
"""

from __future__ import annotations

from swarmget.cli import control, get, operator, services
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
from swarmget.cli.get import result_json, summary_line
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
    "control",
    "exit_code_for",
    "get",
    "main",
    "operator",
    "parse_hub_urls",
    "result_json",
    "services",
    "summary_line",
]
