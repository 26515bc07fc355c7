"""URL checks done once, at the edge, before anything is fetched.

``validate_url`` accepts exactly the URLs swarmget can download: absolute ``http``/``https``
URLs (RFC 9110 §4.2) with a host. It is used on the user's input and on every redirect
``Location`` after resolution, so a server cannot steer us to ``file:`` or ``ftp:``.

Credentials in the URL (``http://user:pw@host/``) are refused: the URL is shared with the
other nodes of the swarm, and RFC 9110 §4.2.4 deprecates userinfo in http(s) URIs anyway.
Send credentials with ``--header 'Authorization: ...'``.

A query string often carries a credential too (a signed S3 or CDN link: ``?X-Amz-Signature=``,
``?token=``). The full URL goes where it is needed to fetch the file: this node's own
requests, the helpers it asks (swarm members, over signed requests) and the relay. Anything
written for people or machines to read back — logs, error messages, the user API's and the
portal's views, events — shows ``redact_url(url)`` instead: parameter names kept, values,
userinfo and fragment replaced.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import SplitResult, urlsplit

from swarmget.core.errors import InvalidURL

__all__ = ["origin_of", "parse_hub_urls", "redact_url", "same_origin", "validate_url"]

_SCHEMES = frozenset({"http", "https"})
# Characters that RFC 3986 §2 never allows in a URI and that no sane server emits. A
# backslash is the dangerous one: browsers read it as "/", urllib does not.
_FORBIDDEN = frozenset('\\<>"{}|^`')
_DEFAULT_PORTS = {"http": 80, "https": 443}


def validate_url(url: str) -> str:
    """Return ``url`` unchanged if it is an absolute http(s) URL with a host.

    Raises ``InvalidURL`` (with the offending URL in the message) for anything else:
    another scheme, a relative reference, no host, a bad port, userinfo, whitespace,
    control characters or characters that are never valid in a URI.
    """
    if not isinstance(url, str) or not url:
        raise InvalidURL("empty URL")
    _check_characters(url)
    parts = _split(url)
    if parts.scheme.lower() not in _SCHEMES:
        raise InvalidURL(f"not an http(s) URL: {redact_url(url)!r}")
    if "@" in parts.netloc:
        raise InvalidURL(
            f"credentials in the URL are not supported (use a header instead): {redact_url(url)!r}"
        )
    if not parts.hostname:
        raise InvalidURL(f"URL has no host: {redact_url(url)!r}")
    _check_port(parts, url)
    return url


REDACTED = "***"


def parse_hub_urls(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--hub`` values (repeated, or comma-separated) → the hub URLs, in the order given,
    without repeats. Raises ``InvalidURL`` for one that is not an http(s) URL."""
    urls = (validate_url(url.strip()) for v in values for url in v.split(",") if url.strip())
    return tuple(dict.fromkeys(url.rstrip("/") for url in urls))


def redact_url(url: str) -> str:
    """``url`` fit to be logged or shown: every query value, any userinfo and the fragment
    replaced by ``***`` (``https://h/f.iso?sig=***&exp=***``). Never raises; what cannot be
    parsed loses everything after its first ``?``, ``#`` or ``@``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return _cut(url)
    if not parts.scheme or not netloc:
        return _cut(url)
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    out = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query:
        out += "?" + "&".join(_redact_pair(pair) for pair in parts.query.split("&"))
    if parts.fragment:
        out += "#" + REDACTED
    return out


def _redact_pair(pair: str) -> str:
    name, sep, _ = pair.partition("=")
    return f"{name}={REDACTED}" if sep else REDACTED


def _cut(text: str) -> str:
    cut = min((i for i in (text.find(c) for c in "?#@") if i >= 0), default=len(text))
    return text[:cut] + (REDACTED if cut < len(text) else "")


def origin_of(url: str) -> tuple[str, str, int]:
    """The (scheme, host, port) origin of a validated URL (RFC 6454 §4), default ports filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port if parts.port is not None else _DEFAULT_PORTS[scheme]
    return scheme, (parts.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    """True when two validated URLs share scheme, host and port."""
    return origin_of(a) == origin_of(b)


def _check_characters(url: str) -> None:
    for ch in url:
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise InvalidURL(f"URL contains whitespace or a control character: {redact_url(url)!r}")
        if ch in _FORBIDDEN:
            raise InvalidURL(f"URL contains the invalid character {ch!r}: {redact_url(url)!r}")


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" in an IPv6 host
        raise InvalidURL(f"malformed URL {redact_url(url)!r}: {exc}") from exc


def _check_port(parts: SplitResult, url: str) -> None:
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"URL has an invalid port: {redact_url(url)!r}") from exc
    if port == 0:
        raise InvalidURL(f"URL has an invalid port: {redact_url(url)!r}")
