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
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import click
from rich.console import Console

from swarmget import __version__
from swarmget.core.addresses import AddressPolicy, parse_cidrs
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
from swarmget.defaults import (
    DEFAULT_API_PORT,
    DEFAULT_DB_URL,
    DEFAULT_HUB_PORT,
    DEFAULT_PEER_PORT,
    DEFAULT_STATE_DIR,
    DEFAULT_TTL,
    SECRET_ENV,
)
from swarmget.node.engine import DownloadProgress, DownloadResult, DownloadSpec
from swarmget.node.local import LocalOptions, open_local_download, parse_headers
from swarmget.progress import human_bytes, watch, watch_progress

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
@click.option("--fsync", is_flag=True, help="Flush the file to disk before renaming it.")
@click.option("--stall-timeout", type=click.FloatRange(0.1), default=15.0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress display, no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option(
    "--hub",
    "hubs",
    multiple=True,
    help="Download with the swarm of this hub (in-process node); repeat, or separate with "
    "commas, for replicated hubs (tried in order, with failover).",
)
@click.option("--secret-file", help=f"Swarm secret file for --hub (or ${SECRET_ENV}).")
@click.option("--no-node", is_flag=True, help="Do not hand the download to a running node.")
@click.option("--relay", "relay_url", help="Fetch through this relay; pieces checked by hash.")
@click.option(
    "--verify-sample",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    help="Re-fetch this fraction of each helper's bytes from the origin to check them.",
)
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE_DIR)
def get(
    url: str,
    output: Path | None,
    connections: int,
    checksums: tuple[str, ...],
    headers: tuple[str, ...],
    force: bool,
    restart_if_changed: bool,
    source_address: str | None,
    fsync: bool,
    stall_timeout: float,
    quiet: bool,
    as_json: bool,
    hubs: tuple[str, ...],
    secret_file: str | None,
    no_node: bool,
    relay_url: str | None,
    verify_sample: float,
    state_dir: Path,
) -> None:
    """Download URL, resuming an earlier interrupted run of the same command.

    With a node daemon running (its state directory holds node.json), the download is
    handed to it and its progress followed here; with --hub, this process joins the swarm
    for the duration of the download; otherwise it downloads alone.
    """
    err = Console(stderr=True)
    try:
        spec = DownloadSpec(
            url=validate_url(url),
            output=output,
            checksums=tuple(parse_checksum_spec(c) for c in checksums),
            force=force,
            restart_if_changed=restart_if_changed,
            scheduler=SchedulerConfig(stall_timeout=stall_timeout),
            fsync=fsync,
            verify_sample=verify_sample,
        )
        options = LocalOptions(
            connections=connections,
            headers=parse_headers(headers),
            source_address=source_address,
        )
        hub_urls = parse_hub_urls(hubs)
    except SwarmgetError as exc:
        _fail(err, exc, as_json)
    show = not quiet and not as_json and err.is_terminal
    use_node = not no_node and relay_url is None
    how = _Route(hub_urls, secret_file, state_dir if use_node else None, source_address, relay_url)
    try:
        result = asyncio.run(_get(spec, options, how, err if show else None, err))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: the partial download is kept; run again to resume")
        sys.exit(EXIT_INTERRUPTED)
    except SwarmgetError as exc:
        _fail(err, exc, as_json)
    if as_json:
        click.echo(json.dumps(result_json(result)))
    elif not quiet:
        click.echo(summary_line(result))


@dataclass(frozen=True)
class _Route:
    hub_urls: tuple[str, ...]  # empty: no swarm of our own
    secret_file: str | None
    node_state_dir: Path | None  # None: never use a running node
    source_address: str | None
    relay_url: str | None = None


async def _get(
    spec: DownloadSpec,
    options: LocalOptions,
    how: _Route,
    console: Console | None,
    err: Console,
) -> DownloadResult:
    if how.hub_urls:
        return await _get_with_hub(spec, options, how, console)
    if how.node_state_dir is not None:
        result = await _get_via_node(spec, how.node_state_dir, console, err)
        if result is not None:
            return result
    if how.relay_url is not None:
        return await _get_through_relay(spec, options, how, console)
    async with open_local_download(spec, options) as download:
        return await watch_progress(download, console)


async def _get_through_relay(
    spec: DownloadSpec, options: LocalOptions, how: _Route, console: Console | None
) -> DownloadResult:
    from swarmget.net.relay_client import RelayClient

    secret = _secret(how.secret_file)
    async with aiohttp.ClientSession() as session:
        relay = RelayClient(
            session, validate_url(how.relay_url or ""), secret, f"cli-{os.getpid()}"
        )
        async with open_local_download(spec, options, relay=relay) as download:
            return await watch_progress(download, console)


