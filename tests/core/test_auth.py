"""Request signatures: sign/verify, tampering, replay, clock skew, secrets (pure, no I/O)."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.auth import (
    HEADER_KEY,
    HEADER_KEY_SIGNATURE,
    HEADER_NODE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    body_digest,
    parse_secret,
    sign,
    verify,
)
from swarmget.core.errors import (
    AuthError,
    BadIdentity,
    ClockSkew,
    InvalidSecret,
    ReplayCacheFull,
    ReplayedRequest,
)
from swarmget.core.identity import NodeIdentity, encode_b64, is_derived_node_id, node_id_of
from swarmget.core.replay import ReplayCache

SECRET = b"correct horse battery staple"
NOW = 1_700_000_000.0
NONCE = "n0nce-0123456789abcdef"
TARGET_CHARS = "".join(chr(c) for c in range(0x21, 0x7F))
A = NodeIdentity.from_seed(b"a" * 32)
B = NodeIdentity.from_seed(b"b" * 32)
ALL_HEADERS = [HEADER_NODE, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE, HEADER_KEY]
ALL_HEADERS.append(HEADER_KEY_SIGNATURE)


def _sign(**overrides: Any) -> dict[str, str]:
    args: dict[str, Any] = {
        "method": "POST",
        "path": "/v1/nodes/register?x=1",
        "body": b'{"a":1}',
        "identity": A,
        "now": NOW,
        "nonce": NONCE,
    }
    args.update(overrides)
    return sign(SECRET, **args)


def _verify(headers: dict[str, str], **overrides: Any) -> str:
    args: dict[str, Any] = {
        "method": "POST",
        "path": "/v1/nodes/register?x=1",
        "body": b'{"a":1}',
        "now": NOW,
    }
    args.update(overrides)
    return verify(SECRET, headers=headers, **args)


def test_round_trip_returns_node_id() -> None:
    headers = _sign()
    assert set(headers) == set(ALL_HEADERS)
    assert headers[HEADER_TIME] == str(int(NOW))
    assert _verify(headers) == A.node_id


def test_body_digest_can_replace_body() -> None:
    assert _verify(_sign(), body=None, body_digest=body_digest(b'{"a":1}')) == A.node_id


def test_exactly_one_of_body_and_digest() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        _verify(_sign(), body=None)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in _sign().items()}
    assert _verify(headers) == A.node_id


def test_lowercase_method_is_signed_as_uppercase() -> None:
    assert _verify(_sign(method="post")) == A.node_id


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "PUT"),
        ("path", "/v1/nodes/register?x=2"),
        ("body", b'{"a":2}'),
    ],
)
def test_tampered_request_fails(field: str, value: Any) -> None:
    with pytest.raises(AuthError, match="bad signature"):
        _verify(_sign(), **{field: value})


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (HEADER_NODE, B.node_id),
        (HEADER_TIME, str(int(NOW) + 1)),
        (HEADER_NONCE, "another-nonce-0123456"),
        (HEADER_SIGNATURE, "0" * 64),
    ],
)
def test_tampered_header_fails(header: str, value: str) -> None:
    headers = _sign() | {header: value}
    with pytest.raises(AuthError, match="bad signature"):
        _verify(headers)


def test_wrong_secret_fails() -> None:
    headers = sign(
        b"another secret, 16+ bytes",
        method="POST",
        path="/v1/nodes/register?x=1",
        body=b'{"a":1}',
        identity=A,
        now=NOW,
        nonce=NONCE,
    )
    with pytest.raises(AuthError, match="bad signature"):
        _verify(headers)


@pytest.mark.parametrize("missing", ALL_HEADERS)
def test_missing_header_fails(missing: str) -> None:
    headers = _sign()
    del headers[missing]
    with pytest.raises(AuthError, match=f"unsigned request: missing {missing}"):
        _verify(headers)


def test_duplicate_header_fails() -> None:
    headers = _sign()
    headers[HEADER_NODE.lower()] = A.node_id
    with pytest.raises(AuthError, match="more than once"):
        _verify(headers)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (HEADER_TIME, "12.5"),
        (HEADER_TIME, "-5"),
        (HEADER_SIGNATURE, "XYZ"),
        (HEADER_NODE, "bad\nnode"),
        (HEADER_NONCE, "short"),
    ],
)
def test_malformed_header_fails(header: str, value: str) -> None:
    with pytest.raises(AuthError):
        _verify(_sign() | {header: value})


@pytest.mark.parametrize(
    "overrides",
    [
        {"nonce": "too-short"},
        {"path": "no-leading-slash"},
        {"path": "/with space"},
        {"method": "GE T"},
    ],
)
def test_sign_refuses_malformed_input(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid"):
        _sign(**overrides)


@pytest.mark.parametrize("skew", [31.0, -31.0, 3600.0])
def test_clock_skew_outside_window_fails(skew: float) -> None:
    with pytest.raises(AuthError, match="clock skew") as info:
        _verify(_sign(), now=NOW + skew)
    direction = "behind" if skew > 0 else "ahead of"
    assert f"{abs(skew):.0f} s {direction}" in str(info.value)


@pytest.mark.parametrize("skew", [0.0, 29.9, -29.9, 30.0])
def test_clock_skew_inside_window_passes(skew: float) -> None:
    assert _verify(_sign(), now=NOW + skew) == A.node_id


def test_window_is_configurable() -> None:
    with pytest.raises(AuthError, match="clock skew"):
        _verify(_sign(), now=NOW + 6, window=5.0)


def test_bad_signature_is_reported_before_skew() -> None:
    with pytest.raises(AuthError, match="bad signature"):
        _verify(_sign(), now=NOW + 3600, body=b"other")


# --- replay -------------------------------------------------------------------------------------


def test_replay_is_rejected() -> None:
    cache = ReplayCache()
    headers = _sign()
    assert _verify(headers, replay=cache) == A.node_id
    with pytest.raises(AuthError, match="replayed"):
        _verify(headers, replay=cache, now=NOW + 1)


def test_same_nonce_from_another_node_is_not_a_replay() -> None:
    cache = ReplayCache()
    _verify(_sign(), replay=cache)
    assert _verify(_sign(identity=B), replay=cache) == B.node_id


def test_rejected_request_does_not_use_up_its_nonce() -> None:
    cache = ReplayCache()
    with pytest.raises(AuthError, match="bad signature"):
        _verify(_sign(), replay=cache, body=b"tampered")
    assert _verify(_sign(), replay=cache) == A.node_id


def test_replay_entries_expire_with_the_window() -> None:
    cache = ReplayCache(window=30.0)
    cache.check_and_remember("a", NONCE, timestamp=NOW, now=NOW)
    cache.check_and_remember("b", NONCE, timestamp=NOW + 10, now=NOW)
    cache.expire(NOW + 30)
    assert len(cache) == 2  # NOW's request is still acceptable at NOW + 30
    cache.expire(NOW + 30.5)
    assert len(cache) == 1
    cache.expire(NOW + 41)
    assert len(cache) == 0
    cache.check_and_remember("a", NONCE, timestamp=NOW + 41, now=NOW + 41)


def test_replay_of_an_expired_entry_is_refused_by_the_clock() -> None:
    cache = ReplayCache()
    headers = _sign()
    _verify(headers, replay=cache)
    with pytest.raises(AuthError, match="clock skew"):
        _verify(headers, replay=cache, now=NOW + 31)


def test_full_replay_cache_refuses_instead_of_forgetting() -> None:
    cache = ReplayCache(per_sender=2)
    cache.check_and_remember("a", "1" * 16, timestamp=NOW, now=NOW)
    cache.check_and_remember("a", "2" * 16, timestamp=NOW, now=NOW)
    with pytest.raises(ReplayCacheFull):
        cache.check_and_remember("a", "3" * 16, timestamp=NOW, now=NOW)
    cache.check_and_remember("a", "3" * 16, timestamp=NOW + 31, now=NOW + 31)  # others expired
    assert len(cache) == 1


def test_replay_cache_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="positive"):
        ReplayCache(window=0)


# --- identity: node ids are fingerprints of node keys ----------------------------------------


def test_node_id_is_the_fingerprint_of_the_key() -> None:
    assert A.node_id == node_id_of(A.public_key)
    assert is_derived_node_id(A.node_id)
    assert A.node_id != B.node_id
    assert NodeIdentity.from_seed(A.seed()).node_id == A.node_id


def test_claiming_another_nodes_id_with_ones_own_key_fails() -> None:
    """A member signs (with the swarm secret, so the HMAC is good) as B's id with A's key."""
    forged = _sign(identity=A)
    # re-sign the HMAC for B's id, as any member can; keep A's key and key signature
    as_b = _sign(identity=B)
    hybrid = as_b | {
        HEADER_KEY: forged[HEADER_KEY],
        HEADER_KEY_SIGNATURE: forged[HEADER_KEY_SIGNATURE],
    }
    with pytest.raises(BadIdentity, match="not the id of the key"):
        _verify(hybrid)


def test_claiming_another_nodes_id_with_its_public_key_fails() -> None:
    """B's public key (it travels in every request of B's) without B's private key."""
    as_b = _sign(identity=B)
    with_a_signature = as_b | {HEADER_KEY_SIGNATURE: _sign(identity=A)[HEADER_KEY_SIGNATURE]}
    with pytest.raises(BadIdentity, match="bad key signature"):
        _verify(with_a_signature)


