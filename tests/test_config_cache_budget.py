"""``swarmget node --cache-budget`` (fetch once per LAN, #15): sizes with units from every
source, 0 allowed (sharing off), a default, and bad values refused naming the key. And
``--lan-daily-quota``: by default the ``--daily-quota`` figure (counted apart), a value
given overrides it, ``unlimited`` lifts it, a bad value is refused at the CLI's edge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarmget import config
from swarmget.cli.app import EXIT_USAGE
from swarmget.config import ConfigError, NodeSettings
from swarmget.defaults import DEFAULT_CACHE_BUDGET


def _budget(flags: dict[str, object], env: dict[str, str], path: Path | None = None) -> int:
    values = config.resolve("node", flags, config_path=path, env=env).values
    assert isinstance(values, NodeSettings)
    return values.cache_budget


def test_cache_budget_from_file_env_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[node]\ncache_budget = "20G"\n')
    assert _budget({}, {}, path) == 20 * 1024**3
    assert _budget({}, {"SWARMGET_NODE_CACHE_BUDGET": "512M"}, path) == 512 * 1024**2
    assert _budget({"cache_budget": "0"}, {"SWARMGET_NODE_CACHE_BUDGET": "1G"}, path) == 0
    assert _budget({}, {}) == DEFAULT_CACHE_BUDGET == 4 * 1024**3


@pytest.mark.parametrize("bad", ["lots", "-1"])
def test_a_bad_cache_budget_names_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match="node.cache_budget"):
        _budget({}, {"SWARMGET_NODE_CACHE_BUDGET": bad})


def test_share_output_is_off_unless_asked() -> None:
    assert not config.resolve("node", {}, config_path=None, env={}).values.share_output  # type: ignore[attr-defined]
    flags = {"share_output": True}
    assert config.resolve("node", flags, config_path=None, env={}).values.share_output  # type: ignore[attr-defined]


def _node(flags: dict[str, object], env: dict[str, str] | None = None) -> NodeSettings:
    values = config.resolve("node", flags, config_path=None, env=env or {}).values
    assert isinstance(values, NodeSettings)
    return values


def test_the_lan_allowance_defaults_to_the_daily_quota_figure() -> None:
    assert _node({}).lan_allowance() is None  # no quota at all: unlimited
    values = _node({"daily_quota": "2G"})
    assert values.lan_daily_quota is None  # not given ...
    assert values.lan_allowance() == 2 * 1024**3  # ... so as many bytes as the origin's
    assert values.daily_quota == 2 * 1024**3  # (counted apart: the origin's is unchanged)
    env = {"SWARMGET_NODE_DAILY_QUOTA": "512M"}
    assert _node({}, env).lan_allowance() == 512 * 1024**2


def test_a_lan_daily_quota_given_overrides_the_daily_quota() -> None:
    values = _node({"daily_quota": "2G", "lan_daily_quota": "20G"})
    assert values.lan_allowance() == 20 * 1024**3
    assert values.daily_quota == 2 * 1024**3
    assert _node({"lan_daily_quota": "0"}).lan_allowance() == 0  # serve the LAN nothing
    env = {"SWARMGET_NODE_LAN_DAILY_QUOTA": "20G", "SWARMGET_NODE_DAILY_QUOTA": "1G"}
    assert _node({}, env).lan_allowance() == 20 * 1024**3


@pytest.mark.parametrize("word", ["unlimited", "Unlimited", " UNLIMITED "])
def test_unlimited_lifts_the_lan_allowance_despite_a_daily_quota(word: str, tmp_path: Path) -> None:
    values = _node({"daily_quota": "2G", "lan_daily_quota": word})
    assert values.lan_daily_quota == config.UNLIMITED
    assert values.lan_allowance() is None
    assert values.daily_quota == 2 * 1024**3
    path = tmp_path / "c.toml"
    path.write_text(f'[node]\ndaily_quota = "1G"\nlan_daily_quota = "{word}"\n')
    from_file = config.resolve("node", {}, config_path=path, env={}).values
    assert isinstance(from_file, NodeSettings)
    assert from_file.lan_allowance() is None


@pytest.mark.parametrize("bad", ["lots", "-1", "unlimitedG", "none"])
def test_a_bad_lan_daily_quota_names_the_key_and_what_it_may_be(bad: str) -> None:
    with pytest.raises(ConfigError, match="node.lan_daily_quota") as info:
        _node({"lan_daily_quota": bad, "daily_quota": "1G"})
    assert "(from flag)" in str(info.value)
    assert "unlimited" in str(info.value)  # the word that was not spelled right, maybe


def test_swarmget_node_refuses_a_bad_lan_daily_quota_before_it_starts(tmp_path: Path) -> None:
    empty = tmp_path / "c.toml"
    empty.write_text("")
    args = ["node", "--lan-daily-quota", "lots", "--state-dir", str(tmp_path / "s")]
    done = subprocess.run(
        [sys.executable, "-m", "swarmget.cli", "--config", str(empty), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert done.returncode == EXIT_USAGE
    assert "node.lan_daily_quota (from flag)" in done.stderr
    assert "'lots'" in done.stderr
    assert "unlimited" in done.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was made
