"""Whose address X-Forwarded-For gives, behind trusted proxies (pure)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from swarmget.core.addresses import parse_cidrs
from swarmget.core.forwarded import client_address

PROXIES = parse_cidrs("10.0.0.0/30, 2001:db8::/126")


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("192.0.2.7", ["198.51.100.1"], "192.0.2.7"),  # peer not a proxy: header ignored
        ("192.0.2.7", ["garbage"], "192.0.2.7"),
        ("10.0.0.1", [], "10.0.0.1"),  # the proxy's own request
        ("10.0.0.1", [""], "10.0.0.1"),
        ("10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", ["10.66.6.6, 198.51.100.1"], "198.51.100.1"),  # forged left hop
        ("10.0.0.1", ["203.0.113.9, 198.51.100.1, 10.0.0.2"], "198.51.100.1"),
        ("10.0.0.1", ["203.0.113.9", "198.51.100.1"], "198.51.100.1"),  # two header lines
        ("10.0.0.1", ["10.0.0.2, 10.0.0.3"], "10.0.0.2"),  # all proxies: the leftmost
        ("10.0.0.1", ["198.51.100.1:4711"], "198.51.100.1"),
        ("10.0.0.1", ["[2001:db8::99]:4711"], "2001:db8::99"),
        ("10.0.0.1", ["::ffff:198.51.100.1"], "198.51.100.1"),
        ("::ffff:10.0.0.1", ["198.51.100.1"], "198.51.100.1"),  # dual-stack socket peer
        ("2001:db8::1", ["garbage, 198.51.100.1"], "198.51.100.1"),  # never read garbage
    ],
)
def test_client_address(peer: str, xff: list[str], expected: str) -> None:
    assert client_address(peer, xff, PROXIES) == expected


@pytest.mark.parametrize("hop", ["unknown", "198.51.100.1:http", "[2001:db8::1", "1.2.3.4.5"])
def test_garbage_a_trusted_proxy_wrote_is_refused(hop: str) -> None:
    with pytest.raises(ValueError, match="address"):
        client_address("10.0.0.1", [f"203.0.113.9, {hop}"], PROXIES)


_ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
_junk = st.text(alphabet="0123456789abcdef.:[] ,unknow", max_size=40)


@given(forged=st.lists(_junk | _ipv4, max_size=5), client=_ipv4)
def test_what_the_client_sends_never_matters(forged: list[str], client: str) -> None:
    """Whatever a client puts in front, the hop our proxy appended (or the peer) decides."""
    assume(ipaddress.ip_address(client) not in PROXIES[0])
    assert client_address("10.0.0.1", [*forged, client], PROXIES) == client
    assert client_address(client, forged, PROXIES) == client
