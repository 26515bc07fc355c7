"""What "the same content" means when several nodes want one file (issue #15, fetch once).

Theory of operation
-------------------
Two downloads may share bytes only when they are downloads of the *same representation*: the
same bytes at the same offsets. A ``ContentKey`` is built from what a probe pinned (the final
URL after redirects, the validator, the size) plus a sha256 when one is known (``--checksum``,
``Repr-Digest`` or a relay manifest). Keys are compared whole: a changed validator, size or
digest is different content, never "a newer version of the same".

Shareable or not (``ContentKey.shareable``, and ``not_shareable_reason`` for people):

* the size must be known (bytes are exchanged by offset);
* and the bytes must be pinned by something strong:

  - a known sha256 of the whole file: enough by itself, whatever the validator;
  - a strong ETag (RFC 9110 §8.8.3): the origin promises identical bytes for one ETag;
  - a Last-Modified date alone only when it is *strong* by RFC 9110 §8.8.2.2: the response
    carried a ``Date`` at least 60 seconds after it (a file changed twice within a second
    would keep its date). Without a ``Date`` it stays weak.

  A weak ETag (``W/"..."``) never pins bytes (§8.8.3.1): it is dropped (``core.http_fields``
  never keeps one), so a weak ETag and nothing else is not shareable unless the sha256 is known.

The URL is normalised so that two spellings of one resource meet (``normalize_url``): scheme
and host lower-cased, a default port (80 for http, 443 for https) dropped, an empty path made
``/``, the fragment dropped (it never reaches the server, RFC 9110 §4.2.4). The path and the
query are kept byte for byte: a signed query string names a different request (and the key
is only ever compared, never shown: ``index_name()`` is what travels to the hub, so a query
credential does not leave the node in the clear).

Everything here is pure: no clock (the ``Date`` comes in as a value), no I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from swarmget.core.digests import Digest
from swarmget.core.urls import validate_url

if TYPE_CHECKING:  # (annotations only: `get` handed to a node does not import the probe)
    from swarmget.core.probe import OriginInfo

__all__ = ["LM_STRONG_AFTER", "ContentKey", "normalize_url", "strong_last_modified"]

#: RFC 9110 §8.8.2.2: a Last-Modified is strong when at least this many seconds before Date
LM_STRONG_AFTER = 60.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def normalize_url(url: str) -> str:
    """``url`` (an http(s) URL, checked by ``validate_url``) in the form content keys use.

    Raises ``InvalidURL`` for anything ``validate_url`` refuses."""
    parts = urlsplit(validate_url(url))
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def strong_last_modified(last_modified: str, date: str | None) -> bool:
    """Whether a ``Last-Modified`` value is a strong validator given the response's ``Date``
    (RFC 9110 §8.8.2.2): both parse as HTTP-dates and Date is >= 60 s later. An unparsable
    date, or no Date, is weak."""
    if date is None:
        return False
    try:
        modified = parsedate_to_datetime(last_modified)
        sent = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return False
    if modified.tzinfo is None or sent.tzinfo is None:
        return False  # "-0000" style dates: no zone, no comparison
    return (sent - modified).total_seconds() >= LM_STRONG_AFTER


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentKey:
    """One representation of one resource; see the module docstring.

    ``etag`` is a strong ETag (quotes included) or None; ``last_modified`` is kept only when
    strong (``from_probe`` decides); ``sha256`` is lowercase hex or None.
    """

    url: str
    size: int | None
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 0:
            raise ValueError(f"content size must be >= 0, not {self.size}")
        if self.etag is not None and (self.etag.startswith("W/") or not self.etag):
            raise ValueError(f"a content key needs a strong ETag, not {self.etag!r}")
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, not {self.sha256!r}")

    @classmethod
    def from_probe(
        cls,
        *,
        final_url: str,
        size: int | None,
        etag: str | None = None,
        last_modified: str | None = None,
        date: str | None = None,
        sha256: str | None = None,
    ) -> ContentKey:
        """The key of what a probe found: a weak ETag is dropped, a Last-Modified kept only
        when strong against ``date``, the URL normalised, the sha256 lower-cased. Raises
        ``InvalidURL`` for a bad URL and ``ValueError`` for a bad size or digest."""
        etag = etag.strip() if etag else None
        if etag is not None and (etag.startswith("W/") or not etag):
            etag = None
        if last_modified is not None and not strong_last_modified(last_modified, date):
            last_modified = None
        return cls(
            url=normalize_url(final_url),
            size=size,
            etag=etag,
            last_modified=last_modified,
            sha256=sha256.lower() if sha256 is not None else None,
        )

    @classmethod
    def from_origin_info(
        cls, info: OriginInfo, *, date: str | None = None, checksum: Digest | None = None
    ) -> ContentKey:
        """The key of what ``core.probe`` pinned: its final URL, size and validator, with
        the sha256 of the user's ``checksum`` if it is one, else of the origin's
        ``Repr-Digest``. ``date``: the probe answer's ``Date`` (see ``from_probe``); by
        default the one the probe kept (``info.date``)."""
        sha256 = next(
            (d.value for d in (checksum, *info.digests) if d and d.algorithm == "sha256"), None
        )
        validator = info.validator
        return cls.from_probe(
            final_url=info.final_url,
            size=info.size,
            etag=validator.etag if validator else None,
            last_modified=validator.last_modified if validator else None,
            date=date if date is not None else info.date,
            sha256=sha256,
        )

    @property
    def shareable(self) -> bool:
        return self.not_shareable_reason() is None

    def not_shareable_reason(self) -> str | None:
        """Why bytes of this content may not be taken from other nodes, or None."""
        if self.size is None:
            return "the origin did not say the size"
        if self.sha256 is None and self.etag is None and self.last_modified is None:
            return "no strong validator (ETag, or Last-Modified 60 s before Date) and no sha256"
        return None

    def same_content(self, other: ContentKey) -> bool:
        """Whether bytes of ``other`` may stand for bytes of this key: same URL, size and
        validator, and the same sha256 where both know one (one node may have been given a
        ``--checksum`` the other lacks; two different digests are two contents). Without a
        validator only equal, known sha256s make the same content."""
        if (self.url, self.size, self.etag, self.last_modified) != (
            other.url,
            other.size,
            other.etag,
            other.last_modified,
        ):
            return False
        if self.etag is None and self.last_modified is None:  # only a digest can pin them
            return self.sha256 is not None and self.sha256 == other.sha256
        return self.sha256 is None or other.sha256 is None or self.sha256 == other.sha256

    def index_name(self) -> str:
        """A stable hex name under which the hub indexes this content (sha256 of the fields
        that ``same_content`` requires equal): two keys that are the same content have the
        same name. The URL, which may carry a signed query, never reaches the hub in clear.
        The sha256 is part of the name only when no validator pins the bytes."""
        pinned = self.etag is not None or self.last_modified is not None
        fields = (self.url, str(self.size), self.etag or "", self.last_modified or "")
        text = "\n".join((*fields, "" if pinned else self.sha256 or ""))
        return hashlib.sha256(text.encode()).hexdigest()
