"""HTTP/1.1 framing for the raw range client: request heads, strict response heads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.errors import SourceBroken
from swarmget.core.http1 import (
    MAX_HEAD,
    RequestError,
    build_request,
    find_head_end,
    parse_response_head,
)

# --- requests ------------------------------------------------------------------------------------


def test_request_head_puts_host_first_and_drops_a_given_host() -> None:
    head = build_request(
        "GET", "/a%20b?x=1", "example.com:8080", [("Range", "bytes=0-9"), ("host", "evil")]
    )
    assert head == (
        b"GET /a%20b?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nRange: bytes=0-9\r\n\r\n"
    )


@pytest.mark.parametrize(
    "value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "a\x7fb", "tab\tis\x01bad"]
)
def test_request_refuses_values_that_would_split_the_head(value: str) -> None:
    with pytest.raises(RequestError, match="invalid characters"):
        build_request("GET", "/", "h", [("X-Test", value)])


@pytest.mark.parametrize("name", ["Bad Name", "Bad:Name", "", "X\r\nY", "Ä"])
def test_request_refuses_names_that_are_not_tokens(name: str) -> None:
    with pytest.raises(RequestError, match="header name"):
        build_request("GET", "/", "h", [(name, "v")])


@pytest.mark.parametrize("target", ["", "no-slash", "/a b", "/a\r\nb", "/\x00"])
def test_request_refuses_bad_targets(target: str) -> None:
    with pytest.raises(RequestError, match="target"):
        build_request("GET", target, "h", [])


def test_request_refuses_a_bad_host_and_non_latin1_values() -> None:
    with pytest.raises(RequestError):
        build_request("GET", "/", "h\r\nX: y", [])
    with pytest.raises(RequestError, match="latin-1"):
        build_request("GET", "/", "h", [("X-Name", "日本")])


def test_tabs_inside_values_are_allowed() -> None:
    assert b"X-T: a\tb\r\n" in build_request("GET", "/", "h", [("X-T", " a\tb ")])


# --- finding and parsing response heads -----------------------------------------------------------

OK_HEAD = (
    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\n"
    b'Content-Length: 10\r\nETag: "v1"\r\n\r\n'
)


def test_find_head_end_across_reads() -> None:
    data = OK_HEAD + b"body"
    assert find_head_end(data[:20]) is None
    for split in range(len(OK_HEAD)):  # the new bytes began at ``split``: any of the blank
        assert find_head_end(data, split) == len(OK_HEAD)  # line's bytes may be among them
    assert find_head_end(b"HTTP/1.1 200 OK\r\n\r\n") == 19


def test_an_endless_head_is_broken() -> None:
    with pytest.raises(SourceBroken, match="longer than"):
        find_head_end(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * (MAX_HEAD // 6))
    with pytest.raises(SourceBroken, match="longer than"):
        find_head_end(b"HTTP/1.1 200 OK\r\n" + b"X" * MAX_HEAD + b"\r\n\r\n")


def test_parse_a_partial_content_head() -> None:
    head = parse_response_head(OK_HEAD)
    assert (head.version, head.status, head.reason) == (1, 206, "Partial Content")
    assert head.get("content-range") == "bytes 0-9/100"
    assert head.as_dict()["etag"] == '"v1"'
    assert head.framing == "length"
    assert head.content_length == 10
    assert head.reusable


def test_repeated_fields_are_joined() -> None:
    head = parse_response_head(b"HTTP/1.1 200 OK\r\nVary: a\r\nvary: b\r\n\r\n")
    assert head.get("Vary") == "a, b"
    assert head.as_dict() == {"vary": "a, b"}


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        # status lines and field syntax: h11's verdict (its message follows ours)
        (b"HTTP/2 200 OK\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 099 Nope\r\n\r\n", "malformed response head"),
        (b"ICY 200 OK\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 200 OK\r\n: empty\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 101 Switching\r\n\r\n", "malformed response head"),  # never asked
        # what h11 takes (any HTTP/d.d): refused by us
        (b"HTTP/1.2 200 OK\r\n\r\n", "HTTP version"),
        (b"HTTP/2.0 200 OK\r\n\r\n", "HTTP version"),
        # what h11 lets pass (obs-fold, bare LF, control characters): the strict pre-check
        (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "folding"),
        (b"HTTP/1.1 200 OK\r\n\tX: a\r\n\r\n", "folding"),
        (b"HTTP/1.1 200 OK\r\nX: a\x7f\r\n\r\n", "control characters"),
        (b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n", "control characters"),
        (b"HTTP/1.1 200 O\nK\r\n\r\n", "control characters"),
        (b"HTTP/1.1 200 OK\r\n\r\nX: a\r\n\r\n", "blank line inside"),
        (b"HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n", "control characters"),
        (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "control characters"),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n", "blank line"),
    ],
)
def test_malformed_heads_are_broken(raw: bytes, match: str) -> None:
    with pytest.raises(SourceBroken, match=match):
        parse_response_head(raw)


@pytest.mark.parametrize(
    ("raw", "framing", "reusable"),
    [
        (b"HTTP/1.1 206 P\r\nContent-Length: 5\r\n\r\n", "length", True),
        (
            b"HTTP/1.1 206 P\r\nContent-Length: 5\r\nConnection: Keep-Alive, close\r\n\r\n",
            "length",
            False,
        ),
        (b"HTTP/1.0 206 P\r\nContent-Length: 5\r\n\r\n", "length", False),
        (b"HTTP/1.1 206 P\r\n\r\n", "close", False),
        (b"HTTP/1.1 206 P\r\nTransfer-Encoding: chunked\r\n\r\n", "chunked", False),
        (b"HTTP/1.1 206 P\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "chunked", False),
        (b"HTTP/1.1 206 P\r\nTransfer-Encoding: gzip\r\n\r\n", "other", False),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", "none", True),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "none", True),
    ],
)
def test_framing_and_reuse(raw: bytes, framing: str, reusable: bool) -> None:
    head = parse_response_head(raw)
    assert head.framing == framing
    assert head.reusable is reusable


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 206 P\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 206 P\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 206 P\r\nContent-Length: -5\r\n\r\n",
    ],
)
def test_ambiguous_lengths_are_broken(raw: bytes) -> None:
    with pytest.raises(SourceBroken):
        _ = parse_response_head(raw).framing


_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ0123456789!#$%&'*+.^_`|~", min_size=1
)
_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
).map(lambda v: v.strip(" \t"))


@given(
    st.lists(st.tuples(_token, _value), max_size=12),
    st.integers(100, 599).filter(lambda s: s != 101),  # 101 without an Upgrade: refused
)
def test_heads_round_trip(fields: list[tuple[str, str]], status: int) -> None:
    raw = (
        f"HTTP/1.1 {status} Reason\r\n".encode()
        + b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in fields)
        + b"\r\n"
    )
    head = parse_response_head(raw)
    assert head.status == status
    assert head.headers == tuple(fields)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_broken(noise: bytes) -> None:
    for raw in (noise + b"\r\n\r\n", b"HTTP/1.1 200 OK\r\n" + noise + b"\r\n\r\n"):
        try:
            head = parse_response_head(raw)
        except SourceBroken:
            continue
        for name, value in head.headers:  # whatever parsed is clean
            assert "\r" not in value
            assert "\n" not in value
            assert ":" not in name


def test_a_head_of_almost_max_head_bytes_parses() -> None:
    """h11's own limit (16 KiB by default) is raised to ours."""
    raw = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD - 100) + b"\r\n\r\n"
    assert find_head_end(raw) == len(raw)
    assert parse_response_head(raw).get("x-big") == "a" * (MAX_HEAD - 100)


