"""The group rule: declared name, else the address masked to a prefix (pure)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.groups import canonical_address, group_of


@pytest.mark.parametrize(
    ("address", "bits", "group"),
    [
        ("192.168.1.20", 16, "192.168.0.0/16"),
        ("192.168.77.3", 16, "192.168.0.0/16"),
        ("127.0.0.2", 24, "127.0.0.0/24"),
        ("127.0.1.2", 24, "127.0.1.0/24"),
        ("10.1.2.3", 32, "10.1.2.3/32"),
        ("10.1.2.3", 0, "0.0.0.0/0"),
        ("::ffff:10.1.2.3", 16, "10.1.0.0/16"),
    ],
)
def test_ipv4_groups_by_prefix(address: str, bits: int, group: str) -> None:
    assert group_of(address, None, bits) == group


def test_ipv6_uses_its_own_prefix() -> None:
    assert group_of("2001:db8:1:2:3::4", None, 16) == "2001:db8:1:2::/64"
    assert group_of("2001:db8:1:2:3::4", None, 16, v6_prefix_bits=48) == "2001:db8:1::/48"
    assert group_of("fe80::1%eth0", None) == "fe80::/64"


def test_declared_group_wins_over_address() -> None:
    assert group_of("10.0.0.1", "lab-3", 16) == "lab-3"
    assert group_of("192.168.0.1", "lab-3", 16) == group_of("10.0.0.1", "lab-3", 16)


@pytest.mark.parametrize("bad", ["", "has space", "x" * 65, "-leading-dash", "a\nb"])
def test_invalid_declared_group(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid group"):
        group_of("10.0.0.1", bad, 16)


@pytest.mark.parametrize(
    ("address", "bits"), [("not-an-ip", 16), ("10.0.0.1", 33), ("::1", -1), ("", 16)]
)
def test_invalid_address_or_prefix(address: str, bits: int) -> None:
    with pytest.raises(ValueError, match="address|prefix length"):
        group_of(address, None, bits, v6_prefix_bits=bits)


def test_canonical_address() -> None:
    assert canonical_address("::ffff:192.168.1.2") == "192.168.1.2"
    assert canonical_address("2001:DB8::0001") == "2001:db8::1"
    assert canonical_address("fe80::0001%eth0") == "fe80::1%eth0"
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        canonical_address("example.org")


@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 32))
def test_same_group_iff_same_prefix(
    a: ipaddress.IPv4Address, b: ipaddress.IPv4Address, bits: int
) -> None:
    same_prefix = int(a) >> (32 - bits) == int(b) >> (32 - bits)
    assert (group_of(str(a), None, bits) == group_of(str(b), None, bits)) == same_prefix
