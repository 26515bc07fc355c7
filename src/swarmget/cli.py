"""The ``swarmget`` command line: thin commands that parse, call one service, and format.

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

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource
from rich.console import Console
from rich.table import Table

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
from swarmget.core.lifecycle import DownloadState, parse_state
from swarmget.core.listening import ListenLimits
from swarmget.core.scheduler import SchedulerConfig
from swarmget.core.urls import validate_url
from swarmget.core.verification import Verification
from swarmget.defaults import (
    DEFAULT_API_PORT,
    DEFAULT_DB_URL,
    DEFAULT_HUB_PORT,
    DEFAULT_PEER_PORT,
    DEFAULT_STATE_DIR,
    DEFAULT_TTL,
    SECRET_ENV,
)
from swarmget.engine import (
    DEFAULT_VERIFY_SAMPLE,
    DownloadProgress,
    DownloadResult,
    DownloadSpec,
)
from swarmget.node import download_json
from swarmget.progress import human_bytes, watch, watch_progress
from swarmget.run.local import LocalOptions, open_local_download, parse_headers

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
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config file (default: $SWARMGET_CONFIG, ~/.config/swarmget/config.toml, "
    "/etc/swarmget/config.toml).",
)
def main(config_path: Path | None) -> None:
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
    default=DEFAULT_VERIFY_SAMPLE,
    show_default=True,
    help="Compare this share (at least 4 KiB) of every helper stream with the origin "
    "(0: trust helpers unchecked).",
)
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE_DIR)
@click.option(
    "--max-size",
    callback=lambda _ctx, _param, value: _size_option(value),
    help="Refuse, before writing anything, a file larger than this (e.g. 20G).",
)
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
    max_size: int | None,
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
            max_size=max_size,
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
    use_node = not no_node and relay_url is None and _node_may_run(state_dir)
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


def _node_may_run(state_dir: Path) -> bool:
    """Whether a node says it runs in ``state_dir`` (its ``node.json`` is there; trusted or
    not is for ``run.remote`` to check): without one, a download alone does not pay for
    importing the node's client (pydantic and the API's models: ~0.1 s of start-up)."""
    from swarmget.node.statefiles import NODE_FILE

    return os.path.lexists(state_dir / NODE_FILE)


def _size_option(value: str | None) -> int | None:
    """A size option (``20G``, ``512M``, ``1000``) in bytes; None when not given."""
    if value is None:
        return None
    from swarmget.config import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


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
    import aiohttp

    from swarmget.core.identity import NodeIdentity
    from swarmget.net.relay_client import RelayClient

    secret = _secret(how.secret_file)
    async with aiohttp.ClientSession() as session:
        # an ephemeral identity: this process is a one-off client of the relay
        relay = RelayClient(
            session, validate_url(how.relay_url or ""), secret, NodeIdentity.generate()
        )
        async with open_local_download(spec, options, relay=relay) as download:
            return await watch_progress(download, console)


async def _get_via_node(
    spec: DownloadSpec, state_dir: Path, console: Console | None, err: Console
) -> DownloadResult | None:
    """Hand the download to the running node; None when there is none (or it is not usable)."""
    from swarmget.run import remote

    async with remote.open_local_node(state_dir) as api:  # its Unix socket, never TCP
        if api is None or not await api.alive():
            return None
        node = api.node
        try:
            output = remote.relative_output(node, spec.output)
        except UsageError as exc:
            err.print(f"[yellow]not using the local node[/]: {exc}", highlight=False)
            return None
        download_id = await api.start(remote.create_request(spec, output))
        latest: list[DownloadProgress] = []
        follow = api.follow(download_id, latest.append)
        data = await watch(follow, lambda: latest[-1] if latest else None, console)
    if parse_state(data["state"]) is not DownloadState.DONE:
        raise remote.error_from_json(data.get("error") or {"message": data["state"]})
    return remote.result_from_json(data)


async def _get_with_hub(
    spec: DownloadSpec, options: LocalOptions, how: _Route, console: Console | None
) -> DownloadResult:
    """Join the hub's swarm as a node for the duration of this one download."""
    from swarmget.node.daemon import NodeConfig
    from swarmget.run.node import open_node

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


_SOURCE_SUMMARY = ("id", "state", "received", "claimed", "failures", "ban_reason")


