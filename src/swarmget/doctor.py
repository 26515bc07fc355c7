"""``swarmget doctor``: find out, in plain words, what keeps a node from working.

Each check returns a ``Check``: what was checked, whether it is fine, what was seen, and what
to do about it. Checks: the configuration, the swarm secret, every hub (reachable; does it
accept our signature — a wrong secret and a skewed clock are told apart; how far its clock is
from ours), the local node daemon, and optionally an origin URL (reachable, size known,
byte ranges served, validator present).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import aiohttp

from swarmget.config import resolve
from swarmget.core.auth import DEFAULT_WINDOW
from swarmget.core.errors import ClockSkew, SwarmgetError
from swarmget.core.lifecycle import HubStanding
from swarmget.core.urls import parse_hub_urls, validate_url
from swarmget.net.origin import OriginClient
from swarmget.net.plain import plain_words
from swarmget.net.signing import NodeIdentity, load_secret, secret_file_exposure, signed_headers
from swarmget.node.hub_standing import standing_of


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def check_config(config_path: Path | None) -> tuple[Check, list[str], Path | None, Path]:
    """The config check, and (if it passed) the hub URLs, secret file and state dir."""
    try:
        resolved = resolve("node", {}, config_path=config_path, env=os.environ)
    except SwarmgetError as exc:
        return Check("configuration", False, str(exc), "fix the key named above"), [], None, Path()
    v = resolved.values
    where = str(config_path) if config_path else "no file (environment and defaults)"
    hubs = list(getattr(v, "hub", []))
    state_dir = Path(getattr(v, "state_dir", "."))
    return Check("configuration", True, f"valid ({where})"), hubs, resolved.secret_file, state_dir


def check_secret(secret_file: Path | None) -> tuple[Check, bytes | None]:
    try:
        secret = load_secret(secret_file, env_value=os.environ.get("SWARMGET_SECRET"))
    except SwarmgetError as exc:
        hint = "create one (e.g. `head -c 32 /dev/urandom | base64 > secret`), same on every node"
        return Check("swarm secret", False, str(exc), hint), None
    source = f"file {secret_file}" if secret_file else "environment SWARMGET_SECRET"
    exposure = None
    if secret_file is not None:
        with contextlib.suppress(OSError):  # it was just read: gone since is not our concern
            exposure = secret_file_exposure(os.stat(secret_file).st_mode)
    if exposure is not None:
        detail = f"{len(secret)} bytes from {source}, which is {exposure}"
        hint = f"chmod 600 {secret_file}: whoever reads it can sign as any node of the swarm"
        return Check("swarm secret", False, detail, hint), secret
    return Check("swarm secret", True, f"{len(secret)} bytes from {source}"), secret


async def check_hub(session: aiohttp.ClientSession, hub: str, secret: bytes | None) -> list[Check]:
    checks: list[Check] = []
    try:
        async with session.get(f"{hub}/v1/health") as resp:
            health_ok = resp.status == 200
            skew = _skew(resp.headers.get("Date"))
    except (aiohttp.ClientError, OSError) as exc:
        hint = "is the hub running? is its port open in the firewall (default 7400)?"
        return [Check(f"hub {hub}", False, f"unreachable: {plain_words(exc)}", hint)]
    checks.append(
        Check(f"hub {hub}", health_ok, "answers /v1/health" if health_ok else "odd answer")
    )
    if skew is not None:
        ok = abs(skew) < DEFAULT_WINDOW / 2
        hint = "" if ok else "synchronise clocks (NTP): signatures allow ±30 s"
        checks.append(Check("clock skew vs hub", ok, f"{skew:+.1f} s", hint))
    if secret is not None:
        checks.append(await _check_auth(session, hub, secret))
    return checks


async def _check_auth(session: aiohttp.ClientSession, hub: str, secret: bytes) -> Check:
    url = f"{hub}/v1/peers"
    headers = signed_headers(secret, NodeIdentity.generate(), "GET", url)  # a one-off id
    try:
        async with session.get(url, headers=headers) as resp:
            status, body = resp.status, await resp.text()
    except (aiohttp.ClientError, OSError) as exc:
        return Check("hub accepts our signature", False, plain_words(exc))
    if status in (200, 404):  # 404: "you are not registered" — but the signature was good
        return Check("hub accepts our signature", True, "the swarm secret matches")
    if _error_code(body) == ClockSkew.code:
        return Check("hub accepts our signature", False, body[:200], "synchronise clocks (NTP)")
    hint = "every node and hub must use the same secret file"
    return Check("hub accepts our signature", False, f"{status}: {body[:200]}", hint)


def _error_code(body: str) -> str | None:
    """The ``code`` of a swarmget JSON error body, if it is one."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) else None


