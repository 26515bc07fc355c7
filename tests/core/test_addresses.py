"""The anti-SSRF address policy: what is refused, why, and how the allow-list lifts it."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.addresses import ALLOW_HINT, AddressPolicy, parse_cidrs
from swarmget.core.errors import ForbiddenTarget, OriginUnusable, UsageError

DEFAULT = AddressPolicy()
PRIVATE_OK = AddressPolicy(allow_private=True)
LOOPBACK_OK = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below 100.64/10
    "100.128.0.0",  # just above it
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above it
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
]

# (address, words the reason must contain)
FORBIDDEN = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("100.64.0.1", "shared address space"),
    ("100.100.100.200", "metadata"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.192", "special-purpose"),
    ("192.0.2.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fd00::1", "private"),
    ("fc00::1", "private"),
    ("fd00:ec2::254", "metadata"),
    ("ff02::1", "multicast"),
    ("fec0::1", "site-local"),
    ("2001:db8::1", "documentation"),
    ("2001::1", "special-purpose"),  # Teredo
    ("100::1", "reserved"),  # discard-only, outside 2000::/3
    ("64:ff9b:1::1", "NAT64"),
    # IPv6 forms that embed a forbidden IPv4 address
    ("::ffff:127.0.0.1", "IPv4-mapped IPv6 address of 127.0.0.1, a loopback"),
    ("::ffff:169.254.169.254", "IPv4-mapped IPv6 address of 169.254.169.254, a link-local"),
    ("::ffff:10.1.2.3", "IPv4-mapped IPv6 address of 10.1.2.3, a private"),
    ("::ffff:0.0.0.0", "IPv4-mapped IPv6 address of 0.0.0.0, an unspecified"),
    ("::127.0.0.1", "IPv4-compatible IPv6 address of 127.0.0.1, a loopback"),
    ("::a9fe:a9fe", "IPv4-compatible IPv6 address of 169.254.169.254"),
    ("2002:7f00:1::", "6to4 IPv6 address of 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4 IPv6 address of 169.254.169.254"),
    ("64:ff9b::7f00:1", "NAT64 IPv6 address of 127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64 IPv6 address of 169.254.169.254"),
    ("::8.8.8.8", "reserved"),  # IPv4-compatible is deprecated even for a public address
    # not an address at all: fail closed
    ("localhost", "not an IP address"),
    ("", "not an IP address"),
    ("2130706433", "not an IP address"),
]


@pytest.mark.parametrize("ip", ALLOWED)
def test_globally_routable_addresses_pass(ip: str) -> None:
    DEFAULT.check(ip)
    assert DEFAULT.refusal(ip) is None


@pytest.mark.parametrize(("ip", "why"), FORBIDDEN)
def test_non_global_addresses_are_refused_with_the_reason(ip: str, why: str) -> None:
    with pytest.raises(ForbiddenTarget) as info:
        DEFAULT.check(ip)
    message = str(info.value)
    assert message.startswith(f"refusing to connect to {ip}: ")
    assert why in message
    assert message.endswith(f"({ALLOW_HINT})")


def test_the_message_matches_the_documented_wording() -> None:
    with pytest.raises(ForbiddenTarget) as info:
        DEFAULT.check("169.254.169.254")
    assert str(info.value) == (
        "refusing to connect to 169.254.169.254: link-local address "
        "(use --allow-private-origins CIDR to allow)"
    )
    assert info.value.code == "forbidden_target"
    assert isinstance(info.value, OriginUnusable)


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "64:ff9b::7f00:1"])
def test_allow_list_lifts_loopback_and_its_ipv4_equivalents(ip: str) -> None:
    LOOPBACK_OK.check(ip)


@pytest.mark.parametrize(
    "ip", ["::1", "10.0.0.1", "169.254.169.254", "2002:7f00:1::", "::127.0.0.1"]
)
def test_allow_list_lifts_nothing_else(ip: str) -> None:
    with pytest.raises(ForbiddenTarget):
        LOOPBACK_OK.check(ip)


def test_allow_list_of_one_address() -> None:
    policy = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.2"))
    policy.check("127.0.0.2")
    with pytest.raises(ForbiddenTarget, match="127.0.0.1: loopback"):
        policy.check("127.0.0.1")


def test_ipv6_allow_list_does_not_match_ipv4_addresses() -> None:
    # ``IPv4Address in IPv6Network`` compares bare integers: 127.0.0.1 "is in" ::/96.
    policy = AddressPolicy(allowed_networks=parse_cidrs("::/96"))
    with pytest.raises(ForbiddenTarget):
        policy.check("127.0.0.1")


@pytest.mark.parametrize(
    "ip",
    ["10.0.0.1", "172.20.1.1", "192.168.0.10", "100.64.0.1", "fd12:3456::1", "::ffff:10.0.0.1"],
)
def test_allow_private_lifts_lan_addresses(ip: str) -> None:
    PRIVATE_OK.check(ip)


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",  # the node's own services
        "::1",
        "169.254.169.254",  # cloud metadata
        "100.100.100.200",  # cloud metadata inside 100.64/10
        "fd00:ec2::254",  # cloud metadata inside fc00::/7
        "0.0.0.0",
        "224.0.0.1",
        "::10.0.0.1",  # deprecated spellings are not "private", they are odd
        "2002:a00:1::",
    ],
)
def test_allow_private_does_not_lift_loopback_link_local_or_metadata(ip: str) -> None:
    with pytest.raises(ForbiddenTarget):
        PRIVATE_OK.check(ip)


# --- property: the private ranges are always refused -------------------------------------------

_FORBIDDEN_V4 = [
    ipaddress.IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16")
]


@st.composite
def _forbidden_v4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    net = draw(st.sampled_from(_FORBIDDEN_V4))
    offset = draw(st.integers(min_value=0, max_value=net.num_addresses - 1))
    return net.network_address + offset


@given(_forbidden_v4())
def test_any_address_in_the_forbidden_ranges_is_refused(addr: ipaddress.IPv4Address) -> None:
    for spelling in (str(addr), f"::ffff:{addr}", str(ipaddress.IPv6Address(f"::ffff:{addr}"))):
        with pytest.raises(ForbiddenTarget):
            DEFAULT.check(spelling)


@given(_forbidden_v4())
def test_any_address_in_the_forbidden_ranges_passes_a_matching_allow_list(
    addr: ipaddress.IPv4Address,
) -> None:
    policy = AddressPolicy(allowed_networks=(ipaddress.IPv4Network(f"{addr}/32"),))
    policy.check(str(addr))


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_check_and_refusal_agree(n: int) -> None:
    ip = str(ipaddress.IPv4Address(n))
    if DEFAULT.refusal(ip) is None:
        DEFAULT.check(ip)
    else:
        with pytest.raises(ForbiddenTarget):
            DEFAULT.check(ip)


# --- parse_cidrs -----------------------------------------------------------------------------


def test_parse_cidrs_accepts_text_lists_and_bare_addresses() -> None:
    expected = (
        ipaddress.IPv4Network("127.0.0.0/8"),
        ipaddress.IPv6Network("fd00::/8"),
        ipaddress.IPv4Network("10.1.2.3/32"),
    )
    assert parse_cidrs("127.0.0.0/8, fd00::/8 10.1.2.3") == expected
    assert parse_cidrs(["127.0.0.0/8", "fd00::/8,10.1.2.3"]) == expected
    assert parse_cidrs("") == ()
    assert parse_cidrs([]) == ()


def test_parse_cidrs_names_host_bits_typos() -> None:
    with pytest.raises(
        UsageError, match=r"'10\.0\.0\.1/8' has host bits set; did you mean 10\.0\.0\.0/8"
    ):
        parse_cidrs("10.0.0.1/8")


@pytest.mark.parametrize(
    "bad", ["localhost", "10.0.0.0/33", "300.1.1.1", "127.1", "fd00::/129", "0177.0.0.1"]
)
def test_parse_cidrs_refuses_nonsense(bad: str) -> None:
    with pytest.raises(UsageError, match="not an IP network in CIDR notation") as info:
        parse_cidrs(f"127.0.0.0/8,{bad}")
    assert repr(bad) in str(info.value)