def result_json(result: DownloadResult) -> dict[str, Any]:
    """``get --json``: the user API's result (``node.download_json``), rounded for people,
    with the average rate and a summary of each source."""
    return {
        "ok": True,
        **download_json.result_json(result),
        "elapsed": round(result.elapsed, 3),
        "rate": result.size / result.elapsed if result.elapsed > 0 else None,
        "last_byte_to_done": round(result.last_byte_to_done, 4),
        "sources": [
            {k: v for k, v in download_json.source_json(s).items() if k in _SOURCE_SUMMARY}
            for s in result.sources
        ],
    }


def summary_line(result: DownloadResult) -> str:
    rate = result.size / result.elapsed if result.elapsed > 0 else 0.0
    report = result.verification
    if result.verified:
        checked = ", ".join(result.verified) + " verified"
    elif report.level is Verification.SAMPLED:
        checked = f"size checked, {report.sampled_streams} helper streams sampled"
    elif report.helper_bytes:
        checked = f"size checked, NOT verified: {human_bytes(report.helper_bytes)} from helpers"
    else:
        checked = "size checked"
    resumed = f", resumed from {human_bytes(result.resumed_bytes)}" if result.resumed_bytes else ""
    return (
        f"saved {result.path} ({human_bytes(result.size)}) in {result.elapsed:.1f}s, "
        f"{human_bytes(rate)}/s, {checked}{resumed}"
    )


# --- swarm commands -----------------------------------------------------------------------------


