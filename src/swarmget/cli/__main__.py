"""``python -m swarmget.cli``: the ``swarmget`` command."""

from swarmget.cli import run

run()
