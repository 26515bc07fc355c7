"""The choice of transport (``net.transport.TransportChoice``): a table, tested as one."""

from __future__ import annotations

import pytest

from swarmget.net.transport import Purpose, Route, TransportChoice, raw_can_fetch

HTTP = "http://example.com/f.iso"
HTTPS = "https://example.com/f.iso"


@pytest.mark.parametrize(
    ("purpose", "url", "route"),
    [
        (Purpose.PROBE, HTTP, Route.RAW),
        (Purpose.RANGE, HTTP, Route.RAW),
        (Purpose.STREAM, HTTP, Route.AIOHTTP),  # whole-file streams stay on aiohttp
        (Purpose.REVALIDATE, HTTP, Route.AIOHTTP),
        (Purpose.PROBE, HTTPS, Route.AIOHTTP),  # TLS
        (Purpose.RANGE, HTTPS, Route.AIOHTTP),
        (Purpose.RANGE, "http://u:p@example.com/f", Route.AIOHTTP),  # credentials in the URL
    ],
)
def test_the_table(purpose: Purpose, url: str, route: Route) -> None:
    assert TransportChoice(raw_available=True).route(purpose, url) is route


@pytest.mark.parametrize("purpose", list(Purpose))
def test_without_a_raw_client_everything_goes_through_aiohttp(purpose: Purpose) -> None:
    assert TransportChoice(raw_available=False).route(purpose, HTTP) is Route.AIOHTTP


def test_a_framed_body_moves_that_origins_ranges_to_aiohttp() -> None:
    choice = TransportChoice(raw_available=True)
    choice.on_framed_body("http://example.com:80/a?x=1")
    assert choice.aiohttp_only() == {"http://example.com"}
    assert choice.route(Purpose.RANGE, "http://example.com/other") is Route.AIOHTTP
    # the probe reads no body: it stays on the raw client, and so do other origins
    assert choice.route(Purpose.PROBE, "http://example.com/other") is Route.RAW
    assert choice.route(Purpose.RANGE, "http://example.com:8080/f") is Route.RAW
    assert choice.route(Purpose.RANGE, "http://example.org/f") is Route.RAW


def test_raw_can_fetch() -> None:
    assert raw_can_fetch("http://example.com/f")
    assert raw_can_fetch("http://[::1]:8080/f?x=1")
    assert not raw_can_fetch("https://example.com/f")
    assert not raw_can_fetch("http://user@example.com/f")
    assert not raw_can_fetch("ftp://example.com/f")
    assert not raw_can_fetch("not a url")
    assert not raw_can_fetch("http:///f")
