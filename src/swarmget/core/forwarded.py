"""Who a request came from when reverse proxies stand in between (``X-Forwarded-For``).

Theory of operation. Every proxy *appends* the address it got the connection from to
``X-Forwarded-For``, so a list ``a, b, c`` that reaches us from proxy ``P`` says: ``P`` was
connected to by ``c``, which (if it is a proxy itself) was connected to by ``b``, and so on.
Only the entries that machines we trust wrote can be believed, and those are at the *right*
end: anything to the left of the first entry no trusted proxy vouches for is whatever the
client chose to send (``X-Forwarded-For: 10.0.0.7`` costs an attacker one header line).

``client_address`` therefore

1. believes no header at all unless the direct peer (the connection's source address) is
   one of the configured trusted proxies: then the peer is the client;
2. walks the list from the right, skipping entries that are themselves trusted proxies; the
   first entry that is not one is the client;
3. if every entry is a trusted proxy, the leftmost one is the client; with no header (a
   proxy's own request) the peer is;
4. refuses (``ValueError``) an entry it has to read that is not an IP address: a trusted
   proxy wrote it, so the proxy is misconfigured, and guessing would be worse.

Several ``X-Forwarded-For`` header lines are one list, in order (RFC 9110 §5.3). An entry may
carry a port (``192.0.2.1:4711``, ``[2001:db8::1]:4711``), which is dropped. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from swarmget.core.addresses import IPAddress, IPNetwork

__all__ = ["client_address", "is_trusted"]


def client_address(peer: str, forwarded_for: Iterable[str], trusted: Sequence[IPNetwork]) -> str:
    """The client's address as the module doc explains: ``peer`` itself (as given) when the
    header is not to be read, else the chosen entry in canonical form. ``peer`` is the
    connection's source address, ``forwarded_for`` every ``X-Forwarded-For`` header value in
    order. Raises ``ValueError`` when ``peer`` or an entry that must be read is no address."""
    address = _parse(peer)
    if not is_trusted(address, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    hops = [hop for hop in hops if hop]
    if not hops:
        return peer
    for hop in reversed(hops):
        address = _parse(hop)
        if not is_trusted(address, trusted):
            break
    return str(address)


def is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def _parse(text: str) -> IPAddress:
    """An address, an IPv4 ``address:port`` or an IPv6 ``[address]:port``; IPv4-mapped IPv6
    as plain IPv4; an IPv6 zone dropped."""
    host = text.strip()
    if host.startswith("["):
        host, sep, rest = host[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            raise ValueError(f"not an address: {text!r}")
    elif host.count(":") == 1:
        host, port = host.split(":")
        if not port.isdigit():
            raise ValueError(f"not an address: {text!r}")
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
