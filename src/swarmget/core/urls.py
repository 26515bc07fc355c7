"""URL checks done once, at the edge, before anything is fetched.

``validate_url`` accepts exactly the URLs swarmget can download: absolute ``http``/``https``
URLs (RFC 9110 §4.2) with a host. It is used on the user's input and on every redirect
``Location`` after resolution, so a server cannot steer us to ``file:`` or ``ftp:``.

Credentials in the URL (``http://user:pw@host/``) are refused: the URL is shared with the
other nodes of the swarm and shown in logs and the portal, and RFC 9110 §4.2.4 deprecates
userinfo in http(s) URIs anyway. Send credentials with ``--header 'Authorization: ...'``.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import SplitResult, urlsplit

from swarmget.core.errors import InvalidURL

__all__ = ["origin_of", "same_origin", "validate_url"]

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
        raise InvalidURL(f"not an http(s) URL: {url!r}")
    if "@" in parts.netloc:
        raise InvalidURL(
            f"credentials in the URL are not supported (use a header instead): {url!r}"
        )
    if not parts.hostname:
        raise InvalidURL(f"URL has no host: {url!r}")
    _check_port(parts, url)
    return url


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
            raise InvalidURL(f"URL contains whitespace or a control character: {url!r}")
        if ch in _FORBIDDEN:
            raise InvalidURL(f"URL contains the invalid character {ch!r}: {url!r}")


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" in an IPv6 host
        raise InvalidURL(f"malformed URL {url!r}: {exc}") from exc


def _check_port(parts: SplitResult, url: str) -> None:
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"URL has an invalid port: {url!r}") from exc
    if port == 0:
        raise InvalidURL(f"URL has an invalid port: {url!r}")
