"""Where the node's state directory is, decided in one place for the node and its clients.

``swarmget node`` and the commands that talk to it (``get``, ``status``, ``peers``,
``portal``, ``cancel``, ``doctor``) must agree, or a client says "no running node" while one
runs. One order, for both::

    --state-dir > $SWARMGET_NODE_STATE_DIR > [node] state_dir in the config file
                > $SWARMGET_STATE_DIR > $XDG_STATE_HOME/swarmget (~/.local/state/swarmget)

A client (not the node) then looks one step further: when nothing named a directory and
none runs in the per-user default, the system node's (``/var/lib/swarmget/node``, where
the documented systemd unit keeps it) is used if a node says it runs there and this user
may read it (the node shares it with its group: ``[node] api_group_access``). Nothing here
trusts what it finds: ``run.remote`` checks ownership and modes before sending a token.

Read without pydantic (a plain ``swarmget get`` stays quick to start): the file is TOML, the
values are paths and strings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from swarmget.core.errors import UsageError

TYPE_CHECKING = False  # (typing is ~4 ms of a plain `get`'s start: issue #14)
if TYPE_CHECKING:
    from typing import Any

NODE_STATE_ENV = "SWARMGET_NODE_STATE_DIR"
STATE_ENV = "SWARMGET_STATE_DIR"
SECRET_FILE_ENV = "SWARMGET_SECRET_FILE"
NODE_HUB_ENV = "SWARMGET_NODE_HUB"
#: Where the documented systemd unit keeps the node's state (deploy/systemd).
SYSTEM_NODE_STATE_DIR = Path("/var/lib/swarmget/node")
#: The file a running node writes into its state directory (``node.statefiles.NODE_FILE``).
_NODE_FILE = "node.json"


def user_state_dir(env: Mapping[str, str]) -> Path:
    """The per-user default: ``$SWARMGET_STATE_DIR``, else ``$XDG_STATE_HOME/swarmget``."""
    if env.get(STATE_ENV):
        return Path(env[STATE_ENV])
    base = env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "swarmget"


def node_state_dir(
    *, flag: Path | None, env: Mapping[str, str], table: Mapping[str, Any], file: Path | None
) -> tuple[Path, str]:
    """The node's state directory and where it came from (``config show``'s words):
    ``flag`` > ``$SWARMGET_NODE_STATE_DIR`` > the ``[node]`` ``table`` of ``file`` >
    ``$SWARMGET_STATE_DIR`` > the XDG default."""
    if flag is not None:
        return Path(flag), "flag"
    if env.get(NODE_STATE_ENV):
        return Path(env[NODE_STATE_ENV]), f"env {NODE_STATE_ENV}"
    if table.get("state_dir"):
        return Path(str(table["state_dir"])), f"file {file}"
    if env.get(STATE_ENV):
        return Path(env[STATE_ENV]), f"env {STATE_ENV}"
    return user_state_dir(env), "default"


def node_runs_in(state_dir: Path) -> bool:
    """Whether a node says it runs in ``state_dir`` (its ``node.json`` is there and this
    user may see it); not whether it answers."""
    return os.path.lexists(state_dir / _NODE_FILE)


@dataclass(frozen=True, kw_only=True)
class ClientSettings:
    """What a client of the node takes from the configuration."""

    state_dir: Path
    hubs: tuple[str, ...]  # [node] hub (or $SWARMGET_NODE_HUB): a swarm to join without a node
    secret_file: str | None  # $SWARMGET_SECRET_FILE or the file's top-level secret_file


def client_settings(
    *,
    state_dir: Path | None,
    env: Mapping[str, str],
    config_path: Path | None,
    explicit: bool,
    system_dir: Path = SYSTEM_NODE_STATE_DIR,
) -> ClientSettings:
    """The settings of a client command (see the module docstring for the state
    directory; ``system_dir``: the system node's). ``explicit``: the config file was named
    (``--config``, ``$SWARMGET_CONFIG``); one found on its own that this user may not read
    is skipped, a named one is an error."""
    data = read_config(config_path, explicit=explicit)
    table = data.get("node") if isinstance(data.get("node"), dict) else {}
    assert isinstance(table, dict)
    found, source = node_state_dir(flag=state_dir, env=env, table=table, file=config_path)
    if source == "default" and not node_runs_in(found) and node_runs_in(system_dir):
        found = system_dir
    hubs = env.get(NODE_HUB_ENV, "").split(",") if env.get(NODE_HUB_ENV) else table.get("hub")
    if isinstance(hubs, str):
        hubs = [hubs]
    secret = env.get(SECRET_FILE_ENV) or data.get("secret_file")
    return ClientSettings(
        state_dir=found,
        hubs=tuple(str(h).strip() for h in hubs or () if str(h).strip()),
        secret_file=None if not secret else str(secret),
    )


def find_config(given: Path | None, env: Mapping[str, str]) -> tuple[Path | None, bool]:
    """The config file and whether it was named (``--config``, ``$SWARMGET_CONFIG``) rather
    than found (``~/.config/swarmget/config.toml``, ``/etc/swarmget/config.toml``)."""
    if given is not None:
        return given, True
    if env.get("SWARMGET_CONFIG"):
        return Path(env["SWARMGET_CONFIG"]), True
    home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for candidate in (home / "swarmget" / "config.toml", Path("/etc/swarmget/config.toml")):
        if candidate.is_file():
            return candidate, False
    return None, False


def read_config(path: Path | None, *, explicit: bool) -> dict[str, Any]:
    """The config file's tables (no validation: ``swarmget.config`` does that for the
    services); ``{}`` without one."""
    if path is None:
        return {}
    import tomllib  # (only with a file: ~8 ms of a plain `get`'s start, issue #14)

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except PermissionError as exc:
        if not explicit:
            return {}
        raise UsageError(f"config file {path}: permission denied") from exc
    except FileNotFoundError as exc:
        raise UsageError(f"config file {path} does not exist") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"config file {path}: {exc}") from exc
