"""The node's key file: its Ed25519 identity, made at first start, kept in the state dir.

``load_node_identity(state_dir)`` returns the ``NodeIdentity`` kept in ``state_dir/node-key``
and makes one when there is none. The file holds the 32-byte private seed in hex (one line,
so it can be backed up and restored as text); it is the node's identity: whoever copies it
can act as this node, and a node that loses it comes back under a new node id.

Files are opened like network input is parsed: relative to the state directory's
descriptor, never following a symlink, and trusted only when the file is a regular file
owned by us and readable by nobody else (mode 0600), as ssh treats private keys. A new key
is written to a temporary file (``O_EXCL``, 0600, fsynced) and linked into place, so a
concurrent start or a crash leaves either no key or a whole one; two nodes racing on one
state directory end up with the same key. A file that is unsafe or not a key raises
``InvalidNodeKey`` and is left alone: replacing it would change the node's identity.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from swarmget.core.errors import InvalidNodeKey
from swarmget.core.identity import SEED_BYTES, NodeIdentity

__all__ = ["KEY_FILE", "load_node_identity"]

KEY_FILE = "node-key"
_MAX_KEY_FILE = 4096


def load_node_identity(state_dir: Path) -> NodeIdentity:
    """The node's identity from ``state_dir`` (created 0700 when missing); see module doc."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            return _read(dir_fd, state_dir / KEY_FILE)
        except FileNotFoundError:
            pass
        _create(dir_fd)
        return _read(dir_fd, state_dir / KEY_FILE)
    finally:
        os.close(dir_fd)


def _read(dir_fd: int, shown: Path) -> NodeIdentity:
    try:
        fd = os.open(KEY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InvalidNodeKey(f"cannot open the node key {shown}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        _check_trusted(os.fstat(f.fileno()), shown)
        raw = f.read(_MAX_KEY_FILE + 1)
    try:
        seed = bytes.fromhex(raw.decode("ascii").strip())
        return NodeIdentity.from_seed(seed)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidNodeKey(
            f"the node key {shown} is not a key (64 hex digits); restore it from a backup, "
            "or move it away to start this node under a new node id"
        ) from exc


def _check_trusted(info: os.stat_result, shown: Path) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise InvalidNodeKey(f"the node key {shown} is not a regular file")
    if info.st_uid != os.geteuid():
        raise InvalidNodeKey(
            f"the node key {shown} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.geteuid()}): refusing to use it"
        )
    if info.st_mode & 0o077:
        raise InvalidNodeKey(
            f"the node key {shown} is readable or writable by others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}): run `chmod 600 {shown}`, and consider the "
            "key leaked if others could read it (move it away to get a new node id)"
        )


def _create(dir_fd: int) -> None:
    """Write a fresh key to a temporary file and link it into place (unless one appeared)."""
    identity = NodeIdentity.generate()
    assert len(identity.seed()) == SEED_BYTES
    temporary = f".{KEY_FILE}.{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(temporary, flags, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(identity.seed().hex().encode("ascii") + b"\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # a concurrent start made one first
            os.link(temporary, KEY_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=dir_fd)
