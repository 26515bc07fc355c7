"""Outgoing connections that cannot be turned against the LAN: ``core.addresses`` applied.

A helper node fetches URLs other nodes name, so every connection it opens is checked
against an ``AddressPolicy`` at the last moment, on the address the packet would go to:

* The socket factory of the ``TCPConnector`` (aiohttp ≥ 3.12 passes it the resolved
  ``AddrInfoType`` just before ``connect()``, via ``aiohappyeyeballs``) refuses a forbidden
  address, so no packet is sent to it. This is the check nothing gets around: it sees IP
  literals (aiohttp skips the resolver for them), every redirect hop and every happy-eyeballs
  attempt, and what DNS said *this* time (no rebinding window between check and use).
* ``GuardedResolver`` filters resolved addresses first, so a name with public and private
  addresses connects to the public ones only, and a name with nothing allowed (such as
  ``localhost`` → 127.0.0.1 and ::1) fails with a single clear reason instead of aiohttp's
  "Multiple exceptions" summary of every attempt.

Legacy spellings of IPv4 literals (``2130706433``, ``0177.0.0.1``, ``127.1``) are refused
by aiohttp itself (``aiohttp.InvalidURL``) before they reach us; hexadecimal ones
(``0x7f.1``) go to the resolver, which turns them into 127.0.0.1, which is refused.

A refusal is raised as ``ForbiddenConnection``, an ``OSError`` (aiohappyeyeballs and aiohttp
only pass ``OSError`` through their connect paths), which aiohttp wraps in a
``ClientConnectorError``; ``forbidden_target`` digs it out again as the error tree's
``ForbiddenTarget`` for the adapter that translates aiohttp errors.

The guard checks where *we* connect. Through an HTTP proxy that is the proxy, which would
fetch anything, so ``open_guarded_session`` refuses ``trust_env=True`` (proxies from the
environment); do not pass ``proxy=`` to requests on a guarded session.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from swarmget.core.addresses import AddressPolicy
from swarmget.core.errors import ForbiddenTarget, UsageError

__all__ = [
    "ForbiddenConnection",
    "GuardedResolver",
    "forbidden_target",
    "make_guarded_connector",
    "open_guarded_session",
]


class ForbiddenConnection(OSError):
    """A connection the address policy refused; ``target`` is the error-tree form.

    An ``OSError`` (EACCES) so that it travels through aiohttp's connect path like any
    connect failure; ``str()`` is the policy's message.
    """

    def __init__(self, target: ForbiddenTarget) -> None:
        super().__init__(errno.EACCES, str(target))
        self.target = target


def forbidden_target(exc: BaseException, what: str) -> ForbiddenTarget | None:
    """The ``ForbiddenTarget`` for ``exc`` when the guard refused the connection that
    ``exc`` (typically an ``aiohttp.ClientConnectorError``) reports, else None.

    Follows ``__cause__`` and ``ClientConnectorError.os_error``; ``what`` prefixes the
    message (e.g. ``"HEAD http://10.0.0.1/"``).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ForbiddenConnection):
            return ForbiddenTarget(f"{what}: {current.target}")
        seen.add(id(current))
        current = _cause(current)
    return None


def _cause(exc: BaseException) -> BaseException | None:
    if exc.__cause__ is not None:
        return exc.__cause__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error
    return None


class GuardedResolver(AbstractResolver):
    """Wraps ``inner`` and keeps only the addresses ``policy`` allows; raises
    ``ForbiddenConnection`` (for the first address) when none is left.

    ``close()`` closes ``inner``; a connector given this resolver does not own it, so
    whoever made ``inner`` stays responsible for it (``ThreadedResolver`` needs no closing).
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._policy.refusal(r["host"]) is None]
        if results and not allowed:
            _check(self._policy, results[0]["host"])
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def make_guarded_connector(
    policy: AddressPolicy,
    *,
    local_addr: str | None = None,
    limit: int = 100,
    **kw: Any,
) -> aiohttp.TCPConnector:
    """A ``TCPConnector`` whose every connect is checked against ``policy``.

    ``local_addr`` (an IP address) binds outgoing connections to that source address, so
    nodes on 127.0.0.2, 127.0.0.3 ... look like separate machines to an origin; connecting
    to the other address family then fails. ``kw`` goes to ``TCPConnector``; a ``resolver``
    there is wrapped in the guard; ``socket_factory`` cannot be given. Call it with an
    event loop running (aiohttp needs one); the caller closes the connector (a session
    given it does so by default).
    """
    inner = kw.pop("resolver", None) or aiohttp.ThreadedResolver()
    return aiohttp.TCPConnector(
        limit=limit,
        local_addr=_source_address(local_addr),
        resolver=GuardedResolver(policy, inner),
        socket_factory=_socket_factory(policy),
        **kw,
    )


@asynccontextmanager
async def open_guarded_session(
    policy: AddressPolicy, *, local_addr: str | None = None, **session_kw: Any
) -> AsyncIterator[aiohttp.ClientSession]:
    """A ``ClientSession`` on ``make_guarded_connector(policy, local_addr=...)``, closed
    (with its connector) on exit. ``session_kw`` goes to ``ClientSession``, except
    ``trust_env=True``: environment proxies would bypass the guard (``ValueError``)."""
    if session_kw.get("trust_env"):
        raise ValueError("a guarded session cannot use proxies from the environment")
    connector = make_guarded_connector(policy, local_addr=local_addr)
    try:
        async with aiohttp.ClientSession(connector=connector, **session_kw) as session:
            yield session
    finally:
        await connector.close()  # also when ClientSession() itself failed; idempotent


def _socket_factory(policy: AddressPolicy) -> aiohttp.SocketFactoryType:
    def create_socket(addr_info: aiohttp.AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        _check(policy, str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)

    return create_socket


def _check(policy: AddressPolicy, ip: str) -> None:
    try:
        policy.check(ip)
    except ForbiddenTarget as exc:
        raise ForbiddenConnection(exc) from exc


def _source_address(local_addr: str | None) -> tuple[str, int] | None:
    if local_addr is None:
        return None
    try:
        ipaddress.ip_address(local_addr)
    except ValueError as exc:
        raise UsageError(f"the source address must be an IP address: {local_addr!r}") from exc
    return (local_addr, 0)
