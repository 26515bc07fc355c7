"""The ``swarmget`` command group, its exit codes, and how every command reports failure.

Exit codes (also in the README)::

    0    the file is in place and verified
    1    internal error (a bug: please report it)
    2    usage error: bad URL, checksum, header, or the destination exists (use --force)
    3    the download failed: origin unreachable or refusing, every source failed
    4    the file changed on the server during (or since) the download
    5    checksum mismatch: the data is kept for inspection
    6    local storage error: disk full or too small, over --max-size, read-only, permissions,
         an untrusted FILE.part (the partial file is kept)
    130  interrupted: the partial download is kept; run the same command again to resume
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from swarmget import __version__
from swarmget.core.errors import (
    ChecksumMismatch,
    DownloadError,
    OriginChanged,
    StorageError,
    SwarmgetError,
    UsageError,
)
from swarmget.locations import ClientSettings, find_config
from swarmget.locations import client_settings as locate
from swarmget.run.quiet_gc import held

if TYPE_CHECKING:  # (imported when something is printed: `get -q --json` never does)
    from rich.console import Console

    from swarmget.run.early import EarlyStart

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_CHANGED = 4
EXIT_CHECKSUM = 5
EXIT_STORAGE = 6
EXIT_INTERRUPTED = 130


#: The module that defines each command, imported only when that command runs (or is listed
#: by ``--help``): ``swarmget get`` does not pay for the node's, hub's and relay's commands.
COMMAND_MODULES = {
    "get": "swarmget.cli.get",
    "pause": "swarmget.cli.control",
    "resume": "swarmget.cli.control",
    "peers": "swarmget.cli.operator",
    "status": "swarmget.cli.operator",
    "portal": "swarmget.cli.operator",
    "cancel": "swarmget.cli.operator",
    "doctor": "swarmget.cli.operator",
    "node": "swarmget.cli.services",
    "hub": "swarmget.cli.services",
    "relay": "swarmget.cli.services",
    "config": "swarmget.cli.services",
}


class ProgramRun:
    """The context's ``obj`` when the group runs as the program (its arguments from
    ``sys.argv``), not called by a test or a library: a command may then end the process
    itself (``leave``). (A caller passes its own ``obj``, e.g. a stand-in node's
    ``NodeHooks`` with its arguments: never both.) ``early``: the download ``run.early``
    handed to the node before the command's imports (``swarmget.cli.run``), if any."""

    def __init__(self, early: EarlyStart | None = None) -> None:
        self.early = early


class LazyGroup(click.Group):
    """A group whose commands register themselves (``@main.command()``) when their module
    is imported, which happens when the command is asked for (``COMMAND_MODULES``)."""

    def main(self, args: Sequence[str] | None = None, **extra: Any) -> Any:  # type: ignore[override]
        if args is None and extra.get("standalone_mode", True):  # the process's command line
            extra.setdefault("obj", ProgramRun())
        return super().main(args, **extra)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            with held():  # (run.quiet_gc)
                importlib.import_module(module)
        return self.commands.get(cmd_name)


def exit_code_for(exc: BaseException) -> int:
    for kind, code in (
        (UsageError, EXIT_USAGE),
        (OriginChanged, EXIT_CHANGED),
        (ChecksumMismatch, EXIT_CHECKSUM),
        (StorageError, EXIT_STORAGE),
        (DownloadError, EXIT_FAILED),
        (SwarmgetError, EXIT_FAILED),
    ):
        if isinstance(exc, kind):
            return code
    return EXIT_INTERNAL


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swarmget")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config file (default: $SWARMGET_CONFIG, ~/.config/swarmget/config.toml, "
    "/etc/swarmget/config.toml).",
)
def main(config_path: Path | None) -> None:
    """Download large files faster by splitting them across the machines of your LAN."""


def leave(ctx: click.Context, code: int) -> NoReturn:
    """End the command with ``code``, its work done and its output written. As the program
    (``ProgramRun``), the process ends at once, without the interpreter's teardown (freeing
    every module and object: 0.05-0.2 s after a download, issue #14); nothing is left to
    do then: the file is verified and in place, sessions and files are closed, no thread
    runs (``asyncio.run`` returned). Called from a test, an ordinary ``sys.exit``."""
    if isinstance(ctx.find_root().obj, ProgramRun):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # (a closed pipe: nothing more can be said)
            code = code or EXIT_FAILED
        os._exit(code)
    sys.exit(code)


class StderrConsole:
    """rich's ``Console`` on stderr, made when first used: a command that prints nothing
    there does not import rich (issue #14: ``get``'s start-up)."""

    def __init__(self) -> None:
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    @property
    def is_terminal(self) -> bool:
        return self.console.is_terminal

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)


def fail(err: StderrConsole, exc: SwarmgetError, as_json: bool) -> NoReturn:
    """A download failed (or could not start): say why, on stderr and with ``--json`` on
    stdout, and exit with its code."""
    from rich.markup import escape

    code = exit_code_for(exc)
    if as_json:
        click.echo(json.dumps({"ok": False, "error": exc.code, "message": str(exc)}))
    err.print(f"[red]error[/] ({exc.code}): {escape(str(exc))}", markup=True, highlight=False)
    sys.exit(code)


def first_error(exc: BaseException) -> BaseException:
    """The first error inside an exception group (a service's task group fails with one),
    or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def fail_start(exc: Exception, what: str) -> NoReturn:
    """A service (or a call to one) could not start: say why and exit."""
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True, soft_wrap=True)  # one line, however narrow the terminal
    if isinstance(exc, OSError):
        err.print(f"[red]error[/]: cannot start the {what}: {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_FAILED)
    err.print(f"[red]error[/]: {escape(str(exc))}", highlight=False)  # "swarmget[hub]"
    sys.exit(EXIT_USAGE if isinstance(exc, UsageError | ValueError) else EXIT_FAILED)


def client_settings(ctx: click.Context, state_dir: Path | None) -> ClientSettings:
    """Where the node is (and the configured hubs and secret file) for a command that talks
    to it, as ``swarmget.locations`` decides it; a bad config file is a usage error."""
    import os

    given = ctx.find_root().params.get("config_path")
    path, explicit = find_config(given, os.environ)
    try:
        return locate(state_dir=state_dir, env=os.environ, config_path=path, explicit=explicit)
    except UsageError as exc:
        fail_start(exc, "configuration")


def announce(info: dict[str, Any]) -> None:
    """A service's URLs, once it listens (``net.signals.announce_listening``)."""
    from swarmget.net.signals import announce_listening

    announce_listening(info)
