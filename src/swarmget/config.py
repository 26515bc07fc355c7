"""One way to configure swarmget: flags > environment > TOML file > defaults.

The file (``--config PATH``; else ``$SWARMGET_CONFIG``; else ``~/.config/swarmget/config.toml``
if it exists; else ``/etc/swarmget/config.toml`` if it exists) has one table per command::

    secret_file = "/etc/swarmget/secret"      # top level: shared by every command

    [node]
    hub = ["http://10.0.0.1:7400", "http://10.0.0.2:7400"]
    listen = "10.0.0.5"
    slots = 3
    rate_limit = "5M"
    daily_quota = "2G"
    allow_private_origins = ["private"]

    [hub]
    db = "postgresql+asyncpg://swarmget@db/swarmget"

    [relay]
    budget = "50G"
    max_size = "20G"                          # refuse larger files up front (node too)

Environment variables are ``SWARMGET_<TABLE>_<KEY>`` (``SWARMGET_NODE_SLOTS=4``), and
``SWARMGET_SECRET_FILE`` for the top level; lists are comma-separated. Every value is
validated once, at start: an unknown key or a bad value stops the command with a message
naming the key, where it came from and what is wrong. ``swarmget config show`` prints the
effective configuration and the source of every value (the secret itself is never shown).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from swarmget.core.addresses import parse_cidrs
from swarmget.core.errors import UsageError
from swarmget.core.units import parse_size as parse_size
from swarmget.defaults import (
    DEFAULT_API_PORT,
    DEFAULT_CACHE_BUDGET,
    DEFAULT_DB_URL,
    DEFAULT_HUB_PORT,
    DEFAULT_PEER_PORT,
    DEFAULT_PEERS_LIMIT,
    DEFAULT_PORTAL_PORT,
    DEFAULT_STATE_DIR,
    DEFAULT_TTL,
)
from swarmget.locations import find_config, node_state_dir


class ConfigError(UsageError):
    code = "config"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _size_or_none(v: Any) -> int | None:
    return None if v in (None, "") else parse_size(v)


#: ``lan_daily_quota = "unlimited"`` (``--lan-daily-quota unlimited``): no LAN allowance
#: even when there is a ``daily_quota``
UNLIMITED: Final = "unlimited"


def _allowance(v: Any) -> int | Literal["unlimited"] | None:
    """A size, ``unlimited`` (any case) or nothing given (None)."""
    if isinstance(v, str) and v.strip().lower() == UNLIMITED:
        return UNLIMITED
    try:
        return _size_or_none(v)
    except ValueError as exc:
        raise ValueError(f"{exc}, or {UNLIMITED}") from exc


class _Listening(_Section):
    """How long clients may take to send a request, and connections per client address
    (``swarmget.net.serve.ListenLimits``), and how it logs, for every command that listens."""

    head_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=30.0, gt=0)
    connections_per_address: int = Field(default=64, ge=1)
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = Field(default="info", pattern="^(debug|info|warning|error)$")


class NodeSettings(_Listening):
    hub: list[str] = Field(default_factory=list)
    spread_hubs: bool = False  # start on the hub the node id picks: replicas share the load
    listen: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PEER_PORT, ge=0, le=65535)
    api_port: int = Field(default=DEFAULT_API_PORT, ge=0, le=65535)
    node_id: str | None = None
    group: str | None = None
    slots: int = Field(default=3, ge=1, le=64)
    connections: int = Field(default=4, ge=1, le=64)
    rate_limit: int | None = None
    daily_quota: int | None = None
    # fetch once per LAN (#15): bytes served to LAN peers per UTC day, counted apart from
    # daily_quota; None (not given): daily_quota's figure (``lan_allowance``)
    lan_daily_quota: int | Literal["unlimited"] | None = None
    allow_private_origins: list[str] = Field(default_factory=list)
    state_dir: Path = DEFAULT_STATE_DIR
    download_dir: Path = Path("downloads")
    stall_timeout: float = Field(default=15.0, gt=0)
    heartbeat_interval: float | None = Field(default=None, gt=0)
    relay: str | None = None
    max_size: int | None = None  # refuse downloads larger than this up front
    api_group_access: bool = False  # the state dir's group may use the local API (systemd)
    # fetch once per LAN (#15): bytes of finished downloads kept for LAN peers; 0: share nothing
    cache_budget: int = Field(default=DEFAULT_CACHE_BUDGET, ge=0)
    share_output: bool = False  # files saved outside the node's directories may be shared
    # fetch once per LAN (#15): this node's downloads join the hub's content index (opt-in)
    share_downloads: bool = False
    # the portal from other machines (swarmget.web.remote); none of it: 127.0.0.1 only
    portal_listen: str | None = None
    portal_port: int = Field(default=DEFAULT_PORTAL_PORT, ge=0, le=65535)
    portal_tls_cert: Path | None = None
    portal_tls_key: Path | None = None
    portal_allowed_hosts: list[str] = Field(default_factory=list)
    portal_trusted_proxies: list[str] = Field(default_factory=list)

    _sizes = field_validator("rate_limit", "daily_quota", "max_size", mode="before")(_size_or_none)
    _allowances = field_validator("lan_daily_quota", mode="before")(_allowance)

    @field_validator("cache_budget", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    def lan_allowance(self) -> int | None:
        """Bytes this node serves to LAN peers per UTC day (None: unlimited; fetch once per
        LAN, #15 §7): ``lan_daily_quota`` when given (``unlimited``: None), else as many as
        ``daily_quota``, counted apart from it: LAN bytes never use the origin allowance,
        and an owner who capped the node's daily data does not upload unbounded to the LAN."""
        if isinstance(self.lan_daily_quota, str):  # UNLIMITED
            return None
        if self.lan_daily_quota is None:
            return self.daily_quota
        return self.lan_daily_quota

    @field_validator("portal_trusted_proxies")
    @classmethod
    def _proxy_cidrs(cls, value: list[str]) -> list[str]:
        try:
            parse_cidrs(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from exc
        return value


class HubSettings(_Listening):
    host: str = "0.0.0.0"
    port: int = Field(default=DEFAULT_HUB_PORT, ge=0, le=65535)
    db: str = DEFAULT_DB_URL
    ttl: float = Field(default=DEFAULT_TTL, ge=1.0)
    group_prefix: int = Field(default=16, ge=0, le=32)
    trusted_proxies: list[str] = Field(default_factory=list)
    trust_proxy: bool = False  # gone: refused with a pointer to trusted_proxies
    group_cidr: list[str] = Field(default_factory=list)  # NAME=CIDR: who may declare NAME
    peers_limit: int = Field(default=DEFAULT_PEERS_LIMIT, ge=1, le=64)  # peers per answer

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        try:
            parse_cidrs(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("trust_proxy")
    @classmethod
    def _gone(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "no longer supported (it believed a forged X-Forwarded-For); list your "
                "reverse proxies in trusted_proxies (--trusted-proxy CIDR) instead"
            )
        return value


class RelaySettings(_Listening):
    host: str = "0.0.0.0"
    port: int = Field(default=7410, ge=0, le=65535)
    cache_dir: Path = Path("relay-cache")
    budget: int = 10 * 1024**3
    db: str | None = None
    piece_size: int = 1024 * 1024
    allow_private_origins: list[str] = Field(default_factory=list)
    max_size: int | None = None  # refuse to fetch files larger than this up front

    _sizes = field_validator("budget", "piece_size", mode="before")(parse_size)
    _limits = field_validator("max_size", mode="before")(_size_or_none)


class TopSettings(_Section):
    secret_file: Path | None = None


SECTIONS: dict[str, type[_Section]] = {
    "node": NodeSettings,
    "hub": HubSettings,
    "relay": RelaySettings,
}
SECRET_KEYS = {"secret", "password"}


@dataclass(frozen=True)
class Resolved:
    section: str
    values: _Section
    sources: dict[str, str]  # key -> "flag" | "env NAME" | "file PATH" | "default"
    secret_file: Path | None
    secret_source: str


def default_config_path(env: Mapping[str, str]) -> Path | None:
    return find_config(None, env)[0]


def load_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    unknown = set(data) - set(SECTIONS) - set(TopSettings.model_fields)
    if unknown:
        raise ConfigError(f"config file {path}: unknown key or table {sorted(unknown)[0]!r}")
    return data


def _env_value(field: str, raw: str, model: type[_Section]) -> Any:
    annotation = str(model.model_fields[field].annotation)
    if "list" in annotation:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def resolve(
    section: str,
    flags: Mapping[str, Any],
    *,
    config_path: Path | None,
    env: Mapping[str, str],
) -> Resolved:
    """The effective settings of ``section``; ``flags`` are only those given on the
    command line. Raises ``ConfigError`` naming the key, its source and the problem."""
    model = SECTIONS[section]
    data = load_file(config_path)
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {config_path}: [{section}] must be a table")
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in model.model_fields:
        env_name = f"SWARMGET_{section.upper()}_{key.upper()}"
        if section == "node" and key == "state_dir":  # decided as its clients decide it
            flag = flags.get(key)
            found = node_state_dir(flag=flag, env=env, table=table, file=config_path)
            merged[key], sources[key] = found
        elif key in flags and flags[key] is not None:
            merged[key], sources[key] = flags[key], "flag"
        elif env.get(env_name):
            merged[key], sources[key] = _env_value(key, env[env_name], model), f"env {env_name}"
        elif key in table:
            merged[key], sources[key] = table[key], f"file {config_path}"
        else:
            sources[key] = "default"
    unknown = set(table) - set(model.model_fields)
    if unknown:
        raise ConfigError(f"config file {config_path}: unknown key {section}.{sorted(unknown)[0]}")
    try:
        values = model.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else "?"
        raise ConfigError(
            f"invalid configuration: {section}.{key} (from {sources.get(key, 'default')}): "
            f"{first['msg']}"
        ) from exc
    secret_file, secret_source = _secret_file(flags, env, data, config_path)
    return Resolved(section, values, sources, secret_file, secret_source)


def _secret_file(
    flags: Mapping[str, Any], env: Mapping[str, str], data: Mapping[str, Any], path: Path | None
) -> tuple[Path | None, str]:
    if flags.get("secret_file"):
        return Path(flags["secret_file"]), "flag"
    if env.get("SWARMGET_SECRET_FILE"):
        return Path(env["SWARMGET_SECRET_FILE"]), "env SWARMGET_SECRET_FILE"
    if data.get("secret_file"):
        return Path(str(data["secret_file"])), f"file {path}"
    if env.get("SWARMGET_SECRET"):
        return None, "env SWARMGET_SECRET"
    return None, "missing"


def render(resolved: Resolved) -> list[tuple[str, str, str]]:
    """``(key, value, source)`` rows for ``config show``; secrets are redacted."""
    rows = [
        (
            "secret_file",
            "(value redacted)" if resolved.secret_file is None else str(resolved.secret_file),
            resolved.secret_source,
        )
    ]
    for key, value in resolved.values.model_dump().items():
        shown = "***" if any(s in key for s in SECRET_KEYS) else _redact_url(value)
        rows.append((f"{resolved.section}.{key}", shown, resolved.sources[key]))
    return rows


def _redact_url(value: Any) -> str:
    text = str(value)
    if "://" in text and "@" in text:  # a database URL with a password
        scheme, rest = text.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else text
    return text


def environ() -> dict[str, str]:
    return dict(os.environ)