async def _get_via_node(
    spec: DownloadSpec, state_dir: Path, console: Console | None, err: Console
) -> DownloadResult | None:
    """Hand the download to the running node; None when there is none (or it is not usable)."""
    from swarmget.node import remote

    node = remote.find_local_node(state_dir)
    if node is None:
        return None
    async with aiohttp.ClientSession() as session:
        api = remote.NodeSession(session, node)
        if not await api.alive():
            return None
        try:
            output = remote.relative_output(node, spec.output)
        except UsageError as exc:
            err.print(f"[yellow]not using the local node[/]: {exc}", highlight=False)
            return None
        body = {
            "url": spec.url,
            "output": output,
            "checksums": [str(d) for d in spec.checksums],
            "force": spec.force,
            "restart_if_changed": spec.restart_if_changed,
        }
        download_id = await api.start(body)
        latest: list[DownloadProgress] = []
        follow = api.follow(download_id, latest.append)
        data = await watch(follow, lambda: latest[-1] if latest else None, console)
    if data["state"] != "done":
        raise remote.error_from_json(data.get("error") or {"message": data["state"]})
    return remote.result_from_json(data)


async def _get_with_hub(
    spec: DownloadSpec, options: LocalOptions, how: _Route, console: Console | None
) -> DownloadResult:
    """Join the hub's swarm as a node for the duration of this one download."""
    from swarmget.node.daemon import NodeConfig, open_node

    with tempfile.TemporaryDirectory(prefix="swarmget-get-") as tmp:
        config = NodeConfig(
            secret=_secret(how.secret_file),
            state_dir=Path(tmp),
            download_dir=Path(tmp) / "unused",
            hub_urls=how.hub_urls,
            listen_host=how.source_address or "0.0.0.0",
            listen_port=0,
            api_port=0,
            connections=options.connections,
            stall_timeout=spec.scheduler.stall_timeout,
            relay_url=validate_url(how.relay_url) if how.relay_url else None,
        )
        async with open_node(config) as node:
            await node.wait_registered(5.0)
            record = node.downloads.create(spec)
            assert record.task is not None
            task = record.task

            async def finished() -> None:
                await task

            await watch(finished(), record.progress, console)
        if record.result is None:
            raise record.error or DownloadError("the download did not finish")
        return record.result


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


# --- swarm commands -----------------------------------------------------------------------------

SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``8M``, ``1.5G``, ``4096``, ``10MiB`` → bytes (binary units)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in SIZE_UNITS and not t[-1:].isdigit() else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise click.BadParameter(f"not a size: {text!r} (try 8M, 1.5G)") from None
    if value < 0:
        raise click.BadParameter(f"negative size: {text!r}")
    return int(value * SIZE_UNITS[unit])


