"""The node's state directory: private to the user who runs the node.

The directory is 0700 and every file in it 0600: the API token, ``node.json``, the download
journal, the quota journal, keys. ``open_private_dir`` makes (or tightens) it when a node
starts; files are written atomically through a directory descriptor (a fresh ``O_EXCL |
O_NOFOLLOW`` temporary file, then ``rename``), so a link planted in the directory is never
followed. The node's user API socket (``api.sock``) lives here too: because nobody else can
create anything in the directory, a client that finds the socket there, owned by the
directory's owner, talks to that user's node and to nobody else (see ``run.remote``).

With group access (``[node] api_group_access``, for a node run by systemd as its own user)
the directory is 0750, and ``node.json``, ``api-token`` (0640) and ``api.sock`` (0660)
belong to the directory's group: its members may drive the node (the kernel checks who may
connect to the socket); nobody else may, and every other file stays 0600.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

from swarmget.core.errors import UsageError

API_SOCKET = "api.sock"
TOKEN_FILE = "api-token"
NODE_FILE = "node.json"
DIR_MODE = 0o700
FILE_MODE = 0o600
GROUP_DIR_MODE = 0o750
GROUP_FILE_MODE = 0o640
GROUP_SOCKET_MODE = 0o660
#: The files a member of the directory's group needs to reach the node (group access).
SHARED_FILES = frozenset({NODE_FILE, TOKEN_FILE})


def open_private_dir(path: Path, *, group_access: bool = False) -> None:
    """Create ``path`` (0700; 0750 with ``group_access``), or tighten an existing one of
    ours to that mode and the regular files in it to 0600. Raises ``UsageError`` when
    another user owns it."""
    mode = GROUP_DIR_MODE if group_access else DIR_MODE
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise UsageError(f"the state directory {path} belongs to another user")
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
        for name in os.listdir(fd):
            _tighten(fd, name)
    finally:
        os.close(fd)


def share_with_group(state_dir: Path, name: str, mode: int) -> None:
    """Give ``name`` (in ``state_dir``) the directory's group and ``mode`` (group access)."""
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chown(name, -1, os.fstat(fd).st_gid, dir_fd=fd, follow_symlinks=False)
        os.chmod(name, mode, dir_fd=fd)
    finally:
        os.close(fd)


def _tighten(dir_fd: int, name: str) -> None:
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return  # a directory, a symlink, a socket: not a file of ours to fix
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return  # gone meanwhile
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically by a 0600 file holding ``data``."""
    import secrets  # (the node's, not a client's: ~5 ms of a plain `get`'s start)

    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        tmp = f".{path.name}.{secrets.token_hex(6)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        out = os.open(tmp, flags, FILE_MODE, dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as f:
                f.write(data)
            os.replace(tmp, path.name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise
    finally:
        os.close(fd)


def new_api_token(state_dir: Path, *, group_access: bool = False) -> str:
    """A fresh random bearer token for the user API, written to ``api-token`` (0600; 0640
    for the directory's group with ``group_access``).

    Made at every start: a token read by someone who should not have it dies with the run.
    """
    import secrets  # (see above)

    token = secrets.token_urlsafe(32)
    write_private(state_dir / TOKEN_FILE, (token + "\n").encode())
    if group_access:
        share_with_group(state_dir, TOKEN_FILE, GROUP_FILE_MODE)
    return token


def bind_api_socket(state_dir: Path, *, group_access: bool = False) -> socket.socket:
    """A listening Unix socket at ``state_dir/api.sock`` (0600; 0660 for the directory's
    group with ``group_access``).

    A socket left behind by a node that crashed is replaced; one a live node answers on is
    not (``UsageError``: two nodes cannot share a state directory). Bound through the
    directory's descriptor, so the length of ``state_dir`` does not matter.
    """
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        path = f"/proc/self/fd/{fd}/{API_SOCKET}"
        if _answers(path):
            raise UsageError(f"another node runs with the state directory {state_dir}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(API_SOCKET, dir_fd=fd)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(API_SOCKET, FILE_MODE, dir_fd=fd)
            if group_access:
                share_with_group(state_dir, API_SOCKET, GROUP_SOCKET_MODE)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def remove_quietly(state_dir: Path, *names: str) -> None:
    """Remove the files a stopped node leaves no use for (``node.json``, ``api.sock``)."""
    for name in names:
        with contextlib.suppress(OSError):
            (state_dir / name).unlink()
