"""The ``swarmget`` command line: thin commands that parse, call one service, and format.

Exit codes (also in the README)::

    0    the file is in place and verified
    1    internal error (a bug: please report it)
    2    usage error: bad URL, checksum, header, or the destination exists (use --force)
    3    the download failed: origin unreachable or refusing, every source failed
    4    the file changed on the server during (or since) the download
    5    checksum mismatch: the data is kept for inspection
    6    local storage error: disk full, read-only, permissions (the partial file is kept)
    130  interrupted: the partial download is kept; run the same command again to resume
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from swarmget import __version__
from swarmget.core.digests import parse_checksum_spec
from swarmget.core.errors import (
    ChecksumMismatch,
    DownloadError,
    OriginChanged,
    StorageError,
    SwarmgetError,
    UsageError,
)
from swarmget.core.scheduler import SchedulerConfig
from swarmget.core.urls import validate_url
from swarmget.node.engine import DownloadResult, DownloadSpec
from swarmget.node.local import LocalOptions, open_local_download, parse_headers
from swarmget.progress import human_bytes, watch_progress

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_CHANGED = 4
EXIT_CHECKSUM = 5
EXIT_STORAGE = 6
EXIT_INTERRUPTED = 130


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swarmget")
def main() -> None:
    """Download large files faster by splitting them across the machines of your LAN."""


@main.command()
@click.argument("url")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="File or directory.")
@click.option("-c", "--connections", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--checksum", "checksums", multiple=True, help="ALG:HEX (sha256, sha512, ...).")
@click.option("-H", "--header", "headers", multiple=True, help="Extra request header 'K: V'.")
@click.option("--force", is_flag=True, help="Overwrite an existing destination.")
@click.option("--restart-if-changed", is_flag=True, help="Start over if the file changed.")
@click.option("--source-address", help="Local IP to connect from (multi-homed hosts).")
@click.option("--stall-timeout", type=click.FloatRange(0.1), default=15.0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress display, no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def get(
    url: str,
    output: Path | None,
    connections: int,
    checksums: tuple[str, ...],
    headers: tuple[str, ...],
    force: bool,
    restart_if_changed: bool,
    source_address: str | None,
    stall_timeout: float,
    quiet: bool,
    as_json: bool,
) -> None:
    """Download URL, resuming an earlier interrupted run of the same command."""
    err = Console(stderr=True)
    try:
        spec = DownloadSpec(
            url=validate_url(url),
            output=output,
            checksums=tuple(parse_checksum_spec(c) for c in checksums),
            force=force,
            restart_if_changed=restart_if_changed,
            scheduler=SchedulerConfig(stall_timeout=stall_timeout),
        )
        options = LocalOptions(
            connections=connections,
            headers=parse_headers(headers),
            source_address=source_address,
        )
    except SwarmgetError as exc:
        _fail(err, exc, as_json)
    show = not quiet and not as_json and err.is_terminal
    try:
        result = asyncio.run(_get(spec, options, err if show else None))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: the partial download is kept; run again to resume")
        sys.exit(EXIT_INTERRUPTED)
    except SwarmgetError as exc:
        _fail(err, exc, as_json)
    if as_json:
        click.echo(json.dumps(result_json(result)))
    elif not quiet:
        click.echo(summary_line(result))


async def _get(
    spec: DownloadSpec, options: LocalOptions, console: Console | None
) -> DownloadResult:
    async with open_local_download(spec, options) as download:
        return await watch_progress(download, console)


def _fail(err: Console, exc: SwarmgetError, as_json: bool) -> NoReturn:
    code = exit_code_for(exc)
    if as_json:
        click.echo(json.dumps({"ok": False, "error": exc.code, "message": str(exc)}))
    err.print(f"[red]error[/] ({exc.code}): {exc}", markup=True, highlight=False)
    sys.exit(code)


def result_json(result: DownloadResult) -> dict[str, Any]:
    return {
        "ok": True,
        "path": str(result.path),
        "size": result.size,
        "elapsed": round(result.elapsed, 3),
        "rate": result.size / result.elapsed if result.elapsed > 0 else None,
        "mode": result.mode,
        "resumed_bytes": result.resumed_bytes,
        "fetched_bytes": result.fetched_bytes,
        "digests": result.digests,
        "verified": list(result.verified),
        "last_byte_to_done": round(result.last_byte_to_done, 4),
        "sources": [
            {
                "id": s.source_id,
                "state": s.state.value,
                "received": s.received,
                "claimed": s.claimed,
                "failures": s.failures,
                "ban_reason": s.ban_reason,
            }
            for s in result.sources
        ],
    }


def summary_line(result: DownloadResult) -> str:
    rate = result.size / result.elapsed if result.elapsed > 0 else 0.0
    checked = ", ".join(result.verified) + " verified" if result.verified else "size checked"
    resumed = f", resumed from {human_bytes(result.resumed_bytes)}" if result.resumed_bytes else ""
    return (
        f"saved {result.path} ({human_bytes(result.size)}) in {result.elapsed:.1f}s, "
        f"{human_bytes(rate)}/s, {checked}{resumed}"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
