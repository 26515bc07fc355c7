"""Which nodes may help each other: the group rule.

The paper's hub lists, for a requester, the registered clients whose IP address shares its
first 16 bits ("if the clients are on the same local network they must have same first 16
bits"). We keep that rule as the default and make it explicit and configurable:

* a node that declares a group name is in that group, whatever its address (for LANs that
  span prefixes, or machines reached over both IPv4 and IPv6);
* otherwise its group is its address masked to the first ``prefix_bits`` bits for IPv4
  (default 16), or ``v6_prefix_bits`` for IPv6 (default 64, the size of one LAN segment; 16
  bits of an IPv6 address would put half the internet in one group). An IPv4-mapped IPv6
  address (``::ffff:10.1.2.3``, as a dual-stack socket reports IPv4 peers) counts as IPv4.

Groups are strings: a declared name as given, an address group as its network in CIDR form
(``10.1.0.0/16``). Pure: no I/O.

Who may declare what (``GroupPolicy``): a declared name is only a claim, and every member of a
swarm holds its secret, so a hub that believed any name would let any member join any group
(and be sent that group's range requests). A hub therefore accepts a declared name only from
an address inside one of the networks its operator listed for that name (``--group-cidr
NAME=CIDR``, repeatable), or when the name is the node's own address group anyway. Anything
else is refused (not silently regrouped: a node that believes it is in group X while it is
not would be hard to debug).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "GroupPolicy",
    "DEFAULT_PREFIX_BITS",
    "DEFAULT_V6_PREFIX_BITS",
    "canonical_address",
    "group_of",
    "is_valid_group_name",
]

DEFAULT_PREFIX_BITS = 16
DEFAULT_V6_PREFIX_BITS = 64

_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")


def is_valid_group_name(name: str) -> bool:
    """Declared group names are 1-64 characters of ``A-Z a-z 0-9 . _ : / -``."""
    return _GROUP_NAME.fullmatch(name) is not None


def group_of(
    address: str,
    declared: str | None,
    prefix_bits: int = DEFAULT_PREFIX_BITS,
    *,
    v6_prefix_bits: int = DEFAULT_V6_PREFIX_BITS,
) -> str:
    """The group of a node seen at ``address`` that declared ``declared`` (or None).

    Raises ``ValueError`` for an address that is not an IP address, an invalid declared
    name, or a prefix length out of range.
    """
    if declared is not None:
        if not is_valid_group_name(declared):
            raise ValueError(f"invalid group name {declared!r}")
        return declared
    ip = _parse_ip(address)
    bits = prefix_bits if ip.version == 4 else v6_prefix_bits
    if not 0 <= bits <= ip.max_prefixlen:
        raise ValueError(f"prefix length {bits} out of range for IPv{ip.version}")
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def canonical_address(address: str) -> str:
    """``address`` in its canonical text form, an IPv4-mapped IPv6 address as plain IPv4
    (an IPv6 zone is kept: a link-local address needs it). Raises ``ValueError`` for
    anything that is not an IP address."""
    host, zone = address.split("%", 1) if "%" in address else (address, "")
    ip = _parse_ip(host)
    return f"{ip}%{zone}" if zone and ip.version == 6 else str(ip)


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """Which addresses may declare which group names (see module doc). ``networks`` maps a
    group name to the networks whose nodes may declare it."""

    networks: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> GroupPolicy:
        """From ``NAME=CIDR`` strings (a name may be given several times). Raises
        ``ValueError`` naming the bad spec."""
        networks: dict[str, list[Network]] = {}
        for spec in specs:
            name, sep, cidr = spec.partition("=")
            name, cidr = name.strip(), cidr.strip()
            if not sep or not is_valid_group_name(name):
                raise ValueError(f"group spec {spec!r}: want NAME=CIDR, e.g. lab=10.1.0.0/16")
            try:
                network = ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"group spec {spec!r}: {exc}") from exc
            networks.setdefault(name, []).append(network)
        return cls({name: tuple(nets) for name, nets in networks.items()})

    def allows(self, address: str, declared: str, address_group: str) -> bool:
        """Whether a node at ``address`` (whose address group is ``address_group``) may
        declare ``declared``."""
        if declared == address_group:
            return True
        ip = _parse_ip(address)
        return any(ip in network for network in self.networks.get(declared, ()))
