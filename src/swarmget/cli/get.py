"""``swarmget get``: its options become one ``run.get.GetRequest``; ``run.get`` decides the
way the download goes and runs it; this prints the progress, the summary or the JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from swarmget.cli.app import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    ProgramRun,
    StderrConsole,
    client_settings,
    fail,
    leave,
    main,
)
from swarmget.core.errors import SwarmgetError, UsageError
from swarmget.core.units import human_bytes, parse_size
from swarmget.core.verification import DEFAULT_VERIFY_SAMPLE, Verification
from swarmget.defaults import SECRET_ENV
from swarmget.run.get import GetRequest, Route, RouteTaken, download

if TYPE_CHECKING:  # (imported when used: a download alone, or the node's, must start fast)
    from swarmget.engine import DownloadResult
    from swarmget.node.requester import HubReport
    from swarmget.run.early import EarlyStart
    from swarmget.run.share_output import OutputShared


def _size_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """A size option (``20G``, ``512M``, ``1000``) in bytes; None when not given."""
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@main.command()
@click.argument("url")
@click.option(
    "-o",
    "--output",
    help="File or directory (DIR/ with a slash: a directory, made if missing). "
    "Not '-': a download is written in pieces, out of order, and verified before use.",
)
@click.option(
    "-O",
    "--remote-name",
    is_flag=True,
    help="Save in the current directory under the name the server gives (as curl -O).",
)
@click.option(
    "-c",
    "--connections",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Connections to the origin from this process (a node uses its own setting).",
)
@click.option(
    "--checksum",
    "checksums",
    multiple=True,
    help="ALG:HEX or ALG=HEX (sha256, sha512, ...), or a bare sha256/sha512 hex value.",
)
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    help="Extra request header 'K: V' (this process's own requests: with --no-node).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing destination.")
@click.option(
    "--limit-rate",
    callback=_size_option,
    help="Cap this process's download rate, bytes/s (e.g. 500K, 2M); with --no-node.",
)
@click.option(
    "--proxy",
    help="Send this download's requests through this HTTP proxy (http://[user:pass@]host:port); "
    "with --no-node: helpers fetch the origin themselves. Proxy variables are ignored.",
)
@click.option("--restart-if-changed", is_flag=True, help="Start over if the file changed.")
@click.option("--source-address", help="Local IP to connect from (multi-homed hosts).")
@click.option("--fsync", is_flag=True, help="Flush the file to disk before renaming it.")
@click.option("--stall-timeout", type=click.FloatRange(0.1), default=15.0, show_default=True)
@click.option(
    "-q", "-s", "--quiet", "--silent", "quiet", is_flag=True, help="No progress, no summary."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option(
    "--hub",
    "hubs",
    multiple=True,
    help="Download with the helpers this hub lists (this process asks as a requester only, "
    "never helps); repeat, or separate with "
    "commas, for replicated hubs (tried in order, with failover).",
)
@click.option("--secret-file", help=f"Swarm secret file for --hub (or ${SECRET_ENV}).")
@click.option(
    "--no-node",
    is_flag=True,
    help="Download here: do not hand the download to a running node, nor join the hubs of "
    "the config's [node] table (--hub still joins a swarm).",
)
@click.option("--relay", "relay_url", help="Fetch through this relay; pieces checked by hash.")
@click.option(
    "--verify-sample",
    type=click.FloatRange(0.0, 1.0),
    default=DEFAULT_VERIFY_SAMPLE,
    show_default=True,
    help="Compare this share of every helper's bytes with the origin, a window of each "
    "stream (at least 4 KiB; 0: trust helpers unchecked).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="The node's state directory (default: as `swarmget node` finds it, else "
    "/var/lib/swarmget/node if a node runs there).",
)
@click.option(
    "--detach",
    is_flag=True,
    help="On Ctrl-C, leave the download running on the node (default: cancel it there).",
)
@click.option(
    "--max-size",
    callback=_size_option,
    help="Refuse, before writing anything, a file larger than this (e.g. 20G).",
)
@click.option(
    "--share-output",
    is_flag=True,
    help="Fetch once per LAN: ask the node running in --state-dir to serve this file to its "
    "group although it is saved outside the node's directories (the node must run with "
    "--share-output). Without it such a file is never shared.",
)
@click.pass_context
def get(ctx: click.Context, /, quiet: bool, as_json: bool, **options: Any) -> None:
    """Download URL, resuming an earlier interrupted run of the same command.

    With a node daemon running (its state directory holds node.json), the download is
    handed to it and its progress followed here; with --hub, this process asks the hub for
    helpers of its network and downloads with them (it does not become a node: it never
    helps others); otherwise it downloads alone.
    """
    started = time.monotonic()  # the command's own timeline starts here
    startup = since_process_start()  # Python's start and the imports, before this line
    err = StderrConsole()  # (rich is imported when something is printed there)
    try:
        options["output"] = output_path(options["output"], options.pop("remote_name"))
    except SwarmgetError as exc:
        fail(err, exc, as_json)
    settings = client_settings(ctx, options.pop("state_dir"))
    share = options.pop("share_output")
    if not options["secret_file"] and settings.secret_file:
        options["secret_file"] = settings.secret_file
    program = ctx.find_root().obj
    early = program.early if isinstance(program, ProgramRun) else None
    request = GetRequest(
        **options, state_dir=settings.state_dir, configured_hubs=settings.hubs, early=early
    )
    show = not quiet and not as_json and err.is_terminal
    routes: list[RouteTaken] = []
    accepted: list[float] = []  # when the download was accepted (the node's answer, or here)

    hub_reports: list[HubReport] = []

    def on_route(taken: RouteTaken) -> None:
        routes.append(taken)
        if not accepted:  # (handed over early: before this command ran, so negative)
            at = early.accepted_at if early is not None and early.adopted else time.monotonic()
            accepted.append(at - started)
        if taken.fallback:  # one line, however long (soft_wrap: rich never folds it)
            err.print(f"[yellow]warning[/]: {taken.reason}", highlight=False, soft_wrap=True)
        elif taken.joined and not quiet:
            err.print(f"note: {taken.reason}", highlight=False, soft_wrap=True)
        if taken.ignored and not quiet and not taken.fallback:  # (once: not with a warning)
            given = ", ".join(taken.ignored)
            err.print(
                f"note: the node downloads with its own settings: {given} not used here "
                "(add --no-node to download in this process with them)",
                highlight=False,
                soft_wrap=True,
            )

    def hub_answered(report: HubReport) -> None:
        hub_reports.append(report)  # going alone is said by on_route

    try:
        try:
            if early is not None:
                early.release_interrupts()  # (a Ctrl-C held since the hand-off: now)
            result = asyncio.run(
                download(
                    request,
                    display=err.console if show else None,
                    on_route=on_route,
                    on_hub=hub_answered,
                )
            )
        finally:  # an early download the command did not take is cancelled (run.early)
            if early is not None:
                early.drop()
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: {_interrupted(routes, request.detach, early)}")
        sys.exit(EXIT_INTERRUPTED)
    except SwarmgetError as exc:
        fail(err, exc, as_json)
    shared = None
    if share and not (routes and routes[-1].route is Route.NODE):  # (the node's own file)
        shared = _share(settings.state_dir, result)
        warning = shared.warning()
        if warning is not None:
            err.print(f"[yellow]warning[/]: {warning}", highlight=False, soft_wrap=True)
    if as_json:
        route = routes[-1].as_json() if routes else None
        hub = {"hub": hub_reports[-1].as_json()} if hub_reports else {}
        command = {"startup": startup, "accepted": accepted[0] if accepted else None}
        command["result"] = time.monotonic() - started
        out = {**result_json(result), "route": route, "command_timeline": command}
        if shared is not None:
            out["shared_output"] = shared.value
        click.echo(json.dumps(out | hub))
    elif not quiet:
        click.echo(summary_line(result))
    leave(ctx, EXIT_OK)  # at once: the file is verified and in place


def _share(state_dir: Path, result: DownloadResult) -> OutputShared:
    """``--share-output``: hand the file to the node (``run.share_output``)."""
    from swarmget.run.share_output import share_output

    return asyncio.run(share_output(state_dir, result))


def since_process_start() -> float | None:
    """Seconds since this process started (Linux: ``/proc/self/stat``, to the kernel's clock
    tick, 10 ms); None where that cannot be read."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()  # (the name may hold spaces)
        ticks = int(fields[19])  # starttime, field 22 of proc(5); fields[0] is field 3
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        return max(0.0, now - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def output_path(given: str | None, remote_name: bool) -> Path | None:
    """``-o`` as a path: ``DIR/`` is a directory (made when missing), ``-O`` the current
    directory; ``-o -`` (standard output) is refused, with why (``UsageError``)."""
    if remote_name:
        if given is not None:
            raise UsageError("give -o FILE or -O (--remote-name), not both")
        return Path.cwd()
    if given is None:
        return None
    if given == "-":
        raise UsageError(
            "-o - (standard output) is not supported: swarmget writes a download in pieces, "
            "out of order, into FILE.part, and checks it before anyone may use it; give "
            "-o FILE and read the file when swarmget exits 0"
        )
    if given.endswith(os.sep):
        try:
            os.makedirs(given, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot make the directory {given}: {exc.strerror}") from exc
    return Path(given)


def _interrupted(routes: list[RouteTaken], detach: bool, early: EarlyStart | None) -> str:
    """What Ctrl-C left behind."""
    taken = routes[-1] if routes else None
    if taken is None and early is not None:  # (cancelled when it was dropped)
        return f"the node's download {early.download_id} was cancelled; run again to resume"
    if taken is None or taken.route is not Route.NODE:
        return "the partial download is kept; run again to resume"
    if detach or taken.joined:
        return (
            f"the node goes on with download {taken.download_id} (`swarmget status`; "
            f"`swarmget cancel {taken.download_id}` stops it)"
        )
    return f"the node's download {taken.download_id} was cancelled; run again to resume"


_SOURCE_SUMMARY = (
    "id", "state", "received", "claimed", "failures", "ban_reason", "cut", "ranges", "waited",
    "ahead",
)  # fmt: skip


def result_json(result: DownloadResult) -> dict[str, Any]:
    """``get --json``: the user API's result (``node.download_json``), rounded for people,
    with the average rate and a summary of each source."""
    from swarmget.node import download_json

    return {
        "ok": True,
        **download_json.result_json(result),
        "elapsed": round(result.elapsed, 3),
        "rate": run_rate(result) if result.elapsed > 0 else None,
        "last_byte_to_done": round(result.last_byte_to_done, 4),
        "sources": [
            {k: v for k, v in download_json.source_json(s).items() if k in _SOURCE_SUMMARY}
            for s in result.sources
        ],
    }


def run_rate(result: DownloadResult) -> float:
    """Bytes per second fetched by this run: what an earlier run left on disk (resumed)
    took no time now, and is not counted."""
    if result.elapsed <= 0:
        return 0.0
    return max(0, result.size - result.resumed_bytes) / result.elapsed


def summary_line(result: DownloadResult) -> str:
    rate = run_rate(result)
    report = result.verification
    if result.verified:
        checked = ", ".join(result.verified) + " verified"
    elif report.level is Verification.SAMPLED:
        checked = f"size checked, {report.sampled_streams} {_others(result)} streams sampled"
    elif report.helper_bytes:
        from_others = f"{human_bytes(report.helper_bytes)} from {_others(result, plural=True)}"
        checked = f"size checked, NOT verified: {from_others}"
    else:
        checked = "size checked"
    resumed = f", resumed from {human_bytes(result.resumed_bytes)}" if result.resumed_bytes else ""
    return (
        f"saved {result.path} ({human_bytes(result.size)}) in {result.elapsed:.1f}s, "
        f"{human_bytes(rate)}/s, {checked}{resumed}"
    )


def _others(result: DownloadResult, *, plural: bool = False) -> str:
    """Who delivered the report's ``helper_bytes``: helpers, LAN holders (fetch once per
    LAN: the sharing report's ``lan_bytes``), or both."""
    lan = result.sharing.lan_bytes if result.sharing is not None else 0
    helpers = result.verification.helper_bytes - lan
    names = [n for n, b in (("helper", helpers), ("LAN holder", lan)) if b > 0] or ["helper"]
    return " and ".join(f"{n}s" if plural else n for n in names)
