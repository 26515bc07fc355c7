"""max_size in the node and relay configuration: sizes with units, from every source."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmget import config
from swarmget.config import ConfigError


@pytest.mark.parametrize("section", ["node", "relay"])
def test_max_size_from_file_env_and_flags(tmp_path: Path, section: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[{section}]\nmax_size = "20G"\n')
    resolved = config.resolve(section, {}, config_path=path, env={})
    assert resolved.values.max_size == 20 * 1024**3  # type: ignore[attr-defined]
    env = {f"SWARMGET_{section.upper()}_MAX_SIZE": "512M"}
    resolved = config.resolve(section, {}, config_path=path, env=env)
    assert resolved.values.max_size == 512 * 1024**2  # type: ignore[attr-defined]
    resolved = config.resolve(section, {"max_size": "1K"}, config_path=path, env=env)
    assert resolved.values.max_size == 1024  # type: ignore[attr-defined]
    assert config.resolve(section, {}, config_path=None, env={}).values.max_size is None  # type: ignore[attr-defined]


def test_a_bad_max_size_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="node.max_size"):
        config.resolve("node", {}, config_path=None, env={"SWARMGET_NODE_MAX_SIZE": "lots"})


def test_the_example_config_sets_max_size() -> None:
    example = Path(__file__).parent.parent / "deploy" / "config.example.toml"
    for section in ("node", "relay"):
        resolved = config.resolve(section, {}, config_path=example, env={})
        assert resolved.values.max_size is not None  # type: ignore[attr-defined]