def parse_hub_urls(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--hub`` values (repeated, or comma-separated) → the hub URLs, in the order given,
    without repeats. Raises ``InvalidURL`` for one that is not an http(s) URL."""
    urls = (validate_url(url.strip()) for v in values for url in v.split(",") if url.strip())
    return tuple(dict.fromkeys(url.rstrip("/") for url in urls))


def _secret(secret_file: str | None) -> bytes:
    from swarmget.net.signing import load_secret

    return load_secret(secret_file, env_value=os.environ.get(SECRET_ENV))


def _policy(allow: tuple[str, ...]) -> AddressPolicy:
    words = [w for item in allow for w in item.split(",") if w.strip()]
    private = any(w.strip() == "private" for w in words)
    cidrs = [w for w in words if w.strip() != "private"]
    return AddressPolicy(allow_private=private, allowed_networks=parse_cidrs(cidrs))


def _flags(ctx: click.Context, renames: dict[str, str]) -> dict[str, Any]:
    """The options given on the command line (not defaults), by setting name."""
    out: dict[str, Any] = {}
    for name, value in ctx.params.items():
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            out[renames.get(name, name)] = list(value) if isinstance(value, tuple) else value
    return out


def _settings(ctx: click.Context, section: str, renames: dict[str, str]) -> Any:
    """flags > SWARMGET_* environment > config file > defaults (see ``swarmget.config``)."""
    from swarmget import config

    root = ctx.find_root()
    path = root.params.get("config_path") or config.default_config_path(os.environ)
    return config.resolve(section, _flags(ctx, renames), config_path=path, env=os.environ)


def _fail_start(exc: Exception, what: str) -> NoReturn:
    err = Console(stderr=True)
    if isinstance(exc, OSError):
        err.print(f"[red]error[/]: cannot start the {what}: {exc}", highlight=False)
        sys.exit(EXIT_FAILED)
    err.print(f"[red]error[/]: {exc}", highlight=False)
    sys.exit(EXIT_USAGE if isinstance(exc, UsageError | ValueError) else EXIT_FAILED)


def _announce(info: dict[str, Any]) -> None:
    click.echo(json.dumps(info))


NODE_RENAMES = {"hubs": "hub", "allow": "allow_private_origins", "relay_url": "relay"}


@main.command()
@click.option(
    "--hub",
    "hubs",
    multiple=True,
    help="Hub URL, e.g. http://10.0.0.1:7400; repeat, or separate with commas, for "
    "replicated hubs (one database): the node fails over to the next when one dies.",
)
@click.option("--listen", help="Peer API address (default 127.0.0.1).")
@click.option("--port", type=int, help=f"Peer API port (default {DEFAULT_PEER_PORT}; 0: any).")
@click.option("--api-port", type=int, help=f"Local API port (default {DEFAULT_API_PORT}).")
@click.option("--secret-file", help=f"Swarm secret file (or ${SECRET_ENV}).")
@click.option("--node-id", help="Default: made up once and kept in the state directory.")
@click.option("--group", help="Explicit group name (default: by address prefix).")
@click.option("--slots", type=int, help="Streams served at once (default 3).")
@click.option("--connections", type=int, help="Own origin connections (default 4).")
@click.option("--rate-limit", help="Cap on helper traffic, bytes/s (e.g. 5M).")
@click.option("--daily-quota", help="Helper data per UTC day (e.g. 2G).")
@click.option(
    "--allow-private-origins",
    "allow",
    multiple=True,
    help="CIDRs helpers may fetch from despite the SSRF guard ('private' for RFC 1918).",
)
@click.option("--state-dir", type=click.Path(path_type=Path), help=f"({DEFAULT_STATE_DIR})")
@click.option("--download-dir", type=click.Path(path_type=Path), help="(./downloads)")
@click.option("--stall-timeout", type=float, help="Seconds without data (default 15).")
@click.option("--heartbeat-interval", type=float)
@click.option("--relay", "relay_url", help="Fetch every download through this relay.")
@click.option("--log-format", type=click.Choice(["text", "json"]))
@click.option("--max-size", help="Refuse downloads larger than this up front (e.g. 50G).")
@click.pass_context
def node(ctx: click.Context, /, **_: Any) -> None:
    """Run a node: help others download, and download with their help.

    Every option can also come from the environment (SWARMGET_NODE_SLOTS=4 ...) or the
    [node] table of the config file; see `swarmget config show node`.
    """
    from swarmget.logs import setup_logging
    from swarmget.node.daemon import NodeConfig, NodeHooks
    from swarmget.run.node import run_node

    hooks = ctx.find_object(NodeHooks) or NodeHooks()
    try:
        resolved = _settings(ctx, "node", NODE_RENAMES)
        v = resolved.values
        setup_logging(v.log_format)
        config = NodeConfig(
            secret=_secret(_path_or_none(resolved.secret_file)),
            state_dir=v.state_dir,
            download_dir=v.download_dir,
            node_id=v.node_id,
            listen_host=v.listen,
            listen_port=v.port,
            api_port=v.api_port,
            hub_urls=parse_hub_urls(tuple(v.hub)),
            group=v.group,
            slots=v.slots,
            connections=v.connections,
            rate_limit=v.rate_limit,
            daily_quota=v.daily_quota,
            origin_policy=_policy(tuple(v.allow_private_origins)),
            stall_timeout=v.stall_timeout,
            heartbeat_interval=v.heartbeat_interval,
            relay_url=validate_url(v.relay) if v.relay else None,
            max_size=v.max_size,
            listen_limits=_listen_limits(v),
            chunk_filter=hooks.chunk_filter,
        )
        asyncio.run(run_node(config, announce=_announce))
    except (SwarmgetError, ValueError, OSError) as exc:
        _fail_start(exc, "node")


def _listen_limits(v: Any) -> ListenLimits:
    """The listening limits of the [node], [hub] or [relay] settings."""
    return ListenLimits(
        head_timeout=v.head_timeout,
        body_timeout=v.body_timeout,
        per_address=v.connections_per_address,
    )


def _path_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)


@main.command()
@click.option("--host", help="Listen address (default 0.0.0.0).")
@click.option("--port", type=int, help=f"(default {DEFAULT_HUB_PORT})")
@click.option("--db", help=f"SQLAlchemy async URL (default {DEFAULT_DB_URL}).")
@click.option("--secret-file", help=f"Swarm secret file (or ${SECRET_ENV}).")
@click.option("--ttl", type=float, help=f"Seconds a silent node stays listed ({DEFAULT_TTL}).")
@click.option("--group-prefix", type=int, help="IPv4 prefix bits that make a group (16).")
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="A reverse proxy (CIDR) whose X-Forwarded-For is believed; repeat, or commas.",
)
@click.option("--trust-proxy", is_flag=True, default=None, hidden=True)
@click.option(
    "--group-cidr",
    multiple=True,
    help="NAME=CIDR: nodes in CIDR may declare --group NAME (repeatable); other declared "
    "groups are refused.",
)
@click.option("--log-format", type=click.Choice(["text", "json"]))
@click.pass_context
def hub(ctx: click.Context, /, **_: Any) -> None:
    """Run the hub: the registry of live nodes (it never downloads anything).

    Several hubs given the same database (--db postgresql+asyncpg://...) are replicas of one
    registry: give nodes all of them (--hub A --hub B) and they fail over when one dies.
    """
    from swarmget.core.groups import GroupPolicy
    from swarmget.hub.service import run_hub
    from swarmget.logs import setup_logging

    try:
        resolved = _settings(ctx, "hub", {})
        v = resolved.values
        setup_logging(v.log_format)
        secret = _secret(_path_or_none(resolved.secret_file))
        asyncio.run(
            run_hub(
                v.host, v.port, v.db, secret, v.ttl, v.group_prefix,
                parse_cidrs(v.trusted_proxies), limits=_listen_limits(v),
                group_policy=GroupPolicy.parse(v.group_cidr),
                on_listening=lambda url: _announce({"url": url}),
            )
        )  # fmt: skip
    except (SwarmgetError, ValueError, OSError) as exc:
        _fail_start(exc, "hub")


@main.command()
@click.option("--host", help="Listen address (default 0.0.0.0).")
@click.option("--port", type=int, help="(default 7410)")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="(./relay-cache)")
@click.option("--budget", help="Cache size limit (default 10G).")
@click.option("--db", help="SQLAlchemy async URL (default: SQLite in the cache dir).")
@click.option("--secret-file", help=f"Swarm secret file (or ${SECRET_ENV}).")
@click.option("--piece-size", help="Manifest piece size (default 1M).")
@click.option("--allow-private-origins", "allow", multiple=True, help="CIDRs, or 'private'.")
@click.option("--max-size", help="Refuse to fetch files larger than this (e.g. 50G).")
@click.pass_context
def relay(ctx: click.Context, /, **_: Any) -> None:
    """Run a relay/cache: fetch a URL once, serve it in pieces with per-piece hashes."""
    from swarmget.relay.run import RelayConfig, run_relay

    try:
        resolved = _settings(ctx, "relay", {"allow": "allow_private_origins"})
        v = resolved.values
        config = RelayConfig(
            secret=_secret(_path_or_none(resolved.secret_file)),
            cache_dir=v.cache_dir,
            budget=v.budget,
            db_url=v.db,
            host=v.host,
            port=v.port,
            piece_size=v.piece_size,
            origin_policy=_policy(tuple(v.allow_private_origins)),
            max_size=v.max_size,
            listen_limits=_listen_limits(v),
        )
        asyncio.run(run_relay(config, lambda url: _announce({"url": url})))
    except (SwarmgetError, ValueError, OSError) as exc:
        _fail_start(exc, "relay")


@main.group("config")
def config_group() -> None:
    """The effective configuration."""


@config_group.command("show")
@click.argument("section", type=click.Choice(["node", "hub", "relay"]), default="node")
@click.pass_context
def config_show(ctx: click.Context, section: str) -> None:
    """Print every setting of SECTION, its value and where it came from (secrets redacted)."""
    from swarmget import config

    try:
        root = ctx.find_root()
        path = root.params.get("config_path") or config.default_config_path(os.environ)
        resolved = config.resolve(section, {}, config_path=path, env=os.environ)
    except SwarmgetError as exc:
        _fail_start(exc, "configuration")
    table = Table(title=f"swarmget {section} configuration (file: {path or 'none'})")
    for col in ("setting", "value", "source"):
        table.add_column(col)
    for key, value, source in config.render(resolved):
        table.add_row(key, value, source)
    Console().print(table)


# --- operator commands -------------------------------------------------------------------------


def _node_api_call(state_dir: Path, path: str, method: str = "GET") -> Any:
    """``method path`` on the local node's API; exits with a clear message if none runs."""
    from swarmget.run import remote

    async def call() -> Any:
        async with remote.open_local_node(state_dir) as api:  # its Unix socket, never TCP
            if api is None:
                raise UsageError(f"no running node in {state_dir} (start `swarmget node`)")
            status, data = await api.call(method, path)
        if status != 200:
            raise DownloadError(f"the node answered {status}: {data}")
        return data

    try:
        return asyncio.run(call())
    except SwarmgetError as exc:
        _fail_start(exc, "")


STATE_DIR_OPTION = click.option(
    "--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE_DIR, show_default=True
)


@main.command()
@STATE_DIR_OPTION
@click.option("--json", "as_json", is_flag=True)
def peers(state_dir: Path, as_json: bool) -> None:
    """The live nodes of this node's group, with their limits and health."""
    data = _node_api_call(state_dir, "/v1/peers")
    if as_json:
        click.echo(json.dumps(data))
        return
    table = Table(title="peers (from the hub)")
    for col in ("node", "address", "slots", "rate limit", "quota left", "served", "seen", "ver"):
        table.add_column(col)
    now = time.time()
    for p in data["peers"]:
        stats = p.get("stats") or {}
        limit = stats.get("rate_limit")
        quota = stats.get("quota_left", p.get("quota_left"))
        table.add_row(
            p["node_id"],
            p["address"],
            f"{stats.get('active_streams', 0)}/{p['slots']}",
            "-" if not limit else f"{human_bytes(limit)}/s",
            "-" if quota is None else human_bytes(quota),
            human_bytes(stats.get("bytes_served", 0)),
            f"{max(0.0, now - p.get('last_seen', now)):.0f}s ago",
            p.get("version", "?"),
        )
    Console().print(table)


@main.command()
@STATE_DIR_OPTION
@click.option("--json", "as_json", is_flag=True)
def status(state_dir: Path, as_json: bool) -> None:
    """This node: its downloads, the streams it serves, its quota left."""
    node_status = _node_api_call(state_dir, "/v1/status")
    downloads = _node_api_call(state_dir, "/v1/downloads")["downloads"]
    if as_json:
        click.echo(json.dumps({"node": node_status, "downloads": downloads}))
        return
    helper = node_status["helper"]
    hub = node_status.get("hub") or {}
    quota = helper.get("quota_left")
    console = Console()
    console.print(
        f"node [bold]{node_status['node_id']}[/] {node_status['version']} at "
        f"{node_status['peer_url']}; hub: "
        + ("registered" if hub.get("registered") else f"not registered ({hub.get('error')})")
    )
    console.print(
        f"helping: {helper['active_streams']}/{helper['slots']} streams now, "
        f"{helper['streams_served']} served, {human_bytes(helper['bytes_served'])}; quota left: "
        + ("unlimited" if quota is None else human_bytes(quota))
    )
    table = Table(title="downloads")
    for col in ("id", "state", "progress", "url"):
        table.add_column(col)
    for d in downloads:
        p = d.get("progress") or {}
        done = f"{100 * p['done'] / p['size']:.0f}%" if p.get("size") else "-"
        table.add_row(d["id"], d["state"], done, d["url"])
    console.print(table)


@main.command()
@STATE_DIR_OPTION
def portal(state_dir: Path) -> None:
    """Print a one-time login link to the local node's portal (valid once, for 5 minutes)."""
    click.echo(_node_api_call(state_dir, "/v1/portal-link", "POST")["url"])


@main.command()
@click.option("--url", help="Also check that this origin is reachable and serves ranges.")
@click.option("--hub", "hubs", multiple=True, help="Hub(s) to check (default: configured).")
@STATE_DIR_OPTION
@click.pass_context
def doctor(ctx: click.Context, url: str | None, hubs: tuple[str, ...], state_dir: Path) -> None:
    """Check the configuration, the secret, the hubs (reachability, signature, clock), the
    local node and optionally an origin; say in plain words what is wrong."""
    from swarmget import config
    from swarmget import doctor as checks

    path = ctx.find_root().params.get("config_path") or config.default_config_path(os.environ)

    async def run() -> list[checks.Check]:
        import aiohttp

        found, configured_hubs, secret_file, _ = checks.check_config(path)
        secret_check, secret = checks.check_secret(secret_file)
        out = [found, secret_check]
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for hub_url in parse_hub_urls(hubs) or tuple(configured_hubs):
                out += await checks.check_hub(session, hub_url, secret)
            out.append(await checks.check_node(session, state_dir))
            if url:
                out.append(await checks.check_origin(session, validate_url(url)))
        return out

    results = asyncio.run(run())
    console = Console()
    for c in results:
        mark = "[green]✓[/]" if c.ok else "[red]✗[/]"
        console.print(f"{mark} {c.name}: {c.detail}", highlight=False)
        if not c.ok and c.hint:
            console.print(f"    → {c.hint}", highlight=False)
    sys.exit(0 if all(c.ok for c in results) else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
