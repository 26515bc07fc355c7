"""Which addresses a node may connect to on another node's behalf: the anti-SSRF policy.

Theory of operation. A helper node fetches URLs that other nodes name, so whoever can ask
it to fetch could aim it at the node's own loopback services, the LAN, or a cloud metadata
service (169.254.169.254). ``AddressPolicy.check`` is asked about the *resolved* address of
every outgoing connection (``net.guard`` calls it from the socket factory, just before
``connect()``), so names, redirects, DNS rebinding and odd spellings of an IP literal all
end up here as the address the packet would go to.

An address is allowed when it is globally routable unicast, or when it (or the IPv4
address an IPv4-mapped or NAT64 IPv6 address stands for) lies inside one of
``allowed_networks``. Everything else is refused with ``ForbiddenTarget``:

=====================================================  ==============================  =======
range                                                  reason                          private
=====================================================  ==============================  =======
0.0.0.0/8, ::/128                                      unspecified ("this network")
127.0.0.0/8, ::1/128                                   loopback
169.254.0.0/16, fe80::/10                              link-local (cloud metadata!)
224.0.0.0/4, ff00::/8                                  multicast
255.255.255.255/32                                     broadcast
240.0.0.0/4, IPv6 outside 2000::/3                     reserved
100.100.100.200/32, fd00:ec2::254/128                  cloud metadata service
10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7    private (RFC 1918 / 4193)       yes
100.64.0.0/10                                          shared address space (CGNAT)    yes
192.0.0.0/24, 192.0.2.0/24, 198.18.0.0/15, ...         special-purpose (RFC 6890)
2001::/23, 2001:db8::/32, 3fff::/20, 64:ff9b:1::/48    special-purpose (RFC 6890)
=====================================================  ==============================  =======

``allow_private=True`` lifts only the rows marked *private* (an origin on the LAN); it
never opens loopback (the node's own services), link-local or metadata addresses: those
need an explicit ``allowed_networks`` entry (``127.0.0.0/8`` in tests and the demo).

IPv6 forms that embed an IPv4 address are judged by it: IPv4-mapped ``::ffff:a.b.c.d``
and NAT64 ``64:ff9b::a.b.c.d`` (RFC 6052) *are* that IPv4 address as far as the packet
is concerned; IPv4-compatible ``::a.b.c.d`` and 6to4 ``2002:AABB:CCDD::/48`` (RFC 3056)
are refused when the embedded address is, and otherwise judged as IPv6.

The tables are spelled out here rather than taken from ``ipaddress.is_global`` because
that property's lists changed between Python patch releases; ``is_global`` is consulted
last, so a newer Python can only make the policy stricter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from swarmget.core.errors import ForbiddenTarget, UsageError

__all__ = ["ALLOW_HINT", "AddressPolicy", "IPNetwork", "parse_cidrs"]

IPNetwork = IPv4Network | IPv6Network
IPAddress = IPv4Address | IPv6Address

#: How the user lifts a refusal; appended to every ``ForbiddenTarget`` message.
ALLOW_HINT = "use --allow-private-origins CIDR to allow"


@dataclass(frozen=True, slots=True)
class _Refusal:
    reason: str
    private: bool = False  # lifted by AddressPolicy.allow_private


def _table(*rows: tuple[str, str, bool]) -> tuple[tuple[IPNetwork, _Refusal], ...]:
    return tuple((ipaddress.ip_network(net), _Refusal(why, private)) for net, why, private in rows)


# First match wins, so the metadata rows come before the ranges that contain them.
_IPV4_SPECIAL = _table(
    ("0.0.0.0/8", "unspecified ('this network') address", False),
    ("127.0.0.0/8", "loopback address", False),
    ("169.254.0.0/16", "link-local address", False),
    ("224.0.0.0/4", "multicast address", False),
    ("255.255.255.255/32", "broadcast address", False),
    ("240.0.0.0/4", "reserved address", False),
    ("100.100.100.200/32", "cloud metadata service address", False),
    ("10.0.0.0/8", "private address (RFC 1918)", True),
    ("172.16.0.0/12", "private address (RFC 1918)", True),
    ("192.168.0.0/16", "private address (RFC 1918)", True),
    ("100.64.0.0/10", "shared address space (RFC 6598, carrier-grade NAT)", True),
    ("192.0.0.0/24", "special-purpose address (IETF protocol assignments)", False),
    ("192.0.2.0/24", "documentation address (RFC 5737)", False),
    ("198.51.100.0/24", "documentation address (RFC 5737)", False),
    ("203.0.113.0/24", "documentation address (RFC 5737)", False),
    ("198.18.0.0/15", "benchmarking address (RFC 2544)", False),
)
_IPV6_SPECIAL = _table(
    ("::/128", "unspecified address", False),
    ("::1/128", "loopback address", False),
    ("fe80::/10", "link-local address", False),
    ("fec0::/10", "site-local address (deprecated)", False),
    ("ff00::/8", "multicast address", False),
    ("fd00:ec2::254/128", "cloud metadata service address", False),
    ("fc00::/7", "private address (unique local, RFC 4193)", True),
    ("64:ff9b:1::/48", "local-use NAT64 address (RFC 8215)", False),
    ("2001::/23", "special-purpose address (IETF protocol assignments)", False),
    ("2001:db8::/32", "documentation address (RFC 3849)", False),
    ("3fff::/20", "documentation address (RFC 9637)", False),
)
_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
_NAT64_WKP = IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_IPV4_COMPATIBLE = IPv6Network("::/96")  # RFC 4291 §2.5.5.1, deprecated
_UNSPECIFIED_OR_LOOPBACK_V6 = IPv6Network("::/127")


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressPolicy:
    """Where outgoing connections may go (see the module docstring for the table).

    ``allow_private`` lets in RFC 1918, unique-local and shared (CGNAT) addresses;
    ``allowed_networks`` lets in anything inside them (build it with ``parse_cidrs``).
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def check(self, ip: str) -> None:
        """Return if connecting to the IP address ``ip`` is allowed; raise
        ``ForbiddenTarget`` (naming the address and why) otherwise. Anything that does not
        parse as an IP address is refused too."""
        reason = self.refusal(ip)
        if reason is not None:
            raise ForbiddenTarget(f"refusing to connect to {ip}: {reason} ({ALLOW_HINT})")

    def refusal(self, ip: str) -> str | None:
        """Why connecting to ``ip`` is refused, or None when it is allowed."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return "not an IP address"
        if self._allow_listed(addr):
            return None
        refusal = _classify(addr)
        if refusal is None or (refusal.private and self.allow_private):
            return None
        return refusal.reason

    def _allow_listed(self, addr: IPAddress) -> bool:
        equivalent = _equivalent_ipv4(addr)
        candidates = [addr] if equivalent is None else [addr, equivalent]
        # The version test matters: ``IPv4Address in IPv6Network`` compares bare integers.
        return any(
            a.version == net.version and a in net
            for a in candidates
            for net in self.allowed_networks
        )


def parse_cidrs(spec: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse networks in CIDR notation, e.g. ``"127.0.0.0/8, fd00::/8"`` or a list of such
    strings (each may hold several, split on commas and whitespace). A bare address is a
    one-address network (``/32``, ``/128``). Raises ``UsageError`` naming the bad entry,
    also for host bits set (``10.0.0.1/8``), which is usually a typo."""
    texts = [spec] if isinstance(spec, str) else list(spec)
    return tuple(_parse_cidr(item) for text in texts for item in re.split(r"[\s,]+", text) if item)


