"""``swarmget node --cache-budget`` (fetch once per LAN, #15): sizes with units from every
source, 0 allowed (sharing off), a default, and bad values refused naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmget import config
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


def test_lan_daily_quota_is_unlimited_unless_set() -> None:
    values = config.resolve("node", {}, config_path=None, env={}).values
    assert isinstance(values, NodeSettings)
    assert values.lan_daily_quota is None
    env = {"SWARMGET_NODE_LAN_DAILY_QUOTA": "20G"}
    values = config.resolve("node", {}, config_path=None, env=env).values
    assert isinstance(values, NodeSettings)
    assert values.lan_daily_quota == 20 * 1024**3
    with pytest.raises(ConfigError, match="node.lan_daily_quota"):
        config.resolve("node", {"lan_daily_quota": "lots"}, config_path=None, env={})
