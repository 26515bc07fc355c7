"""redact_url: what a URL looks like in logs, errors and views (issue #12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.errors import InvalidURL
from swarmget.core.urls import validate_url


def redact(url: str) -> str:
    from swarmget.core.urls import redact_url  # absent before the fix: the test fails there

    return redact_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://h/f.iso", "https://h/f.iso"),
        ("https://h:8443/a/f.iso?sig=abc&exp=1", "https://h:8443/a/f.iso?sig=***&exp=***"),
        ("http://h/f?token", "http://h/f?***"),
        ("http://user:pw@h/f", "http://***@h/f"),
        ("http://h/f#access_token=x", "http://h/f#***"),
        ("not a url?token=x", "not a url***"),
        ("http://[::1/f?token=x", "http://[::1/f***"),  # unparseable: cut at the "?"
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact(url) == shown


@given(st.text(alphabet="abc=&?#@:/%", max_size=30), st.text(min_size=8, max_size=20))
def test_no_query_value_survives(prefix: str, secret: str) -> None:
    secret = "S" + "".join(c for c in secret if c.isalnum()) + "ZZZZZZZZ"
    url = f"http://host/{prefix}?a=1&token={secret}"
    assert secret not in redact(url)


def test_an_invalid_url_error_does_not_echo_credentials() -> None:
    with pytest.raises(InvalidURL) as caught:
        validate_url("http://alice:hunter2-secret@example.com/f.iso?sig=topsecret")
    assert "hunter2-secret" not in str(caught.value)
    assert "topsecret" not in str(caught.value)
