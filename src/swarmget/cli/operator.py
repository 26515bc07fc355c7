"""The operator's commands, on the local node's API: ``swarmget peers``, ``status``,
``portal``; and ``swarmget doctor``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swarmget.cli.app import client_settings, fail_start, main
from swarmget.core.errors import SwarmgetError, UsageError
from swarmget.core.units import human_bytes
from swarmget.node.hub_standing import standing_words


def _node_api_call(state_dir: Path, path: str, method: str = "GET") -> Any:
    """``method path`` on the local node's API; exits with a clear message if none runs."""
    from swarmget.run import remote

    async def call() -> Any:
        async with remote.open_local_node(state_dir) as api:  # its Unix socket, never TCP
            if api is None:
                raise UsageError(f"no running node in {state_dir} (start `swarmget node`)")
            status, data = await api.call(method, path)
        if status != 200:  # the error its code names (a hub's trouble is a HubError ...)
            raise remote.error_answer(status, data, f"the node answered {status}")
        return data

    try:
        return asyncio.run(call())
    except SwarmgetError as exc:
        fail_start(exc, "")


STATE_DIR_OPTION = click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="The node's state directory (default: $SWARMGET_NODE_STATE_DIR, [node] state_dir, "
    "$SWARMGET_STATE_DIR, ~/.local/state/swarmget, else /var/lib/swarmget/node if a node "
    "runs there).",
)


def _node_dir(state_dir: Path | None) -> Path:
    """The state directory of the node this command talks to (``swarmget.locations``)."""
    return client_settings(click.get_current_context(), state_dir).state_dir


@main.command()
@STATE_DIR_OPTION
@click.option("--json", "as_json", is_flag=True)
def peers(state_dir: Path | None, as_json: bool) -> None:
    """The live nodes of this node's group, with their limits and health."""
    data = _node_api_call(_node_dir(state_dir), "/v1/peers")
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
def status(state_dir: Path | None, as_json: bool) -> None:
    """This node: its downloads, the streams it serves, its quota left."""
    state_dir = _node_dir(state_dir)
    node_status = _node_api_call(state_dir, "/v1/status")
    downloads = _node_api_call(state_dir, "/v1/downloads")["downloads"]
    if as_json:
        click.echo(json.dumps({"node": node_status, "downloads": downloads}))
        return
    helper = node_status["helper"]
    quota = helper.get("quota_left")
    console = Console()
    console.print(
        f"node [bold]{node_status['node_id']}[/] {node_status['version']} at "
        f"{node_status['peer_url']}; hub: {hub_words(node_status.get('hub'))}"
    )
    console.print(
        f"helping: {helper['active_streams']}/{helper['slots']} streams now, "
        f"{helper['streams_served']} served, {human_bytes(helper['bytes_served'])}; quota left: "
        + ("unlimited" if quota is None else human_bytes(quota))
    )
    traffic = node_status.get("traffic")
    if traffic:
        for line in traffic_lines(traffic):
            console.print(line)
    table = Table(title="downloads")
    for col in ("id", "state", "progress", "bytes by source", "holders", "faster than alone"):
        table.add_column(col)
    table.add_column("url")
    for d in downloads:
        p = d.get("progress") or {}
        done = f"{100 * p['done'] / p['size']:.0f}%" if p.get("size") else "-"
        cells = (_sources_cell(d), _holders_cell(d), _speedup_cell(d.get("speedup")))
        table.add_row(d["id"], d["state"], done, *cells, d["url"])
    console.print(table)


def hub_words(hub: dict[str, Any] | None) -> str:
    """The node's standing with its hub (its status's ``hub``), in words for rich."""
    return escape(standing_words(hub))


