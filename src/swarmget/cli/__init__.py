"""The ``swarmget`` command line: thin commands that parse, call one service, and format.

``app`` holds the command group, the exit codes (listed there and in the README) and how a
failure is reported; ``get`` the download command (its routing and running are
``swarmget.run.get``'s); ``services`` the commands that run a node, a hub or a relay and
``config show``; ``operator`` the commands that ask the local node (``peers``, ``status``,
``portal``) and ``doctor``; ``control`` pauses and resumes a download of the local node.
Each command's module is imported when that command runs (``app.COMMAND_MODULES``): a
download handed to the node does not import the node's, hub's or relay's code.

The program is ``run`` (the ``swarmget`` console script, ``python -m swarmget.cli``): a
plain ``get`` is handed to the node by ``swarmget.run.early`` before anything here is
imported (click, asyncio, the engine's types: ~0.1 s), then the command runs as always and
adopts that download. So this package imports nothing until a name is asked for (PEP 562
``__getattr__``): ``main`` is the click group, for callers and tests.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    "run",
]


def run() -> None:
    """The ``swarmget`` program: its arguments from ``sys.argv``."""
    from swarmget.run.quiet_gc import freeze_after_start, held

    freeze_after_start()  # (the program's start-up objects live as long as it does)
    with held():  # no collections over what the imports make (~0.1 s of them: quiet_gc)
        from swarmget.run.early import start

        early = start(sys.argv[1:])
        if early is not None:
            early.hold_interrupts()  # (released by `get` once it can tell what Ctrl-C left)
    try:
        with held():
            from swarmget.cli.app import ProgramRun, main

        main.main(obj=ProgramRun(early))
    finally:  # (a download the command never adopted is the node's no longer)
        if early is not None:
            early.drop()


def __getattr__(name: str) -> Any:
    if name == "parse_hub_urls":
        from swarmget.core import urls

        return urls.parse_hub_urls
    if name in __all__:
        from swarmget.cli import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
