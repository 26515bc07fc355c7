"""Configuration: precedence flag > env > file > default, and a clear error for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmget.config import (
    ConfigError,
    HubSettings,
    NodeSettings,
    RelaySettings,
    render,
    resolve,
)

MiB = 1024 * 1024


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_given() -> None:
    r = resolve("node", {}, config_path=None, env={})
    assert r.values == NodeSettings()
    assert set(r.sources.values()) == {"default"}
    assert r.secret_source == "missing"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[node]\nslots = 5\nconnections = 6\nrate_limit = '1M'\n")
    env = {"SWARMGET_NODE_SLOTS": "7", "SWARMGET_NODE_CONNECTIONS": "8"}
    r = resolve("node", {"slots": 9}, config_path=path, env=env)
    assert isinstance(r.values, NodeSettings)
    assert r.values.slots == 9
    assert r.sources["slots"] == "flag"
    assert r.values.connections == 8
    assert r.sources["connections"] == "env SWARMGET_NODE_CONNECTIONS"
    assert r.values.rate_limit == MiB
    assert r.sources["rate_limit"] == f"file {path}"
    assert r.values.port == 7401
    assert r.sources["port"] == "default"


def test_lists_from_env_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nhub = ["http://a:7400"]\n')
    r = resolve("node", {}, config_path=path, env={"SWARMGET_NODE_HUB": "http://b:1, http://c:2"})
    assert isinstance(r.values, NodeSettings)
    assert r.values.hub == ["http://b:1", "http://c:2"]
    r = resolve("node", {}, config_path=path, env={})
    assert isinstance(r.values, NodeSettings)
    assert r.values.hub == ["http://a:7400"]


def test_secret_file_precedence_and_redaction(tmp_path: Path) -> None:
    path = write(tmp_path, 'secret_file = "/from/file"\n[hub]\ndb = "postgresql://u:pw@h/db"\n')
    r = resolve("hub", {}, config_path=path, env={"SWARMGET_SECRET_FILE": "/from/env"})
    assert r.secret_file == Path("/from/env")
    rows = {key: (value, source) for key, value, source in render(r)}
    assert rows["hub.db"][0] == "postgresql://u:***@h/db"
    assert "pw" not in str(rows)
    r = resolve("hub", {"secret_file": "/from/flag"}, config_path=path, env={})
    assert r.secret_file == Path("/from/flag")
    r = resolve("hub", {}, config_path=None, env={"SWARMGET_SECRET": "x" * 32})
    assert r.secret_file is None
    assert dict((k, v) for k, v, _ in render(r))["secret_file"] == "(value redacted)"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[node]\nslots = 0\n", {}, "node.slots (from file"),
        ("[node]\nslots = 'many'\n", {}, "node.slots"),
        ("[node]\nsloots = 3\n", {}, "unknown key node.sloots"),
        ("[nodes]\nslots = 3\n", {}, "unknown key or table 'nodes'"),
        ("[node]\nrate_limit = 'fast'\n", {}, "node.rate_limit"),
        ("[node]\nport = 70000\n", {}, "node.port"),
        ("[node]\nlog_format = 'xml'\n", {}, "node.log_format"),
        ("[relay]\nbudget = '-1G'\n", {}, "relay.budget"),
        ("[hub]\ngroup_prefix = 40\n", {}, "hub.group_prefix"),
        ("", {"SWARMGET_NODE_SLOTS": "lots"}, "node.slots (from env SWARMGET_NODE_SLOTS)"),
        ("not toml = = 1", {}, "config file"),
        ("[hub]\ntrusted_proxies = ['10.0.0.1/8']\n", {}, "hub.trusted_proxies"),
        ("[hub]\ntrust_proxy = true\n", {}, "hub.trust_proxy"),
        ("", {"SWARMGET_HUB_TRUST_PROXY": "1"}, "hub.trust_proxy (from env"),
        ("[hub]\nhead_timeout = 0\n", {}, "hub.head_timeout"),
    ],
)
def test_invalid_configuration_names_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    section = "relay" if "relay" in text else "hub" if "HUB" in str(env) + text.upper() else "node"
    with pytest.raises(ConfigError) as info:  # noqa: PT011  (the message is checked below)
        resolve(section, {}, config_path=write(tmp_path, text), env=env)
    assert message in str(info.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve("node", {}, config_path=tmp_path / "nope.toml", env={})


def test_sizes_parse_binary_units() -> None:
    r = resolve("relay", {"budget": "1.5G", "piece_size": "256K"}, config_path=None, env={})
    assert isinstance(r.values, RelaySettings)
    assert r.values.budget == 1536 * MiB
    assert r.values.piece_size == 256 * 1024


def test_trusted_proxies_and_listen_limits_from_env() -> None:
    env = {
        "SWARMGET_HUB_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/30",
        "SWARMGET_HUB_HEAD_TIMEOUT": "2.5",
    }
    values = resolve("hub", {}, config_path=None, env=env).values
    assert isinstance(values, HubSettings)
    assert values.trusted_proxies == ["127.0.0.1", "10.0.0.0/30"]
    assert (values.head_timeout, values.body_timeout, values.connections_per_address) == (
        2.5,
        30.0,
        64,
    )
