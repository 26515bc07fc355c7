"""The services' commands: ``swarmget node``, ``hub``, ``relay`` and ``config show``.

Each takes its settings from flags > ``SWARMGET_*`` environment > config file > defaults
(``swarmget.config``), starts its service from ``swarmget.run`` (or the hub's and relay's
own) and prints one JSON line with its URLs once it listens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource
from rich.console import Console
from rich.table import Table

from swarmget.cli.app import EXIT_FAILED, EXIT_USAGE, announce, fail_start, first_error, main
from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.errors import SwarmgetError, UsageError
from swarmget.core.listening import ListenLimits
from swarmget.core.urls import parse_hub_urls, validate_url
from swarmget.defaults import (
    DEFAULT_API_PORT,
    DEFAULT_DB_URL,
    DEFAULT_HUB_PORT,
    DEFAULT_PEER_PORT,
    DEFAULT_PORTAL_PORT,
    DEFAULT_STATE_DIR,
    DEFAULT_TTL,
    SECRET_ENV,
)
from swarmget.run.secrets import swarm_secret


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


NODE_RENAMES = {
    "hubs": "hub",
    "allow": "allow_private_origins",
    "relay_url": "relay",
    "portal_allowed_host": "portal_allowed_hosts",
    "portal_trusted_proxy": "portal_trusted_proxies",
}


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
    "--cache-budget",
    help="Bytes of finished downloads kept and served to LAN peers, least recently used "
    "evicted first (default 4G: a few large files, small next to a disk; files in the "
    "download directory are only withdrawn, never deleted). 0 disables sharing: nothing "
    "served, nothing announced. LAN serving uses --rate-limit and --slots and its own "
    "--lan-daily-quota, never --daily-quota (the origin allowance).",
)
@click.option(
    "--lan-daily-quota",
    help="Bytes served to LAN peers per UTC day from held files (e.g. 20G, or 'unlimited'; "
    "default: as many as --daily-quota, unlimited without one). Counted apart from "
    "--daily-quota: LAN bytes never use the origin allowance. When used up, requesters "
    "take those bytes from other holders or the origin.",
)
@click.option(
    "--share-downloads",
    is_flag=True,
    default=None,
    help="Fetch once per LAN (experimental, needs a hub): a download of content that other "
    "nodes of the group fetch or hold at the same time joins them through the hub's "
    "content index; every byte crosses the origin links once and the rest comes over the "
    "LAN, checked like helpers' bytes. Off by default.",
)
@click.option(
    "--share-output",
    is_flag=True,
    default=None,
    help="Also share finished files saved outside the node's directories (default: only "
    "files in its download and cache directories are ever served).",
)
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
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Least severe level logged (default info).",
)
@click.option("--max-size", help="Refuse downloads larger than this up front (e.g. 50G).")
@click.option(
    "--api-group-access",
    is_flag=True,
    default=None,
    help="Let the state directory's group use this node (status, get ...): for a node run "
    "as its own user by systemd; the directory becomes 0750, its token 0640.",
)
@click.option(
    "--portal-listen",
    help="Also serve the web portal (only the portal) on this address, e.g. 0.0.0.0 "
    "(default: none, the portal answers on 127.0.0.1 at the API port only).",
)
@click.option("--portal-port", type=int, help=f"Its port (default {DEFAULT_PORTAL_PORT}).")
@click.option("--portal-tls-cert", type=click.Path(path_type=Path), help="PEM certificate chain.")
@click.option("--portal-tls-key", type=click.Path(path_type=Path), help="PEM private key.")
@click.option(
    "--portal-allowed-host",
    multiple=True,
    help="A Host name the portal answers to besides its own: NAME (any port) or NAME:PORT; "
    "repeat. For an SSH tunnel (localhost) or a reverse proxy's public name.",
)
@click.option(
    "--portal-trusted-proxy",
    multiple=True,
    help="CIDR of a reverse proxy whose X-Forwarded-Host/-Proto are believed; repeat.",
)
@click.pass_context
def node(ctx: click.Context, /, **_: Any) -> None:
    """Run a node: help others download, and download with their help.

    Every option can also come from the environment (SWARMGET_NODE_SLOTS=4 ...) or the
    [node] table of the config file; see `swarmget config show node`.
    """
    from swarmget.logs import setup_logging
    from swarmget.node.daemon import NodeConfig, NodeHooks
    from swarmget.run.node import run_node
    from swarmget.web.remote import PortalAccess

    hooks = ctx.find_object(NodeHooks) or NodeHooks()
    try:
        resolved = _settings(ctx, "node", NODE_RENAMES)
        v = resolved.values
        setup_logging(v.log_format, v.log_level)
        config = NodeConfig(
            secret=swarm_secret(_path_or_none(resolved.secret_file)),
            state_dir=v.state_dir,
            download_dir=v.download_dir,
            node_id=v.node_id,
            listen_host=v.listen,
            listen_port=v.port,
            api_port=v.api_port,
            hub_urls=parse_hub_urls(tuple(v.hub)),
            spread_hubs=v.spread_hubs,
            group=v.group,
            slots=v.slots,
            connections=v.connections,
            rate_limit=v.rate_limit,
            daily_quota=v.daily_quota,
            lan_daily_quota=v.lan_allowance(),
            origin_policy=_policy(tuple(v.allow_private_origins)),
            stall_timeout=v.stall_timeout,
            heartbeat_interval=v.heartbeat_interval,
            relay_url=validate_url(v.relay) if v.relay else None,
            max_size=v.max_size,
            listen_limits=_listen_limits(v),
            chunk_filter=hooks.chunk_filter,
            api_group_access=v.api_group_access,
            cache_budget=v.cache_budget,
            share_output=v.share_output,
            share_downloads=v.share_downloads,
        )
        access = PortalAccess.from_settings(
            listen_host=v.portal_listen,
            listen_port=v.portal_port,
            tls_cert=v.portal_tls_cert,
            tls_key=v.portal_tls_key,
            hosts=tuple(v.portal_allowed_hosts),
            proxies=tuple(v.portal_trusted_proxies),
        )
        asyncio.run(run_node(config, announce=announce, access=access))
    except* (SwarmgetError, ValueError, OSError) as group:
        _fail(_one(group), "node")


def _one(group: BaseExceptionGroup[Exception]) -> Exception:
    """The error a service failed with, out of the group ``except*`` gathered it in (its
    task group's, or one made for a plain exception)."""
    found = first_error(group)
    assert isinstance(found, Exception)
    return found


def _fail(exc: Exception, what: str) -> NoReturn:
    """A service could not start (or stopped on an error): with JSON logs, say it as a JSON
    log line (stderr is all JSON then), else as the CLI says errors."""
    from swarmget.logs import json_logging

    if not json_logging():
        fail_start(exc, what)
    logging.getLogger("swarmget").error("cannot start the %s: %s", what, exc)
    usage = isinstance(exc, UsageError | ValueError) and not isinstance(exc, OSError)
    sys.exit(EXIT_USAGE if usage else EXIT_FAILED)


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
@click.option(
    "--peers-limit", type=int, help="Peers one answer lists, 1-64 (32): a requester uses no more."
)
@click.option("--log-format", type=click.Choice(["text", "json"]))
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Least severe level logged (default info).",
)
@click.pass_context
def hub(ctx: click.Context, /, **_: Any) -> None:
    """Run the hub: the registry of live nodes (it never downloads anything).

    Several hubs given the same database (--db postgresql+asyncpg://...) are replicas of one
    registry: give nodes all of them (--hub A --hub B) and they fail over when one dies.
    """
    from swarmget.core.groups import GroupPolicy
    from swarmget.logs import setup_logging

    try:
        resolved = _settings(ctx, "hub", {})
        v = resolved.values
        _require_database(v.db, "hub")
        from swarmget.hub.service import run_hub

        setup_logging(v.log_format, v.log_level)
        secret = swarm_secret(_path_or_none(resolved.secret_file))
        asyncio.run(
            run_hub(
                v.host, v.port, v.db, secret, v.ttl, v.group_prefix,
                parse_cidrs(v.trusted_proxies), limits=_listen_limits(v),
                group_policy=GroupPolicy.parse(v.group_cidr), peers_limit=v.peers_limit,
                on_listening=lambda url: announce({"url": url}),
            )
        )  # fmt: skip
    except* (SwarmgetError, ValueError, OSError) as group:
        _fail(_one(group), "hub")


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
@click.option("--log-format", type=click.Choice(["text", "json"]))
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Least severe level logged (default info).",
)
@click.pass_context
def relay(ctx: click.Context, /, **_: Any) -> None:
    """Run a relay/cache: fetch a URL once, serve it in pieces with per-piece hashes."""
    try:
        resolved = _settings(ctx, "relay", {"allow": "allow_private_origins"})
        v = resolved.values
        _require_database(v.db, "relay")
        from swarmget.logs import setup_logging
        from swarmget.relay.run import RelayConfig, run_relay

        setup_logging(v.log_format, v.log_level)

        config = RelayConfig(
            secret=swarm_secret(_path_or_none(resolved.secret_file)),
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
        asyncio.run(run_relay(config, lambda url: announce({"url": url})))
    except* (SwarmgetError, ValueError, OSError) as group:
        _fail(_one(group), "relay")


def _require_database(db_url: str | None, service: str) -> None:
    """The hub's or relay's database modules are installed (``MissingExtra`` otherwise),
    and asyncpg too for a PostgreSQL URL."""
    from swarmget.extras import require_extra

    require_extra(service)
    if db_url and db_url.startswith("postgresql"):
        require_extra("postgres", service=service)


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
        fail_start(exc, "configuration")
    table = Table(title=f"swarmget {section} configuration (file: {path or 'none'})")
    for col in ("setting", "value", "source"):
        table.add_column(col)
    for key, value, source in config.render(resolved):
        table.add_row(key, value, source)
    Console().print(table)
