"""Which local user is at the other end of a connection to the node's local API.

Everyone on a host can connect to 127.0.0.1, and a browser sends a site's cookies to every
port of that host: a portal session cookie is not safe from another local user on its own.
So the node's local API (and the portal on it) also checks *who* connects:

* on its Unix socket, the kernel says (``SO_PEERCRED``);
* on 127.0.0.1, the client's socket is on this host too, and Linux lists it in
  ``/proc/net/tcp`` (``tcp6``) with its owner's uid: the entry whose local address is the
  connection's peer and whose remote address is ours (the way ``identd`` answers).

``connection_uid`` returns that uid, or None when it cannot be told (then the caller refuses).
Reading ``/proc/net/tcp`` makes the kernel list every TCP socket of the host: with a swarm of
connections that is milliseconds of CPU on the event loop, so ``ConnectionUids`` asks once per
connection (a keep-alive connection's owner cannot change) rather than once per request.
``find_uid`` is the pure parser of the table, for the tests and for whoever reads the table.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["ConnectionUids", "connection_uid", "find_uid", "proc_address"]

_TABLES = {socket.AF_INET: "/proc/net/tcp", socket.AF_INET6: "/proc/net/tcp6"}


def proc_address(family: int, host: str, port: int) -> str:
    """``host:port`` as ``/proc/net/tcp*`` writes it: the address as 32-bit words in host
    byte order, each ``%08X``; the port ``%04X``."""
    packed = socket.inet_pton(family, host)
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


def find_uid(table: str, local: str, remote: str) -> int | None:
    """The uid owning the socket whose local and remote addresses (``proc_address`` form)
    are these, in the text of a ``/proc/net/tcp*`` table; None when it is not listed."""
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 7 and fields[1] == local and fields[2] == remote:
            with contextlib.suppress(ValueError):
                return int(fields[7])
    return None


def connection_uid(transport: Any) -> int | None:
    """The uid of the process at the other end of ``transport`` (an asyncio transport of
    an accepted connection), when this host can tell: a Unix socket, or TCP on this host."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return None
    try:
        if sock.family == socket.AF_UNIX:
            size = struct.calcsize("3i")
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
            return int(struct.unpack("3i", creds)[1])  # pid, uid, gid
        table_path = _TABLES.get(sock.family)
        peer, ours = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        if table_path is None or not peer or not ours:
            return None
        local = proc_address(sock.family, peer[0], peer[1])
        remote = proc_address(sock.family, ours[0], ours[1])
        with open(table_path, encoding="ascii") as f:
            return find_uid(f.read(), local, remote)
    except (OSError, ValueError):
        return None


class ConnectionUids:
    """``connection_uid`` remembered per connection (transport) while it lives: a uid found
    is the socket's owner for good. A connection whose owner could not be told is asked
    again on its next request."""

    def __init__(self, lookup: Callable[[Any], int | None] = connection_uid) -> None:
        self._lookup = lookup
        self._known: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    def uid(self, transport: Any) -> int | None:
        if transport is None:
            return None
        try:
            return self._known[transport]
        except KeyError:
            pass
        except TypeError:  # cannot be weakly referenced: nothing to remember it by
            return self._lookup(transport)
        uid = self._lookup(transport)
        if uid is not None:
            self._known[transport] = uid
        return uid
