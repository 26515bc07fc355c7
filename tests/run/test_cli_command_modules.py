"""Every ``swarmget`` command is found by the lazy group (``cli.app.COMMAND_MODULES``): each
module registers exactly the commands the table says it does, importing the package
imports none of them, and ``--help`` lists them all."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click

from swarmget.cli.app import COMMAND_MODULES, main


def test_the_table_names_every_command_where_it_is_defined() -> None:
    for module in sorted(set(COMMAND_MODULES.values())):
        importlib.import_module(module)
    assert set(main.commands) == set(COMMAND_MODULES)
    for name, command in main.commands.items():
        assert isinstance(command, click.Command)
        assert command.callback is not None
        assert command.callback.__module__ == COMMAND_MODULES[name], name


LIST_HELP = """
import json, sys
from click.testing import CliRunner
from swarmget.cli import main
before = sorted(m for m in sys.modules if m.startswith("swarmget.cli."))
result = CliRunner().invoke(main, ["--help"])
print(json.dumps({"exit": result.exit_code, "help": result.output, "before": before}))
"""


def test_the_package_imports_no_command_and_help_lists_them_all() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LIST_HELP], capture_output=True, text=True, check=True
    )
    answer = json.loads(done.stdout)
    assert answer["exit"] == 0
    assert answer["before"] == ["swarmget.cli.app"]
    listed = {line.split()[0] for line in answer["help"].split("Commands:")[1].splitlines() if line}
    assert listed == set(COMMAND_MODULES)