def traffic_lines(traffic: dict[str, Any]) -> list[str]:
    """The node's saved figures, each named for what it counts: bytes from peers (helpers
    and LAN holders) spared this node's own origin link; the group's saved origin bytes are
    LAN bytes served plus LAN bytes received (``core.byte_sources``: a helper's bytes crossed
    the helper's origin link and are not among them)."""
    lines = [
        f"own origin link spared (bytes from helpers and LAN holders): "
        f"{human_bytes(traffic['saved_today'])} today, {human_bytes(traffic['saved_total'])} in all"
    ]
    if traffic.get("group_saved_today") is None:  # an older node
        return lines
    today = (traffic.get("days") or [{}])[-1]
    lines.append(
        f"origin bytes saved for the group: {human_bytes(traffic['group_saved_today'])} today "
        f"({traffic.get('today', '?')} UTC: {human_bytes(today.get('lan_served', 0))} served "
        f"to LAN peers + {human_bytes(today.get('lan_received', 0))} from LAN holders), "
        f"{human_bytes(traffic['group_saved_total'])} in all"
    )
    return lines


def _sources_cell(d: dict[str, Any]) -> str:
    """The download's bytes so far per kind of source ("-" from an older node)."""
    from swarmget.web.views.sharing import by_source, byte_facts

    facts = byte_facts(by_source(d))
    return "\n".join(f"{f.text} {f.label}" for f in facts) if facts else "-"


def _holders_cell(d: dict[str, Any]) -> str:
    """How LAN holders' bytes were checked, and who was banned ("-": no sharing)."""
    from swarmget.web.views.sharing import sharing_view

    view = sharing_view(d)
    if view is None:
        return "-"
    lines = [view.holder_check, *(f"banned: {h}" for h in view.banned), *view.notes]
    return "\n".join(lines)


def _speedup_cell(speedup: dict[str, Any] | None) -> str:
    """A finished download's estimate (``core.savings``); "-" without one."""
    if not speedup:
        return "-"
    if speedup.get("factor") is None:
        return f"- ({speedup.get('missing')})"
    return f"~{speedup['factor']:.1f}x (estimate)"


@main.command()
@STATE_DIR_OPTION
def portal(state_dir: Path | None) -> None:
    """Print a one-time login link to the local node's portal (valid once, for 5 minutes)."""
    click.echo(_node_api_call(_node_dir(state_dir), "/v1/portal-link", "POST")["url"])


@main.command()
@click.argument("download_id", metavar="ID")
@STATE_DIR_OPTION
def cancel(download_id: str, state_dir: Path | None) -> None:
    """Cancel the node's download ID (its id in `swarmget status`); the partial file is kept."""
    _node_api_call(_node_dir(state_dir), f"/v1/downloads/{quote(download_id, safe='')}", "DELETE")
    click.echo(f"cancelled {download_id}")


@main.command()
@click.option("--url", help="Also check that this origin is reachable and serves ranges.")
@click.option("--hub", "hubs", multiple=True, help="Hub(s) to check (default: configured).")
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path),
    help="Swarm secret file (default: $SWARMGET_SECRET_FILE, the config's secret_file).",
)
@STATE_DIR_OPTION
@click.pass_context
def doctor(
    ctx: click.Context,
    url: str | None,
    hubs: tuple[str, ...],
    secret_file: Path | None,
    state_dir: Path | None,
) -> None:
    """Check the configuration, the secret, the hubs (reachability, signature, clock), the
    local node and its hub, and optionally an origin; say in plain words what is wrong."""
    from swarmget import config
    from swarmget import doctor as checks

    path = ctx.find_root().params.get("config_path") or config.default_config_path(os.environ)
    asked = checks.Asked(
        hubs=hubs, secret_file=secret_file, state_dir=_node_dir(state_dir), url=url
    )
    try:
        results = asyncio.run(checks.run_checks(path, asked))
    except SwarmgetError as exc:  # a bad --hub or --url
        fail_start(exc, "checks")
    console = Console()
    for c in results:
        mark = "[green]✓[/]" if c.ok else "[red]✗[/]"
        console.print(f"{mark} {c.name}: {c.detail}", highlight=False)
        if not c.ok and c.hint:
            console.print(f"    → {c.hint}", highlight=False)
    sys.exit(0 if all(c.ok for c in results) else 1)