def parse_hub_urls(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--hub`` values (repeated, or comma-separated) → the hub URLs, in the order given,
    without repeats. Raises ``InvalidURL`` for one that is not an http(s) URL."""
    urls = (validate_url(url.strip()) for v in values for url in v.split(",") if url.strip())
    return tuple(dict.fromkeys(url.rstrip("/") for url in urls))


def _secret(secret_file: str | None) -> bytes:
    from swarmget.net.auth import load_secret

    return load_secret(secret_file, env_value=os.environ.get(SECRET_ENV))


def _policy(allow: tuple[str, ...]) -> AddressPolicy:
    words = [w for item in allow for w in item.split(",") if w.strip()]
    private = any(w.strip() == "private" for w in words)
    cidrs = [w for w in words if w.strip() != "private"]
    return AddressPolicy(allow_private=private, allowed_networks=parse_cidrs(cidrs))


@main.command()
@click.option(
    "--hub",
    "hubs",
    multiple=True,
    help="Hub URL, e.g. http://10.0.0.1:7400; repeat, or separate with commas, for "
    "replicated hubs (one database): the node fails over to the next when one dies.",
)
@click.option("--listen", default="127.0.0.1", show_default=True, help="Peer API address.")
@click.option("--port", type=int, default=DEFAULT_PEER_PORT, show_default=True, help="0: any.")
@click.option("--api-port", type=int, default=DEFAULT_API_PORT, show_default=True)
@click.option("--secret-file", help=f"Swarm secret file (or ${SECRET_ENV}).")
@click.option("--node-id", help="Default: made up once and kept in the state directory.")
@click.option("--group", help="Explicit group name (default: by address prefix).")
@click.option("--slots", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option("--connections", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--rate-limit", help="Cap on helper traffic, bytes/s (e.g. 5M).")
@click.option("--daily-quota", help="Helper data per UTC day (e.g. 2G).")
@click.option(
    "--allow-private-origins",
    "allow",
    multiple=True,
    help="CIDRs helpers may fetch from despite the SSRF guard ('private' for RFC 1918).",
)
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE_DIR)
@click.option("--download-dir", type=click.Path(path_type=Path), default=Path("downloads"))
@click.option("--stall-timeout", type=click.FloatRange(0.1), default=15.0, show_default=True)
@click.option("--heartbeat-interval", type=click.FloatRange(0.1))
@click.option("--relay", "relay_url", help="Fetch every download through this relay.")
def node(
    hubs: tuple[str, ...],
    listen: str,
    port: int,
    api_port: int,
    secret_file: str | None,
    node_id: str | None,
    group: str | None,
    slots: int,
    connections: int,
    rate_limit: str | None,
    daily_quota: str | None,
    allow: tuple[str, ...],
    state_dir: Path,
    download_dir: Path,
    stall_timeout: float,
    heartbeat_interval: float | None,
    relay_url: str | None,
) -> None:
    """Run a node: help others download, and download with their help."""
    from swarmget.node.daemon import NodeConfig, run_node

    err = Console(stderr=True)
    try:
        config = NodeConfig(
            secret=_secret(secret_file),
            state_dir=state_dir,
            download_dir=download_dir,
            node_id=node_id,
            listen_host=listen,
            listen_port=port,
            api_port=api_port,
            hub_urls=parse_hub_urls(hubs),
            group=group,
            slots=slots,
            connections=connections,
            rate_limit=parse_size(rate_limit) if rate_limit else None,
            daily_quota=parse_size(daily_quota) if daily_quota is not None else None,
            origin_policy=_policy(allow),
            stall_timeout=stall_timeout,
            heartbeat_interval=heartbeat_interval,
            relay_url=validate_url(relay_url) if relay_url else None,
        )
        asyncio.run(run_node(config, announce=lambda info: click.echo(json.dumps(info))))
    except (SwarmgetError, ValueError) as exc:
        err.print(f"[red]error[/]: {exc}", highlight=False)
        sys.exit(EXIT_USAGE if isinstance(exc, UsageError | ValueError) else EXIT_FAILED)
    except OSError as exc:
        err.print(f"[red]error[/]: cannot start the node: {exc}", highlight=False)
        sys.exit(EXIT_FAILED)


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=int, default=DEFAULT_HUB_PORT, show_default=True)
@click.option("--db", default=DEFAULT_DB_URL, show_default=True, help="SQLAlchemy async URL.")
@click.option("--secret-file", help=f"Swarm secret file (or ${SECRET_ENV}).")
@click.option("--ttl", type=click.FloatRange(1.0), default=DEFAULT_TTL, show_default=True)
@click.option("--group-prefix", type=click.IntRange(0, 128), default=16, show_default=True)
@click.option("--trust-proxy", is_flag=True, help="Believe X-Forwarded-For.")
def hub(
    host: str,
    port: int,
    db: str,
    secret_file: str | None,
    ttl: float,
    group_prefix: int,
    trust_proxy: bool,
) -> None:
    """Run the hub: the registry of live nodes (it never downloads anything).

    Several hubs given the same database (--db postgresql+asyncpg://...) are replicas of one
    registry: give nodes all of them (--hub A --hub B) and they fail over when one dies.
    """
    from swarmget.hub.service import run_hub

    err = Console(stderr=True)
    try:
        secret = _secret(secret_file)
        announce = lambda url: click.echo(json.dumps({"url": url}))  # noqa: E731
        asyncio.run(
            run_hub(host, port, db, secret, ttl, group_prefix, trust_proxy, on_listening=announce)
        )
    except (SwarmgetError, ValueError) as exc:
        err.print(f"[red]error[/]: {exc}", highlight=False)
        sys.exit(EXIT_USAGE if isinstance(exc, UsageError | ValueError) else EXIT_FAILED)


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=int, default=7410, show_default=True)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path("relay-cache"))
@click.option("--budget", default="10G", show_default=True, help="Cache size limit.")
@click.option("--db", help="SQLAlchemy async URL (default: SQLite in the cache dir).")
@click.option("--secret-file", help=f"Swarm secret file (or ${SECRET_ENV}).")
@click.option("--piece-size", default="1M", show_default=True)
@click.option("--allow-private-origins", "allow", multiple=True, help="CIDRs, or 'private'.")
def relay(
    host: str,
    port: int,
    cache_dir: Path,
    budget: str,
    db: str | None,
    secret_file: str | None,
    piece_size: str,
    allow: tuple[str, ...],
) -> None:
    """Run a relay/cache: fetch a URL once, serve it in pieces with per-piece hashes."""
    from swarmget.relay.run import RelayConfig, run_relay

    err = Console(stderr=True)
    try:
        config = RelayConfig(
            secret=_secret(secret_file),
            cache_dir=cache_dir,
            budget=parse_size(budget),
            db_url=db,
            host=host,
            port=port,
            piece_size=parse_size(piece_size),
            origin_policy=_policy(allow),
        )
        announce = lambda url: click.echo(json.dumps({"url": url}))  # noqa: E731
        asyncio.run(run_relay(config, announce))
    except (SwarmgetError, ValueError) as exc:
        err.print(f"[red]error[/]: {exc}", highlight=False)
        sys.exit(EXIT_USAGE if isinstance(exc, UsageError | ValueError) else EXIT_FAILED)


if __name__ == "__main__":  # pragma: no cover
    main()