def _parse_cidr(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise UsageError(
                f"not an IP network in CIDR notation (like 10.0.0.0/8 or fd00::/8): {text!r}"
            ) from exc
        raise UsageError(f"{text!r} has host bits set; did you mean {loose}?") from exc


# --- classification -------------------------------------------------------------------------


def _classify(addr: IPAddress) -> _Refusal | None:
    if isinstance(addr, IPv4Address):
        return _classify_v4(addr)
    return _classify_v6(addr)


def _classify_v4(addr: IPv4Address) -> _Refusal | None:
    for net, refusal in _IPV4_SPECIAL:
        if addr in net:
            return refusal
    if not addr.is_global:  # whatever this Python knows beyond the table
        return _Refusal("special-purpose address (not globally routable)")
    return None


def _classify_v6(addr: IPv6Address) -> _Refusal | None:
    equivalent = _equivalent_ipv4(addr)
    if equivalent is not None:  # mapped / NAT64: the IPv4 address is the real target
        return _embedded(addr, equivalent, equivalent=True)
    embedded = _embedded_ipv4(addr)
    if embedded is not None:  # compatible / 6to4: refused if it is, else judged as IPv6
        refusal = _embedded(addr, embedded, equivalent=False)
        if refusal is not None:
            return refusal
    return _classify_v6_itself(addr)


def _classify_v6_itself(addr: IPv6Address) -> _Refusal | None:
    for net, refusal in _IPV6_SPECIAL:
        if addr in net:
            return refusal
    if addr not in _GLOBAL_UNICAST_V6:
        return _Refusal("reserved address (outside the global unicast range 2000::/3)")
    if not addr.is_global:
        return _Refusal("special-purpose address (not globally routable)")
    return None


def _embedded(addr: IPv6Address, v4: IPv4Address, *, equivalent: bool) -> _Refusal | None:
    """The refusal of an IPv6 address for the IPv4 address it embeds. Only the forms that
    *are* the IPv4 address (mapped, NAT64) inherit ``private``: allowing private IPv4
    origins is no reason to allow a deprecated IPv6 spelling of them."""
    refusal = _classify_v4(v4)
    if refusal is None:
        return None
    article = "an" if refusal.reason[0] in "aeiou" else "a"
    reason = f"{_form_name(addr)} of {v4}, {article} {refusal.reason}"
    return _Refusal(reason, private=refusal.private and equivalent)


def _form_name(addr: IPv6Address) -> str:
    if addr.ipv4_mapped is not None:
        return "IPv4-mapped IPv6 address"
    if addr in _NAT64_WKP:
        return "NAT64 IPv6 address"
    if addr.sixtofour is not None:
        return "6to4 IPv6 address"
    return "IPv4-compatible IPv6 address"


def _equivalent_ipv4(addr: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address reaches, if it is one."""
    if isinstance(addr, IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64_WKP:
        return _low_32_bits(addr)
    return None


def _embedded_ipv4(addr: IPv6Address) -> IPv4Address | None:
    """The IPv4 address inside a 6to4 or IPv4-compatible IPv6 address, if it is one
    (``::`` and ``::1`` are not: they are the unspecified and loopback addresses)."""
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _IPV4_COMPATIBLE and addr not in _UNSPECIFIED_OR_LOOPBACK_V6:
        return _low_32_bits(addr)
    return None


def _low_32_bits(addr: IPv6Address) -> IPv4Address:
    return IPv4Address(int(addr) & 0xFFFF_FFFF)
