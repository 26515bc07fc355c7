"""The portal's login links, sessions, CSRF tokens and Host/Origin rules (no sockets)."""

from __future__ import annotations

import pytest

from swarmget.web.security import (
    LOGIN_LINK_TTL,
    MAX_SESSIONS,
    SESSION_IDLE,
    PortalAuth,
    allowed_hosts,
    csrf_ok,
    host_ok,
    origin_ok,
    own_hosts,
)

TOKEN = "t" * 43
HOSTS = own_hosts("127.0.0.1", 8080)


def test_a_login_link_works_once() -> None:
    auth = PortalAuth(TOKEN)
    link = auth.login_link(now=0.0)
    session = auth.redeem_link(link, now=1.0)
    assert session is not None
    assert session.id != TOKEN
    assert session.csrf != session.id
    assert auth.redeem_link(link, now=2.0) is None
    assert auth.session(session.id, now=3.0) is session


def test_a_login_link_expires() -> None:
    auth = PortalAuth(TOKEN)
    link = auth.login_link(now=0.0)
    assert auth.redeem_link(link, now=LOGIN_LINK_TTL + 1) is None
    assert auth.redeem_link("made-up", now=0.0) is None


def test_the_api_token_logs_in() -> None:
    auth = PortalAuth(TOKEN)
    assert auth.login_with_token("wrong", now=0.0) is None
    assert auth.login_with_token("", now=0.0) is None
    assert auth.login_with_token(f"  {TOKEN}\n", now=0.0) is not None  # pasted with blanks


def test_sessions_expire_when_idle_and_on_logout() -> None:
    auth = PortalAuth(TOKEN)
    a = auth.login_with_token(TOKEN, now=0.0)
    b = auth.login_with_token(TOKEN, now=0.0)
    assert a is not None
    assert b is not None
    assert auth.session(a.id, now=SESSION_IDLE - 1) is a  # used: idle time starts again
    assert auth.session(a.id, now=2 * SESSION_IDLE - 2) is a
    assert auth.session(b.id, now=2 * SESSION_IDLE - 2) is None
    auth.logout(a.id)
    assert auth.session(a.id, now=2 * SESSION_IDLE - 2) is None
    assert auth.session(None, now=0.0) is None


def test_the_oldest_session_goes_beyond_the_limit() -> None:
    auth = PortalAuth(TOKEN)
    first = auth.login_with_token(TOKEN, now=0.0)
    assert first is not None
    for _ in range(MAX_SESSIONS):
        auth.login_with_token(TOKEN, now=1.0)
    assert auth.session(first.id, now=2.0) is None


def test_csrf_tokens_must_match() -> None:
    session = PortalAuth(TOKEN).login_with_token(TOKEN, now=0.0)
    assert session is not None
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, None)
    assert not csrf_ok(session, "")
    assert not csrf_ok(session, session.id)


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8080", True),
        ("localhost:8080", True),
        ("LOCALHOST:8080", True),
        ("[::1]:8080", True),
        ("127.0.0.1:8081", False),
        ("127.0.0.1", False),
        ("evil.example:8080", False),  # DNS rebinding: a LAN name pointed at 127.0.0.1
        ("", False),
        (None, False),
    ],
)
def test_only_our_own_host_names(host: str | None, ok: bool) -> None:
    assert host_ok(host, HOSTS) is ok


def test_a_node_bound_elsewhere_answers_to_that_name_too() -> None:
    hosts = own_hosts("192.168.1.5", 80)
    assert host_ok("192.168.1.5", hosts)  # port 80 is left out by browsers
    assert host_ok("192.168.1.5:80", hosts)
    assert host_ok("[::1]:8080", own_hosts("::1", 8080))


@pytest.mark.parametrize(
    ("origin", "referer", "ok"),
    [
        ("http://127.0.0.1:8080", None, True),
        ("http://localhost:8080", "http://evil.example/", True),  # Origin decides
        ("http://evil.example", "http://127.0.0.1:8080/portal/", False),
        ("null", None, False),
        ("https://127.0.0.1:8080", None, False),
        ("http://127.0.0.1:8080/portal", None, False),  # not an origin
        ("http://x@127.0.0.1:8080", None, False),
        (None, "http://127.0.0.1:8080/portal/downloads/1", True),
        (None, "http://127.0.0.1:9999/portal/", False),
        (None, "not a url", False),
        (None, None, False),
    ],
)
def test_state_changing_requests_must_come_from_our_pages(
    origin: str | None, referer: str | None, ok: bool
) -> None:
    assert origin_ok(origin, referer, HOSTS) is ok


# --- remote access: allowed hosts (issue #16) --------------------------------------------------


def test_allowed_hosts_widen_the_list_and_nothing_else() -> None:
    hosts = HOSTS | allowed_hosts(("Swarm.Example.org", "localhost", "tunnel.test:9443"))
    assert host_ok("swarm.example.org", hosts)
    assert host_ok("swarm.example.org:8443", hosts)  # a bare name: any port
    assert host_ok("localhost:9000", hosts)  # an SSH tunnel on another local port
    assert host_ok("tunnel.test:9443", hosts)
    assert not host_ok("tunnel.test:9444", hosts)  # name:port: that port only
    assert not host_ok("tunnel.test", hosts)
    assert not host_ok("evil.example:8080", hosts)
    assert not host_ok("swarm.example.org.evil.example", hosts)
    assert origin_ok("http://swarm.example.org:8443", None, hosts)
    assert not origin_ok("https://swarm.example.org", None, hosts)  # no TLS, no proxy
    assert origin_ok("https://swarm.example.org", None, hosts, frozenset({"http", "https"}))
    assert not origin_ok("http://evil.example", None, hosts, frozenset({"http", "https"}))
    assert not host_ok("127.0.0.1:8081", HOSTS)  # the default stays as strict as it was


@pytest.mark.parametrize(
    "entry", ["http://swarm.example.org", "swarm.example.org/portal", "a b", "host:port", ""]
)
def test_an_allowed_host_that_is_no_host_name_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        allowed_hosts((entry,))