def test_framing_fields_are_judged_by_our_rules_and_keep_their_place() -> None:
    """h11 refuses a Transfer-Encoding other than chunked and a Content-Length of over 20
    digits; those fields are set aside for ``framing`` (and ``core.http``) to judge."""
    head = parse_response_head(
        b"HTTP/1.1 206 P\r\nA: 1\r\nTransfer-Encoding: gzip\r\nB: 2\r\n"
        b"transfer-encoding:  chunked \r\nC: 3\r\n\r\n"
    )
    assert head.headers == (
        ("A", "1"),
        ("Transfer-Encoding", "gzip"),
        ("B", "2"),
        ("transfer-encoding", "chunked"),
        ("C", "3"),
    )
    assert head.framing == "chunked"
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: br\r\n\r\n").framing == (
        "other"
    )
    huge = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 25 + b"\r\n\r\n")
    assert huge.content_length is not None
    assert huge.content_length > 2**63
    twice = parse_response_head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"
    )
    assert twice.headers == (("Content-Length", "5"), ("content-length", "5"))
    assert twice.content_length == 5
    assert twice.framing == "length"


def test_interim_heads_parse() -> None:
    head = parse_response_head(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
    assert (head.status, head.framing) == (103, "none")
    assert parse_response_head(b"HTTP/1.0 200\r\n\r\n").reason == ""