@pytest.mark.parametrize(
    "value", ["", "not base64!", encode_b64(b"x" * 31), encode_b64(b"x" * 32) + "A"]
)
def test_malformed_key_fails(value: str) -> None:
    with pytest.raises(BadIdentity):
        _verify(_sign() | {HEADER_KEY: value})


def test_key_signature_of_another_request_fails() -> None:
    other = _sign(path="/v1/peers")
    with pytest.raises(BadIdentity, match="bad key signature"):
        _verify(_sign() | {HEADER_KEY_SIGNATURE: other[HEADER_KEY_SIGNATURE]})


def test_wrong_secret_is_reported_before_identity() -> None:
    headers = sign(
        b"another secret, 16+ bytes", identity=A, method="POST",
        path="/v1/nodes/register?x=1", body=b'{"a":1}', now=NOW, nonce=NONCE,
    )  # fmt: skip
    with pytest.raises(AuthError, match="bad signature") as info:
        _verify(headers | {HEADER_KEY: encode_b64(B.public_key)})
    assert type(info.value) is AuthError


def test_skew_is_a_clock_skew_error() -> None:
    with pytest.raises(ClockSkew):
        _verify(_sign(), now=NOW + 60)


# --- replays across a restart: not_before --------------------------------------------------------


def test_request_signed_before_the_receiver_started_is_refused() -> None:
    headers = _sign()
    with pytest.raises(ReplayedRequest, match="before this receiver started"):
        _verify(headers, now=NOW + 5, not_before=NOW + 2)


