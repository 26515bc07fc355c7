"""Reaching the portal from another machine: its own listen address, TLS, reverse proxies.

By default the portal answers on the node's local API address (127.0.0.1) under the names
that address has, and nothing else: today's strictness. ``PortalAccess`` widens that, each
part opt-in:

* ``listen_host``/``listen_port``: the portal (and only the portal: the user API's routes
  are not served there) on an address of its own, e.g. ``0.0.0.0:7403``. Its requests are
  not checked for the node's local user (a browser elsewhere has none): the portal's own
  login (the API token or a one-time link) and CSRF tokens guard it.
* ``tls_cert``/``tls_key``: that listener speaks HTTPS with this certificate chain and key
  (PEM files). The session cookie is then ``Secure``.
* ``allowed_hosts``: more ``Host`` names the portal answers to (``web.security``): the
  names people type (``swarm.example.org``), a bare name for any port (``localhost`` for an
  SSH tunnel ``ssh -L 9000:127.0.0.1:7402``), ``name:port`` for that port only. A request
  for any other name is refused (403), as is a state-changing request whose ``Origin`` is
  not one of them.
* ``trusted_proxies``: reverse proxies (CIDRs) whose ``X-Forwarded-Host`` and
  ``X-Forwarded-Proto`` are believed; from anyone else those headers are ignored. The name
  a proxy forwards must still be an allowed host.

Behind a reverse proxy (docs: nginx)::

    location /portal/ {
        proxy_pass http://127.0.0.1:7403;
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_buffering off;            # the live updates are Server-Sent Events
    }

with ``--portal-listen 127.0.0.1 --portal-port 7403 --portal-trusted-proxy 127.0.0.1/32
--portal-allowed-host swarm.example.org``.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from swarmget.core.addresses import IPNetwork, parse_cidrs
from swarmget.core.errors import UsageError
from swarmget.core.forwarded import is_trusted
from swarmget.web.security import allowed_hosts

__all__ = ["PortalAccess"]


@dataclass(frozen=True, kw_only=True)
class PortalAccess:
    """How the portal may be reached besides the local API address (module docstring)."""

    listen_host: str | None = None  # None: no listener of its own
    listen_port: int = 7403
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allowed_hosts: tuple[str, ...] = ()
    trusted_proxies: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(
        cls,
        *,
        listen_host: str | None,
        listen_port: int,
        tls_cert: Path | None,
        tls_key: Path | None,
        hosts: tuple[str, ...],
        proxies: tuple[str, ...],
    ) -> PortalAccess:
        """Checked once, at the edge: ``UsageError`` naming the bad setting."""
        if (tls_cert is None) != (tls_key is None):
            raise UsageError("--portal-tls-cert and --portal-tls-key go together")
        if tls_cert is not None and listen_host is None:
            raise UsageError("TLS is for the portal's own listener: give --portal-listen too")
        try:
            allowed_hosts(hosts)
        except ValueError as exc:
            raise UsageError(f"--portal-allowed-host: {exc}") from exc
        access = cls(
            listen_host=listen_host or None,
            listen_port=listen_port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            allowed_hosts=hosts,
            trusted_proxies=parse_cidrs(proxies) if proxies else (),
        )
        access.ssl_context()  # a certificate that cannot be loaded fails now, not later
        return access

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"

    @property
    def schemes(self) -> frozenset[str]:
        """The schemes of the portal's own pages: https too with TLS or behind a proxy."""
        if self.tls_cert is not None or self.trusted_proxies:
            return frozenset({"http", "https"})
        return frozenset({"http"})

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (None without a certificate); ``UsageError`` if the
        files cannot be read or do not match."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot use the portal's TLS certificate: {exc}") from exc
        return context

    def trusts(self, peer: str | None) -> bool:
        """Whether the connection's peer is one of the trusted reverse proxies."""
        if peer is None or not self.trusted_proxies:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return is_trusted(address, self.trusted_proxies)
