"""Fetch once per LAN (#15): the messages of the hub's content index and of holders.

Design: ``docs/fetch-once.md`` (sections 3, 4, 6 and 10). Two conversations, both signed
with the swarm secret like every other request between nodes and with the hub:

* node to hub, about a content by its ``index_name`` (``ContentKey.index_name()``: a sha256,
  never the URL): ``POST {CONTENT_PREFIX}/{name}/join`` (``JoinContent`` -> ``ContentGroup``),
  ``.../news`` (``ContentNews`` -> ``ContentGroup``), ``.../leave`` (``ContentLeave``) and
  ``.../report`` (``ContentReport``). The hub keeps a ``core.claims.ClaimBook`` per name in
  memory; members die with their registration.
* node to node: ``POST CONTENT_RANGE_PATH`` (``ContentRangeRequest``: the full key and a
  range the holder verified; the answer streams the bytes like ``/v1/range``) and
  ``GET {CONTENT_PREFIX}/{name}/pieces`` (``PieceHashes``).

Everything is strict: unknown fields refused, counts 0 ... 2**63-1, range lists sorted,
disjoint, non-empty runs, at most ``MAX_RANGES`` per message and inside the content's size.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from swarmget.core.content import ContentKey
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.verification import Verification
from swarmget.protocol.hub import MAX_COUNT, MAX_PEERS_PER_ANSWER, NodeId

__all__ = [
    "CONTENT_PREFIX",
    "CONTENT_RANGE_PATH",
    "MAX_CONTENT_BODY",
    "MAX_PIECE_HASHES",
    "MAX_RANGES",
    "ContentGroup",
    "ContentKeyModel",
    "ContentLeave",
    "ContentMember",
    "ContentNews",
    "ContentRangeRequest",
    "ContentReport",
    "JoinContent",
    "PieceHashes",
    "content_path",
    "is_index_name",
    "ranges_of",
    "wire_ranges",
]

#: ``{CONTENT_PREFIX}/{name}/join`` etc. at the hub; ``.../pieces`` at a holder.
CONTENT_PREFIX = "/v1/content"
#: Node to node: a verified range of a content, streamed like ``/v1/range``.
CONTENT_RANGE_PATH = "/v1/content-range"
#: The most runs one message lists.
MAX_RANGES = 1024
#: The most piece hashes one ``PieceHashes`` answer lists.
MAX_PIECE_HASHES = 65536
#: Bytes of JSON a hub or holder reads of a content request (1024 runs of two 19-digit
#: numbers plus the frame fit well inside).
MAX_CONTENT_BODY = 64 * 1024

_INDEX_NAME = re.compile(r"^[0-9a-f]{64}$")
_SHA256 = r"^[0-9a-f]{64}$"

_Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
_Size = Annotated[int, Field(gt=0, le=MAX_COUNT, strict=True)]
#: ``[start, end)`` on the wire: a two-item list of integers.
WireRange = tuple[_Count, _Count]

#: Not ``strict=True`` model-wide: strict mode refuses a JSON list for a tuple in python
#: mode. Counts are strict through ``_Count``; booleans are ``StrictBool``.
_STRICT = ConfigDict(extra="forbid", frozen=True)


def is_index_name(name: str) -> bool:
    """Whether ``name`` has the shape of ``ContentKey.index_name()`` (64 lowercase hex)."""
    return bool(_INDEX_NAME.match(name))


def content_path(name: str, action: str) -> str:
    """``/v1/content/{name}/{action}`` (``join``, ``news``, ``leave``, ``report``, ``pieces``)."""
    if not is_index_name(name):
        raise ValueError("not a content index name")
    return f"{CONTENT_PREFIX}/{name}/{action}"


def _check_runs(runs: list[tuple[int, int]], size: int | None = None) -> list[tuple[int, int]]:
    if len(runs) > MAX_RANGES:
        raise ValueError(f"at most {MAX_RANGES} ranges")
    last = -1
    for start, end in runs:
        if not start < end:
            raise ValueError("each range needs start < end")
        if start <= last:
            raise ValueError("ranges must be sorted and disjoint")
        if size is not None and end > size:
            raise ValueError("a range lies beyond the content's size")
        last = end
    return runs


def wire_ranges(ranges: RangeSet) -> list[tuple[int, int]]:
    """A ``RangeSet`` as the sorted ``[[start, end], ...]`` the messages carry."""
    return [(r.start, r.end) for r in ranges]


def ranges_of(runs: list[tuple[int, int]]) -> RangeSet:
    """The ``RangeSet`` a (validated) message's runs stand for."""
    return RangeSet.of_sorted(ByteRange(start, end) for start, end in runs)