def test_request_signed_in_the_second_the_receiver_started_is_refused() -> None:
    with pytest.raises(ReplayedRequest):
        _verify(_sign(), now=NOW + 1, not_before=NOW + 0.5)  # signed at NOW + 0.9, say


def test_request_signed_after_the_receiver_started_passes() -> None:
    assert _verify(_sign(now=NOW + 3), now=NOW + 3, not_before=NOW + 2) == A.node_id


# --- the replay cache is shared out per sender ---------------------------------------------------


def _nonce(i: int) -> str:
    return f"nonce-{i:016d}"


def test_a_flooding_sender_is_refused_alone() -> None:
    cache = ReplayCache(per_sender=10, max_senders=4)
    for i in range(10):
        cache.check_and_remember("flooder", _nonce(i), timestamp=NOW, now=NOW)
    with pytest.raises(ReplayCacheFull):
        cache.check_and_remember("flooder", _nonce(10), timestamp=NOW, now=NOW)
    for i in range(10):  # everyone else still has a full share
        cache.check_and_remember("honest", _nonce(i), timestamp=NOW, now=NOW)
    assert len(cache) == 20


def test_a_full_sender_recovers_when_its_entries_expire() -> None:
    cache = ReplayCache(window=30.0, per_sender=1)
    cache.check_and_remember("a", _nonce(0), timestamp=NOW, now=NOW)
    with pytest.raises(ReplayCacheFull):
        cache.check_and_remember("a", _nonce(1), timestamp=NOW, now=NOW + 1)
    cache.check_and_remember("a", _nonce(1), timestamp=NOW + 31, now=NOW + 31)
    assert (len(cache), cache.senders()) == (1, 1)


def test_one_address_minting_node_ids_is_refused_alone() -> None:
    cache = ReplayCache(per_sender=10, max_senders=100, senders_per_origin=3)
    for i in range(3):
        cache.check_and_remember(
            f"minted-{i}", _nonce(0), timestamp=NOW, now=NOW, origin="10.0.0.9"
        )
    with pytest.raises(ReplayCacheFull, match="node ids from 10.0.0.9"):
        cache.check_and_remember("minted-3", _nonce(0), timestamp=NOW, now=NOW, origin="10.0.0.9")
    cache.check_and_remember("minted-0", _nonce(1), timestamp=NOW, now=NOW, origin="10.0.0.9")
    cache.check_and_remember("honest", _nonce(0), timestamp=NOW, now=NOW, origin="10.0.0.2")
    cache.expire(NOW + 31)
    assert cache.senders() == 0
    cache.check_and_remember(
        "minted-3", _nonce(0), timestamp=NOW + 31, now=NOW + 31, origin="10.0.0.9"
    )


