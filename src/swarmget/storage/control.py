"""The control file ``DEST.part.json``: its format, reading it once, and the checkpoint writes.

The file is JSON: ``format`` and ``version``, the ``ResumeKey``, the ``boot_id`` of the
kernel that wrote it, the ranges whose ``pwrite`` returned (``written``: in the page cache,
they survive the process being killed, not a crash of the machine) and those covered by an
``fdatasync`` (``synced``). A later run in the same boot trusts ``written``, any other run
only ``synced``. A new control file is written to ``DEST.part.json.tmp``, created afresh,
and renamed over the old one, so a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

from swarmget.core.errors import UntrustedFile
from swarmget.core.ranges import RangeSet
from swarmget.core.resume import Recorded, ResumeKey, Stored, Unrecorded
from swarmget.safe_files import create_exclusive_at, fsync_dir, open_directory, read_trusted_at
from swarmget.storage.writes import write_all

__all__ = [
    "CONTROL_SUFFIX",
    "PART_SUFFIX",
    "TMP_SUFFIX",
    "control_path_for",
    "current_boot_id",
    "part_path_for",
    "read_control",
    "read_stored",
    "remove_names",
    "stored_resume_key",
    "write_control",
]

PART_SUFFIX = ".part"
CONTROL_SUFFIX = ".part.json"
TMP_SUFFIX = ".tmp"
_CONTROL_FORMAT = "swarmget-part"
_CONTROL_VERSION = 2
_CONTROL_LIMIT = 64 * 1024 * 1024  # a control file larger than this is not ours


def part_path_for(dest: Path) -> Path:
    """``DEST.part``: where the data lives until ``finalize``."""
    return dest.with_name(dest.name + PART_SUFFIX)


def control_path_for(dest: Path) -> Path:
    """``DEST.part.json``: the control file that makes resuming possible."""
    return dest.with_name(dest.name + CONTROL_SUFFIX)


def current_boot_id() -> str:
    """This boot of the kernel (Linux); "" where unknown (then only synced ranges count)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _create_tmp(dir_fd: int, name: str) -> int:
    """Create the temporary control file afresh. Whatever is at its name (a leftover of a
    killed run, or a link planted there) is unlinked first: unlink never follows a link."""
    try:
        return create_exclusive_at(dir_fd, name, os.O_WRONLY)
    except FileExistsError:
        os.unlink(name, dir_fd=dir_fd)
        return create_exclusive_at(dir_fd, name, os.O_WRONLY)


def write_control(
    dir_fd: int,
    path: Path,
    key: ResumeKey,
    written: RangeSet,
    synced: RangeSet | None = None,
    *,
    durable: bool = True,
) -> None:
    """Atomically replace the control file: write a new temporary and rename it over the old.

    ``written`` are ranges whose ``pwrite`` returned (in the page cache: they survive the
    process being killed, not a crash of the machine); ``synced`` those covered by an
    ``fdatasync``. ``durable`` also fsyncs the control file and its directory.
    """
    payload = {
        "format": _CONTROL_FORMAT,
        "version": _CONTROL_VERSION,
        "key": key.to_json(),
        "boot_id": current_boot_id(),
        "written": written.as_pairs(),
        "synced": (written if synced is None else synced).as_pairs(),
    }
    tmp = path.name + TMP_SUFFIX
    fd = _create_tmp(dir_fd, tmp)
    try:
        write_all(fd, 0, json.dumps(payload, separators=(",", ":")).encode())
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    if durable:
        fsync_dir(dir_fd)


def read_control(dir_fd: int, path: Path) -> Stored:
    """The key and ranges recorded in ``path``; ``Unrecorded.UNREADABLE`` for anything we
    cannot use. ``UntrustedFile`` for a control file that is not safely this user's own."""
    try:
        raw = read_trusted_at(dir_fd, path.name, path, _CONTROL_LIMIT)
    except (OSError, ValueError):
        return Unrecorded.UNREADABLE
    if raw is None:
        return Unrecorded.MISSING
    try:
        obj = json.loads(raw)
        if obj["format"] != _CONTROL_FORMAT or obj["version"] != _CONTROL_VERSION:
            return Unrecorded.UNREADABLE
        # Written-but-unsynced ranges are in the page cache, and only as long as this boot.
        same_boot = bool(obj["boot_id"]) and obj["boot_id"] == current_boot_id()
        trusted = obj["written"] if same_boot else obj["synced"]
        return Recorded(ResumeKey.from_json(obj["key"]), RangeSet.from_pairs(trusted))
    except (KeyError, TypeError, ValueError):
        return Unrecorded.UNREADABLE


def remove_names(dir_fd: int, names: tuple[str, ...]) -> None:
    """Unlink each of ``names`` in the directory (never through a link); gone already is fine."""
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)


def read_stored(dest: Path) -> Stored:
    """``read_control`` for ``dest`` by path (blocking); an untrusted or unreachable control
    file is ``UNREADABLE`` / ``MISSING`` here (``open_part_file`` then says why)."""
    try:
        dir_fd = open_directory(dest.parent)
    except OSError:
        return Unrecorded.MISSING
    try:
        return read_control(dir_fd, control_path_for(dest))
    except UntrustedFile:
        return Unrecorded.UNREADABLE
    finally:
        os.close(dir_fd)


async def stored_resume_key(dest: Path) -> ResumeKey | None:
    """The key recorded by an earlier run for ``dest`` (None: none, unreadable, or not
    safely this user's; then ``open_part_file`` says why).

    Kept for callers that look before they open; ``open_part_file(...,
    restart_if_changed=...)`` decides on its own single read of the control file.
    """
    stored = await asyncio.to_thread(read_stored, dest)
    return stored.key if isinstance(stored, Recorded) else None
