"""validate_url and origins: unit tests."""

from __future__ import annotations

import pytest

from swarmget.core.errors import InvalidURL
from swarmget.core.urls import origin_of, same_origin, validate_url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/file.iso",
        "https://example.com",
        "HTTPS://Example.COM:8443/a/b?c=d#frag",
        "http://127.0.0.1:8080/x",
        "http://[::1]:8080/x",
        "https://bücher.example/ä%20b",
    ],
)
def test_accepts_absolute_http_urls(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "empty URL"),
        ("ftp://x/file", "not an http(s) URL: 'ftp://x/file'"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("example.com/file", "not an http(s) URL"),
        ("/relative/path", "not an http(s) URL"),
        ("http:///path", "no host"),
        ("http://:80/path", "no host"),
        ("http://user:pw@host/x", "credentials"),
        ("http://@host/x", "credentials"),
        ("http://host:99999/x", "invalid port"),
        ("http://host:abc/x", "invalid port"),
        ("http://host:0/x", "invalid port"),
        ("http://host/a b", "whitespace"),
        (" http://host/x", "whitespace"),
        ("http://host/x\n", "whitespace"),
        ("http://host/\x00", "control"),
        ("http://host/\u202etxt", "control"),
        ("http://host\\evil.com/x", "invalid character '\\\\'"),
        ("http://host/<script>", "invalid character"),
        ("http://[::1/x", "malformed"),
    ],
)
def test_rejects_with_a_clear_message(url: str, fragment: str) -> None:
    with pytest.raises(InvalidURL) as info:
        validate_url(url)
    assert fragment in str(info.value)


def test_origin_fills_default_ports() -> None:
    assert origin_of("https://Example.com/a") == ("https", "example.com", 443)
    assert origin_of("http://example.com:8080/") == ("http", "example.com", 8080)
    assert same_origin("http://a.example/x", "HTTP://A.example:80/y")
    assert not same_origin("http://a.example/x", "https://a.example/x")
    assert not same_origin("http://a.example/x", "http://b.example/x")
