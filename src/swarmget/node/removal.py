"""Removing a download's files when its user asks ("remove and delete the file").

Only inside the node's download directory, only names of that download (``DEST``,
``DEST.part``, ``DEST.part.json``), only regular files of this user (``safe_files``): a link,
a directory or another user's file at one of those names is left alone. Names are unlinked
relative to a descriptor of their directory, so nothing is followed on the way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swarmget.core.errors import DestinationOutside
from swarmget.destination import relative_to_download_dir
from swarmget.safe_files import lstat_at, open_directory, untrusted_reason
from swarmget.storage.control import control_path_for, part_path_for

__all__ = ["dest_of", "remove_download_files"]


def dest_of(view: Mapping[str, Any], fallback: Path | None) -> Path | None:
    """Where a download's file is (or was to be), from its JSON (``node.download_json``):
    known once it probed the origin; else ``fallback`` (the output it was asked for)."""
    progress = view.get("progress") or {}
    result = view.get("result") or {}
    where = result.get("path") or progress.get("dest")
    return Path(where) if isinstance(where, str) and where else fallback


def remove_download_files(download_dir: Path, dest: Path | None) -> list[str]:
    """Delete ``dest`` and its part and control files; the names deleted. ``dest`` outside
    ``download_dir`` (or unknown) deletes nothing."""
    if dest is None:
        return []
    try:
        relative_to_download_dir(download_dir, dest.parent / "x")  # the directory is inside
    except DestinationOutside:
        return []
    try:
        dir_fd = open_directory(dest.parent)
    except OSError:
        return []
    removed: list[str] = []
    try:
        for path in (dest, part_path_for(dest), control_path_for(dest)):
            st = lstat_at(dir_fd, path.name)
            if st is None or untrusted_reason(st) is not None:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path.name, dir_fd=dir_fd)
                removed.append(path.name)
    finally:
        os.close(dir_fd)
    return removed
