"""Checksum specs, RFC 9530 digest fields and checking: unit and property tests."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.digests import (
    HEX_LENGTHS,
    Digest,
    DigestSet,
    Mismatch,
    parse_checksum_spec,
    parse_digest_fields,
)
from swarmget.core.errors import InvalidChecksum

HELLO = b"hello world"
SHA256 = hashlib.sha256(HELLO)
SHA512 = hashlib.sha512(HELLO)


def _b64(h: hashlib._Hash) -> str:
    return base64.b64encode(h.digest()).decode()


# --- --checksum ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["sha256", "SHA256", "sha-256", " Sha-256 "])
def test_checksum_spec_spellings(alg: str) -> None:
    digest = parse_checksum_spec(f"{alg}:{SHA256.hexdigest().upper()}")
    assert digest == Digest(algorithm="sha256", value=SHA256.hexdigest())
    assert str(digest) == f"sha256:{SHA256.hexdigest()}"


@pytest.mark.parametrize("alg", sorted(HEX_LENGTHS))
def test_checksum_spec_every_algorithm(alg: str) -> None:
    value = hashlib.new(alg, HELLO).hexdigest()
    assert parse_checksum_spec(f"{alg}:{value}") == Digest(algorithm=alg, value=value)


def test_checksum_spec_as_aria2c_and_sha256sum_write_it() -> None:
    """Issue #16: ``sha256=HEX`` and a bare 64-hex value are accepted."""
    value = SHA256.hexdigest()
    expected = Digest(algorithm="sha256", value=value)
    assert parse_checksum_spec(f"sha-256={value}") == expected
    assert parse_checksum_spec(f" {value.upper()} ") == expected
    sha512 = SHA512.hexdigest()
    assert parse_checksum_spec(sha512) == Digest(algorithm="sha512", value=sha512)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("abc", "ALG:HEX"),
        ("a" * 40, "ALG:HEX"),  # bare, but sha1 or something else: the algorithm is needed
        ("sha256=" + "a" * 63, "must be 64 hex digits, got 63"),
        ("crc32:deadbeef", "unknown checksum algorithm 'crc32'"),
        ("sha256:" + "a" * 63, "must be 64 hex digits, got 63"),
        ("md5:" + "z" * 32, "not hexadecimal"),
        ("sha1:", "not hexadecimal"),
    ],
)
def test_checksum_spec_errors(spec: str, fragment: str) -> None:
    with pytest.raises(InvalidChecksum) as info:
        parse_checksum_spec(spec)
    assert fragment in str(info.value)


def test_digest_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Digest(algorithm="sha3_256", value="00")
    with pytest.raises(ValueError, match="lowercase hex"):
        Digest(algorithm="md5", value="A" * 32)


# --- Repr-Digest / Content-Digest ----------------------------------------------------------------


def test_digest_fields_both_algorithms() -> None:
    value = f"sha-256=:{_b64(SHA256)}:, sha-512=:{_b64(SHA512)}:"
    assert parse_digest_fields(value) == [
        Digest(algorithm="sha256", value=SHA256.hexdigest()),
        Digest(algorithm="sha512", value=SHA512.hexdigest()),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha-256",
        "sha-256=",
        "sha-256=::",
        "sha-256=:not base64!:",
        f"sha-256={_b64(SHA256)}",  # not a byte sequence
        f"sha-256=:{_b64(SHA512)}:",  # wrong length for the algorithm
        f"md5=:{base64.b64encode(hashlib.md5(HELLO).digest()).decode()}:",  # deprecated
        "unixsum=30637",
        f"SHA-256=:{_b64(SHA256)}:",  # keys are lowercase in RFC 8941
    ],
)
def test_digest_fields_skip_unusable_members(value: str) -> None:
    assert parse_digest_fields(value) == []


def test_digest_fields_keep_good_members_among_bad_ones() -> None:
    value = f'id="a,b", sha-256=:garbage, crc32c=:AAAAAA==:, sha-256=:{_b64(SHA256)}:;p=1'
    assert parse_digest_fields(value) == [Digest(algorithm="sha256", value=SHA256.hexdigest())]


def test_digest_fields_last_duplicate_wins() -> None:
    other = hashlib.sha256(b"other")
    value = f"sha-256=:{_b64(other)}:, sha-256=:{_b64(SHA256)}:"
    assert parse_digest_fields(value) == [Digest(algorithm="sha256", value=SHA256.hexdigest())]


@given(st.binary(max_size=200), st.sampled_from(["sha-256", "sha-512"]))
def test_digest_fields_round_trip(data: bytes, field: str) -> None:
    alg = field.replace("-", "")
    h = hashlib.new(alg, data)
    assert parse_digest_fields(f"{field}=:{_b64(h)}:") == [
        Digest(algorithm=alg, value=h.hexdigest())
    ]


@given(st.text(max_size=200))
def test_digest_fields_never_crash(value: str) -> None:
    for digest in parse_digest_fields(value):
        assert digest.algorithm in ("sha256", "sha512")


# --- checking -------------------------------------------------------------------------------------


def test_digest_set_reports_mismatches() -> None:
    good = Digest(algorithm="sha256", value=SHA256.hexdigest())
    bad = Digest(algorithm="sha512", value="0" * 128)
    expected = DigestSet.of([good], [bad, good])
    assert expected.digests == (good, bad)
    assert expected.algorithms() == {"sha256", "sha512"}
    computed = {"sha256": SHA256.hexdigest().upper(), "sha512": SHA512.hexdigest()}
    assert expected.mismatches(computed) == [Mismatch(expected=bad, actual=SHA512.hexdigest())]


def test_digest_set_all_match_and_empty() -> None:
    good = Digest(algorithm="sha256", value=SHA256.hexdigest())
    assert DigestSet.of([good]).mismatches({"sha256": SHA256.hexdigest()}) == []
    assert not DigestSet()
    assert DigestSet().mismatches({}) == []


def test_digest_set_missing_computed_digest_is_a_bug() -> None:
    good = Digest(algorithm="sha256", value=SHA256.hexdigest())
    with pytest.raises(ValueError, match="no computed sha256"):
        DigestSet.of([good]).mismatches({"md5": "0" * 32})