def _skew(date_header: str | None) -> float | None:
    if not date_header:
        return None
    try:
        return parsedate_to_datetime(date_header).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


async def check_node(session: aiohttp.ClientSession, state_dir: Path) -> list[Check]:
    """The local node (does it answer on its socket?) and its hub (is it registered?)."""
    from swarmget.run.remote import open_local_node

    try:
        async with open_local_node(state_dir) as api:
            if api is None:
                hint = "start it with `swarmget node` (or point --state-dir at its state directory)"
                return [Check("local node", False, f"no running node found in {state_dir}", hint)]
            if not await api.alive():
                return [Check("local node", False, "its API socket does not answer", "restart it")]
            node = Check("local node", True, f"running, portal at {api.node.api_url}/portal/")
            _, status = await api.call("GET", "/v1/status")
    except SwarmgetError as exc:
        hint = "only its owner may write the state directory"
        return [Check("local node", False, str(exc), hint)]
    return [node, node_hub_check(status.get("hub") if isinstance(status, dict) else None)]


def node_hub_check(hub: dict[str, object] | None) -> Check:
    """The running node's hub, from its ``/v1/status``."""
    if not hub:
        hint = "set [node] hub in the config file (or --hub) and restart the node"
        return Check("node's hub", False, "the node runs without a hub: it downloads alone", hint)
    where = hub.get("hub_url") or "its hub"
    if hub.get("registered"):
        return Check("node's hub", True, f"registered with {where}")
    if standing_of(hub) is HubStanding.REGISTERING:
        detail = f"registering with {where}: its first attempt has not ended yet"
        return Check("node's hub", False, detail, "run `swarmget doctor` again in a few seconds")
    hint = "see the hub checks above; `journalctl -u swarmget-node` on this host"
    return Check("node's hub", False, f"not registered with {where}: {hub.get('error')}", hint)


async def check_origin(session: aiohttp.ClientSession, url: str) -> Check:
    try:
        info = await OriginClient(session).probe(url)
    except SwarmgetError as exc:
        return Check(f"origin {url}", False, str(exc), "check the URL and this host's internet")
    if info.size is None or not info.accepts_ranges:
        detail = "reachable, but it does not serve byte ranges (or hides the size)"
        return Check(f"origin {url}", False, detail, "only one stream is possible: no swarm")
    validator = "a strong ETag" if info.validator and info.validator.etag else "Last-Modified"
    if info.validator is None:
        validator = "no validator (changes cannot be detected)"
    detail = f"reachable, {info.size} bytes, serves byte ranges, {validator}"
    return Check(f"origin {url}", True, detail)


@dataclass(frozen=True, kw_only=True)
class Asked:
    """What ``swarmget doctor`` was asked to check beyond the configuration."""

    hubs: tuple[str, ...] = ()  # --hub: instead of the configured ones
    secret_file: Path | None = None  # --secret-file: instead of the configured one
    state_dir: Path  # the local node's (``swarmget.locations``)
    url: str | None = None  # an origin to try


async def run_checks(config_path: Path | None, asked: Asked) -> list[Check]:
    """Every check, in the order ``swarmget doctor`` prints them: the config file, the
    secret, each hub (``--hub``, else the configured ones), the local node and the hub it
    uses, and the origin when asked. Raises ``UsageError`` for a bad ``--hub`` or URL."""
    hubs = parse_hub_urls(asked.hubs)
    url = validate_url(asked.url) if asked.url else None
    found, configured_hubs, secret_file, _ = check_config(config_path)
    secret_check, secret = check_secret(asked.secret_file or secret_file)
    out = [found, secret_check]
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for hub_url in hubs or tuple(configured_hubs):
            out += await check_hub(session, hub_url, secret)
        out += await check_node(session, asked.state_dir)
        if url:
            out.append(await check_origin(session, url))
    return out
