"""One place decides where the node's state directory is, for the node and its clients
(issue #16, "the documented deployment loses the swarm silently")."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmget import config
from swarmget.core.errors import UsageError
from swarmget.locations import client_settings, node_state_dir


def test_the_order_flag_env_file_state_env_default(tmp_path: Path) -> None:
    table = {"state_dir": "/from/file"}
    env = {"SWARMGET_NODE_STATE_DIR": "/from/node-env", "SWARMGET_STATE_DIR": "/from/env"}
    file = tmp_path / "c.toml"
    assert node_state_dir(flag=Path("/f"), env=env, table=table, file=file) == (Path("/f"), "flag")
    found = node_state_dir(flag=None, env=env, table=table, file=file)
    assert found == (Path("/from/node-env"), "env SWARMGET_NODE_STATE_DIR")
    found = node_state_dir(flag=None, env={"SWARMGET_STATE_DIR": "/e"}, table=table, file=file)
    assert found == (Path("/from/file"), f"file {file}")
    found = node_state_dir(flag=None, env={"SWARMGET_STATE_DIR": "/e"}, table={}, file=file)
    assert found == (Path("/e"), "env SWARMGET_STATE_DIR")
    found = node_state_dir(flag=None, env={"XDG_STATE_HOME": "/x"}, table={}, file=None)
    assert found == (Path("/x/swarmget"), "default")


def test_the_node_and_its_clients_agree(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'secret_file = "/s"\n[node]\nstate_dir = "{tmp_path / "st"}"\nhub = ["http://h:1"]\n'
    )
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    node = config.resolve("node", {}, config_path=cfg, env=env)
    client = client_settings(state_dir=None, env=env, config_path=cfg, explicit=True)
    assert client.state_dir == node.values.state_dir == tmp_path / "st"  # type: ignore[attr-defined]
    assert client.hubs == ("http://h:1",)
    assert client.secret_file == "/s"
    env["SWARMGET_NODE_STATE_DIR"] = str(tmp_path / "env")
    node = config.resolve("node", {}, config_path=cfg, env=env)
    client = client_settings(state_dir=None, env=env, config_path=cfg, explicit=True)
    assert client.state_dir == node.values.state_dir == tmp_path / "env"  # type: ignore[attr-defined]


def test_config_show_names_swarmget_state_dir_as_the_source(tmp_path: Path) -> None:
    env = {"SWARMGET_STATE_DIR": str(tmp_path / "mine")}
    resolved = config.resolve("node", {}, config_path=None, env=env)
    rows = {key: (value, source) for key, value, source in config.render(resolved)}
    assert rows["node.state_dir"] == (str(tmp_path / "mine"), "env SWARMGET_STATE_DIR")


def test_the_system_node_is_found_when_the_user_default_has_none(tmp_path: Path) -> None:
    system = tmp_path / "var-lib-swarmget-node"
    system.mkdir()
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}

    def found(**kw: object) -> Path:
        settings = client_settings(
            env=env,
            config_path=None,
            explicit=False,
            system_dir=system,
            **kw,  # type: ignore[arg-type]
        )
        return settings.state_dir

    assert found(state_dir=None) == tmp_path / "xdg" / "swarmget"  # no node anywhere
    (system / "node.json").write_text("{}")
    assert found(state_dir=None) == system
    assert found(state_dir=tmp_path / "given") == tmp_path / "given"  # a flag is obeyed
    own = tmp_path / "xdg" / "swarmget"
    own.mkdir(parents=True)
    (own / "node.json").write_text("{}")
    assert found(state_dir=None) == own  # the user's own node first


def test_a_named_config_file_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        client_settings(state_dir=None, env={}, config_path=tmp_path / "no.toml", explicit=True)
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n")
    with pytest.raises(UsageError, match="bad.toml"):
        client_settings(state_dir=None, env={}, config_path=bad, explicit=True)
