"""``swarmget pause ID`` and ``swarmget resume ID``: the same download of the local node
stops (its part file kept) or goes on from the bytes it holds, under the same id. A download
whose state does not allow it (pause a finished one, resume a running one) is a usage error
(exit 2) naming its state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from swarmget.cli.app import main
from swarmget.cli.operator import STATE_DIR_OPTION, _node_api_call
from swarmget.core.units import human_bytes

__all__ = ["pause", "resume"]


def _act(state_dir: Path, download_id: str, action: str, as_json: bool) -> None:
    # (imported here: pydantic's models cost start-up time every other command would pay)
    from swarmget.protocol.user import DownloadAction, action_path

    path = action_path(download_id, DownloadAction(action))
    data = _node_api_call(state_dir, path, "POST")
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(f"{data['id']}: {data['state']}{_kept(data)}")


def _kept(data: dict[str, Any]) -> str:
    progress = data.get("progress") or {}
    done, size = progress.get("done"), progress.get("size")
    if not done:
        return ""
    of = f" of {human_bytes(size)}" if size else ""
    return f" ({human_bytes(done)}{of} kept)"


@main.command()
@click.argument("download_id", metavar="ID")
@STATE_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the download as JSON.")
def pause(download_id: str, state_dir: Path, as_json: bool) -> None:
    """Pause download ID of the local node (its partial file is kept)."""
    _act(state_dir, download_id, "pause", as_json)


@main.command()
@click.argument("download_id", metavar="ID")
@STATE_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the download as JSON.")
def resume(download_id: str, state_dir: Path, as_json: bool) -> None:
    """Resume the paused download ID of the local node, from the bytes it kept."""
    _act(state_dir, download_id, "resume", as_json)