class ContentKeyModel(BaseModel):
    """A ``core.content.ContentKey`` on the wire. Node to node only: the URL never goes to
    the hub (which knows contents by ``index_name``)."""

    model_config = _STRICT

    url: str = Field(min_length=1, max_length=8192)
    size: _Size
    etag: str | None = Field(default=None, max_length=1024)
    last_modified: str | None = Field(default=None, max_length=128)
    sha256: str | None = Field(default=None, pattern=_SHA256)

    @classmethod
    def of(cls, key: ContentKey) -> ContentKeyModel:
        """The wire form of ``key``; ``ValueError`` for a key without a size (unshareable)."""
        if key.size is None or key.size <= 0:
            raise ValueError("a content without a known size cannot be shared")
        return cls(
            url=key.url,
            size=key.size,
            etag=key.etag,
            last_modified=key.last_modified,
            sha256=key.sha256,
        )

    def key(self) -> ContentKey:
        """The core key (raises ``ValueError`` if the fields do not make one)."""
        return ContentKey(
            url=self.url,
            size=self.size,
            etag=self.etag,
            last_modified=self.last_modified,
            sha256=self.sha256,
        )


class JoinContent(BaseModel):
    """``POST .../{name}/join``: become a member of the content (``fetching``: a requester;
    otherwise a holder announcing what its share cache keeps). ``have``: verified ranges it
    already holds; ``granted``: grants it still works on (a re-join after a hub restart);
    ``can_fetch`` False: no origin quota left, it receives only (never granted)."""

    model_config = _STRICT

    size: _Size
    have: list[WireRange] = Field(default_factory=list)
    granted: list[WireRange] = Field(default_factory=list)
    fetching: StrictBool = True
    can_fetch: StrictBool = True

    @model_validator(mode="after")
    def _runs(self) -> JoinContent:
        _check_runs(self.have, self.size)
        _check_runs(self.granted, self.size)
        return self


class ContentMember(BaseModel):
    """Another member of the content, as the hub lists it: its peer API and what it has."""

    model_config = _STRICT

    node_id: NodeId
    url: str = Field(max_length=300)
    have: list[WireRange] = Field(default_factory=list)
    fetching: StrictBool = True

    @field_validator("have")
    @classmethod
    def _have(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return _check_runs(value)


class ContentGroup(BaseModel):
    """The hub's answer to a join or news: the other members (at most
    ``MAX_PEERS_PER_ANSWER``, each with everything it has) and, when asked for, the next
    grant of origin bytes for the asker's own link (None: nothing to grant now)."""

    model_config = _STRICT

    name: str
    size: _Size
    members: list[ContentMember] = Field(default_factory=list, max_length=MAX_PEERS_PER_ANSWER)
    grant: WireRange | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not is_index_name(value):
            raise ValueError("not a content index name")
        return value

    @model_validator(mode="after")
    def _inside(self) -> ContentGroup:
        for member in self.members:
            _check_runs(member.have, self.size)
        if self.grant is not None:
            _check_runs([self.grant], self.size)
        return self


class ContentNews(BaseModel):
    """``POST .../{name}/news`` (about once a second while fetching): ranges verified since
    the last news; ``claim``: grant my origin link more; ``idle``: my origin link has
    nothing left (the group endgame may re-grant a slow member's old grant)."""

    model_config = _STRICT

    have: list[WireRange] = Field(default_factory=list)
    claim: StrictBool = False
    idle: StrictBool = False

    @field_validator("have")
    @classmethod
    def _have(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return _check_runs(value)


class ContentLeave(BaseModel):
    """``POST .../{name}/leave``: done or cancelled; ``keep_as_holder``: stay in the index
    as a holder of what it has (its share cache keeps the file)."""

    model_config = _STRICT

    keep_as_holder: StrictBool = False


class ContentReport(BaseModel):
    """``POST .../{name}/report``: member ``node_id`` served bytes of ``[start, end)`` that
    failed ``verification``. The hub drops a member reported by two others."""

    model_config = _STRICT

    node_id: NodeId
    start: _Count
    end: _Count
    verification: Verification

    @model_validator(mode="after")
    def _range(self) -> ContentReport:
        if not self.start < self.end:
            raise ValueError("need start < end")
        return self


class ContentRangeRequest(BaseModel):
    """``POST /v1/content-range`` (node to node): stream ``[start, end)`` of the content
    ``key``; the holder answers 409 ``content_not_held`` unless it verified all of it."""

    model_config = _STRICT

    key: ContentKeyModel
    start: _Count
    end: _Count

    @model_validator(mode="after")
    def _range(self) -> ContentRangeRequest:
        if not self.start < self.end <= self.key.size:
            raise ValueError("need 0 <= start < end <= size")
        return self


class PieceHashes(BaseModel):
    """``GET .../{name}/pieces`` (node to node): sha256 of the pieces the holder fetched
    from the origin itself, as ``(piece index, hex digest)``, sorted by index."""

    model_config = _STRICT

    piece_size: _Size
    hashes: list[tuple[_Count, Annotated[str, Field(pattern=_SHA256)]]] = Field(
        default_factory=list, max_length=MAX_PIECE_HASHES
    )

    @field_validator("hashes")
    @classmethod
    def _sorted(cls, value: list[tuple[int, str]]) -> list[tuple[int, str]]:
        indexes = [i for i, _ in value]
        if indexes != sorted(set(indexes)):
            raise ValueError("piece indexes must be sorted and distinct")
        return value