def test_total_senders_are_bounded() -> None:
    cache = ReplayCache(per_sender=1, max_senders=2)
    cache.check_and_remember("a", _nonce(0), timestamp=NOW, now=NOW)
    cache.check_and_remember("b", _nonce(0), timestamp=NOW, now=NOW)
    with pytest.raises(ReplayCacheFull, match="too many senders"):
        cache.check_and_remember("c", _nonce(0), timestamp=NOW, now=NOW)
    cache.check_and_remember("a", _nonce(0) + "x", timestamp=NOW + 31, now=NOW + 31)


def test_total_entries_are_bounded_and_a_refused_sender_leaves_no_share() -> None:
    cache = ReplayCache(per_sender=10, max_entries=3)
    for i in range(3):
        cache.check_and_remember("a", _nonce(i), timestamp=NOW, now=NOW)
    with pytest.raises(ReplayCacheFull, match="too many requests"):
        cache.check_and_remember("b", _nonce(0), timestamp=NOW, now=NOW)
    assert cache.senders() == 1  # b was not left holding an empty share
    cache.check_and_remember("b", _nonce(0), timestamp=NOW + 31, now=NOW + 31)


def test_a_hub_sized_cache_admits_thousands_of_live_nodes() -> None:
    """A hub hears from every live node in every window: thousands of nodes, each from its
    own address, a few requests each, all fit with the default capacities."""
    cache = ReplayCache()
    for n in range(5_000):
        for i in range(6):  # register + heartbeats within one window
            cache.check_and_remember(
                f"node-{n}", _nonce(i), timestamp=NOW, now=NOW, origin=f"10.0.{n // 250}.{n}"
            )
    assert cache.senders() == 5_000


# --- any single change invalidates (property) -------------------------------------------------


@st.composite
def _body_and_change(draw: st.DrawFn) -> tuple[bytes, bytes]:
    body = draw(st.binary(min_size=1, max_size=256))
    i = draw(st.integers(0, len(body) - 1))
    new = draw(st.integers(0, 255).filter(lambda b: b != body[i]))
    return body, body[:i] + bytes([new]) + body[i + 1 :]


@st.composite
def _text_and_change(draw: st.DrawFn, alphabet: str, prefix: str, max_size: int) -> tuple[str, str]:
    text = draw(st.text(alphabet=alphabet, min_size=1, max_size=max_size))
    i = draw(st.integers(0, len(text) - 1))
    new = draw(st.sampled_from(alphabet).filter(lambda c: c != text[i]))
    return prefix + text, prefix + text[:i] + new + text[i + 1 :]


@given(_body_and_change())
def test_any_body_byte_change_invalidates(change: tuple[bytes, bytes]) -> None:
    body, changed = change
    headers = _sign(body=body)
    assert _verify(headers, body=body) == A.node_id
    with pytest.raises(AuthError):
        _verify(headers, body=changed)


@given(_text_and_change(TARGET_CHARS, "/", 64))
def test_any_path_change_invalidates(change: tuple[str, str]) -> None:
    path, changed = change
    headers = _sign(path=path)
    assert _verify(headers, path=path) == A.node_id
    with pytest.raises(AuthError):
        _verify(headers, path=changed)


@given(_text_and_change(string.ascii_uppercase, "", 16))
def test_any_method_change_invalidates(change: tuple[str, str]) -> None:
    method, changed = change
    headers = _sign(method=method)
    assert _verify(headers, method=method) == A.node_id
    with pytest.raises(AuthError):
        _verify(headers, method=changed)


# --- the secret ---------------------------------------------------------------------------------


def test_parse_secret_strips_whitespace() -> None:
    assert parse_secret(b"  0123456789abcdef\n", source="test") == b"0123456789abcdef"


@pytest.mark.parametrize(
    ("raw", "message"), [(b"", "empty"), (b" \n", "empty"), (b"x" * 15, "short")]
)
def test_parse_secret_refuses_weak_secrets(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidSecret, match=message):
        parse_secret(raw, source="test")
