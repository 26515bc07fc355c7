"""The files a running node keeps in its state directory, read without an event loop.

``node.json`` (that it runs, and its download directory) and ``api-token``, checked to be
one user's own together with ``api.sock`` before the token is sent anywhere (see
``run.remote``'s docstring). Stdlib only: ``run.early`` reads them before anything heavy
is imported.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from swarmget.core.errors import UsageError
from swarmget.destination import relative_to_download_dir
from swarmget.node.statefiles import API_SOCKET, NODE_FILE, TOKEN_FILE

__all__ = [
    "LocalNode",
    "UntrustedStateDir",
    "check_trust",
    "find_local_node",
    "relative_output",
]


class UntrustedStateDir(UsageError):
    """The state directory could have been written by someone other than its owner: the
    token is not sent to whatever listens there."""


@dataclass(frozen=True)
class LocalNode:
    api_url: str  # the TCP address the node announced (for people; the CLI never uses it)
    token: str
    download_dir: Path
    state_dir: Path


def find_local_node(state_dir: Path) -> LocalNode | None:
    """The node whose state directory is ``state_dir``, if one says it runs (not checked
    that it answers); None when none does. Raises ``UntrustedStateDir`` when the directory
    or its files are not one user's own (see the module docstring)."""
    try:
        fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        info = json.loads(_read_own(fd, NODE_FILE))
        token = _read_own(fd, TOKEN_FILE).strip()
        check_trust(fd, state_dir)
        return LocalNode(str(info.get("api_url", "")), token, Path(info["download_dir"]), state_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(fd)


def _read_own(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{name} is not a regular file")
        return f.read(64 * 1024).decode()


def check_trust(dir_fd: int, state_dir: Path) -> None:
    """Raise ``UntrustedStateDir`` unless the directory, ``api-token`` and ``api.sock``
    have one owner and nobody else may write into the directory; ``OSError`` when the
    socket is missing (no node runs)."""
    owner = os.fstat(dir_fd)
    sock = os.stat(API_SOCKET, dir_fd=dir_fd, follow_symlinks=False)
    token = os.stat(TOKEN_FILE, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_IMODE(owner.st_mode) & 0o022:
        raise UntrustedStateDir(
            f"{state_dir} is writable by other users (mode {stat.S_IMODE(owner.st_mode):o}): "
            "not sending the node's token there; `chmod 700` it and restart the node"
        )
    if not stat.S_ISSOCK(sock.st_mode) or {sock.st_uid, token.st_uid} != {owner.st_uid}:
        raise UntrustedStateDir(
            f"{state_dir}/{API_SOCKET} is not a socket of the directory's owner: "
            "not sending the node's token there"
        )


def relative_output(node: LocalNode, output: Path | None) -> str | None:
    """``output`` as the node's API wants it (relative to its download directory); raises
    ``UsageError`` when it lies outside (the node only writes into its directory). Without
    one, the current directory when it is inside the node's (where the user is, as curl -O
    and wget save), else None: the node's directory itself."""
    if output is not None:
        return relative_to_download_dir(node.download_dir, output)
    try:
        return relative_to_download_dir(node.download_dir, Path.cwd())
    except (UsageError, OSError):
        return None
