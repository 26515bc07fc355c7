"""The session key agreement and session signatures (``swarmget.core.session_auth``),
pure: both sides derive one key; every part of the request and the session is bound."""

from __future__ import annotations

import secrets

import pytest

from swarmget.core.errors import AuthError, BadIdentity, ClockSkew, SessionUnknown
from swarmget.core.session_auth import (
    EphemeralKey,
    SessionKey,
    accept_session,
    decode_public_key,
    session_signed_headers,
    verify_session_signed,
)
from swarmget.testing.fakes import identity_for

SECRET = b"session-core-secret-0123456789"
NODE = identity_for("core-a").node_id
OTHER = identity_for("core-b").node_id
NOW = 1_700_000_000.0


def _agree(node_id: str = NODE) -> tuple[SessionKey, SessionKey]:
    """(the node's session, the hub's) after one agreement."""
    mine = EphemeralKey()
    hub_key, hubs = accept_session(node_id, mine.public)
    public = decode_public_key(hub_key)
    assert public is not None
    node = mine.agree(public, node_id=node_id, session_id=hubs.session_id, node_public=mine.public)
    return node, hubs


def _headers(session: SessionKey, node_id: str = NODE, body: bytes = b"{}") -> dict[str, str]:
    return session_signed_headers(
        SECRET, session, node_id=node_id, method="POST", path="/v1/x",
        body=body, now=NOW, nonce=secrets.token_urlsafe(18),
    )  # fmt: skip


def _verify(
    headers: dict[str, str], held: dict[tuple[str, str], bytes], body: bytes = b"{}", **kw: object
) -> str:
    signed = verify_session_signed(
        kw.pop("secret", SECRET),  # type: ignore[arg-type]
        lambda node, sid: held.get((node, sid)),
        method="POST", path=str(kw.pop("path", "/v1/x")), headers=headers, body=body,
        now=float(kw.pop("now", NOW)), window=30.0,  # type: ignore[arg-type]
    )  # fmt: skip
    return signed.node_id


def test_both_sides_derive_the_same_key_and_it_verifies() -> None:
    node, hub = _agree()
    assert node == hub
    assert len(node.key) == 32
    held = {(NODE, hub.session_id): hub.key}
    assert _verify(_headers(node), held) == NODE


def test_each_agreement_gives_another_key() -> None:
    first, _ = _agree()
    second, _ = _agree()
    assert first.key != second.key
    assert first.session_id != second.session_id


def test_the_key_is_bound_to_the_node_id() -> None:
    mine = EphemeralKey()
    hub_key, hub = accept_session(NODE, mine.public)
    public = decode_public_key(hub_key)
    assert public is not None
    elsewhere = mine.agree(
        public, node_id=OTHER, session_id=hub.session_id, node_public=mine.public
    )
    assert elsewhere.key != hub.key


def test_refusals() -> None:
    node, hub = _agree()
    held = {(NODE, hub.session_id): hub.key}
    with pytest.raises(SessionUnknown):  # a session the receiver does not hold
        _verify(_headers(node), {})
    with pytest.raises(SessionUnknown):  # another node's session
        _verify(_headers(node, OTHER), held)
    forged = SessionKey(node.session_id, secrets.token_bytes(32))
    with pytest.raises(BadIdentity):
        _verify(_headers(forged), held)
    with pytest.raises(AuthError, match="swarm secret"):  # another body than signed
        _verify(_headers(node), held, body=b'{"x":1}')
    with pytest.raises(AuthError, match="swarm secret"):  # another path
        _verify(_headers(node), held, path="/v1/y")
    with pytest.raises(AuthError, match="swarm secret"):
        _verify(_headers(node), held, secret=b"another-secret-0123456789")
    with pytest.raises(ClockSkew):
        _verify(_headers(node), held, now=NOW + 120)
    headers = _headers(node)
    del headers["X-Swarm-Session-Signature"]
    with pytest.raises(AuthError, match="missing"):
        _verify(headers, held)


def test_a_low_order_public_key_is_refused() -> None:
    with pytest.raises(ValueError, match="shared key"):
        accept_session(NODE, bytes(32))


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("nonce", "short"),
        ("nonce", "has space in it 0123"),
        ("path", "no-slash"),
        ("path", "/a b"),
        ("method", "GE T"),
        ("node_id", "not a node id"),
    ],
)
def test_the_session_signer_refuses_a_malformed_part_as_the_node_key_signer_does(
    field: str, bad: str
) -> None:
    """Our own bug, never a request sent: the session signer checks the parts as
    ``core.auth.sign`` does (the canonical string must stay unambiguous)."""
    node, _ = _agree()
    parts: dict[str, str] = {
        "node_id": NODE, "method": "POST", "path": "/v1/x", "nonce": secrets.token_urlsafe(18)
    }  # fmt: skip
    parts[field] = bad
    with pytest.raises(ValueError, match="invalid"):
        session_signed_headers(SECRET, node, body=b"{}", now=NOW, **parts)
