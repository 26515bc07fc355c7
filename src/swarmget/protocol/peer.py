"""The peer API's messages, defined once for the requester and the helper.

``POST /v1/range`` carries a ``RangeRequest`` (the requester builds it, the helper validates
the same model strictly: unknown fields refused, lengths bounded, the range inside the file);
a helper streaming the range names it in ``RANGE_HEADER`` (``range_header``). ``GET
/v1/health`` answers a ``HealthAnswer``: ``ok``, the helper's node id and its statistics,
flat (``slots`` is what a requester reads; the other fields are for people and are kept as
they came); its optional query (``HealthQuery``: ``?warm=URL``, issue #14) names the URL
a requester is about to ask ranges of, as its ``RangeRequest`` would, so that the helper
opens its origin connection early; with ``lead=START-END`` too, the range the requester
will ask of it first (before the requester's probe has pinned the file): the helper may
send that origin request at once and keep its answer for the ``RangeRequest`` that asks
exactly those bytes (``node.helper_warm``). ``GET /v1/summary`` (signed like every peer route)
answers a ``NodeSummary`` for another node's fleet view: counts and rates only (its
``group_saved_today``, issue #15, is optional: an older node does not send it). Privacy
between machines: no URL, no file name, no download id of the node's user ever leaves it in
these answers; what it serves is counted, not named. Errors are
``swarmget.protocol.errors.PEER_ERRORS``.
"""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

__all__ = [
    "HEALTH_PATH",
    "MAX_DAY_BYTES",
    "MAX_WARM_URL",
    "RANGE_HEADER",
    "RANGE_PATH",
    "SUMMARY_PATH",
    "WARM_PARAM",
    "HealthAnswer",
    "HealthQuery",
    "LEAD_PARAM",
    "MAX_LEAD",
    "NodeSummary",
    "RangeRequest",
    "lead_bounds",
    "lead_value",
    "range_header",
]

RANGE_PATH = "/v1/range"
HEALTH_PATH = "/v1/health"
SUMMARY_PATH = "/v1/summary"
#: The most a ``NodeSummary`` may weigh on the wire (a reader stops there).
MAX_SUMMARY_BYTES = 16 * 1024
#: The most bytes a ``NodeSummary`` may count for one day (2**53: 8 PiB, more than a
#: 100 Gbit/s link moves both ways in a day, and exact as a JSON number in any reader).
MAX_DAY_BYTES = 2**53
#: The query parameter of ``GET /v1/health`` naming the URL the requester is about to
#: download (``HealthQuery``, issue #14): the helper may open its origin connection early.
WARM_PARAM = "warm"
#: The query parameter of ``GET /v1/health`` naming the first range the requester will ask
#: (``HealthQuery.lead``, ``START-END``, the end exclusive as in ``RANGE_HEADER``).
LEAD_PARAM = "lead"
#: The longest lead a helper fetches before it is asked (bytes).
MAX_LEAD = 4 * 1024 * 1024
#: The largest offset a lead may name (a file offset fits a signed 64-bit integer).
MAX_OFFSET = 2**63 - 1
#: The longest URL a health check carries (a longer one is left out: the check still works).
MAX_WARM_URL = 2048
#: The response header naming the range a helper streams (``range_header``).
RANGE_HEADER = "X-Swarm-Range"


class RangeRequest(BaseModel):
    """The body of ``POST /v1/range``: fetch ``[start, end)`` of the pinned file at ``url``
    (``size`` bytes, with this validator) and stream it on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=8192)
    start: int = Field(ge=0)
    end: int = Field(gt=0)
    size: int = Field(gt=0)
    etag: str | None = Field(default=None, max_length=1024)
    last_modified: str | None = Field(default=None, max_length=128)
    download_id: str = Field(default="", max_length=128)

    @model_validator(mode="after")
    def _range_inside_file(self) -> RangeRequest:
        if not self.start < self.end <= self.size:
            raise ValueError("need 0 <= start < end <= size")
        return self


def range_header(start: int, end: int) -> str:
    """The ``RANGE_HEADER`` value for ``[start, end)``."""
    return f"{start}-{end}"


class HealthAnswer(BaseModel):
    """A helper's ``GET /v1/health`` answer. Its statistics ride along as extra fields
    (``swarmget.node.helper_service.HelperService.statistics``); a requester reads ``node_id`` and
    ``slots`` only, strictly (a count is a JSON integer, at least 1)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    ok: StrictBool = True
    node_id: StrictStr = Field(max_length=128)
    slots: StrictInt = Field(ge=1)


class HealthQuery(BaseModel):
    """The query of ``GET /v1/health``, all optional: an old requester sends none, and a
    parameter this version does not know is ignored. ``warm``: the download's URL, for the
    helper to open a connection to its origin before the first range request comes;
    ``lead`` (only with ``warm``): ``START-END``, the first range it will ask (at most
    ``MAX_LEAD`` bytes), for the helper to request from the origin at once."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    warm: StrictStr | None = Field(default=None, min_length=1, max_length=MAX_WARM_URL)
    lead: StrictStr | None = Field(
        default=None, max_length=40, pattern=r"^[0-9]{1,19}-[0-9]{1,19}$"
    )

    @model_validator(mode="after")
    def _lead_is_a_range(self) -> HealthQuery:
        if self.lead is None:
            return self
        if self.warm is None:
            raise ValueError("lead needs warm (the URL it is a range of)")
        start, end = lead_bounds(self.lead)
        if not start < end <= MAX_OFFSET:
            raise ValueError("lead: need START < END < 2**63")
        if end - start > MAX_LEAD:
            raise ValueError(f"lead: longer than {MAX_LEAD} bytes")
        return self

    def lead_range(self) -> tuple[int, int] | None:
        """``lead`` as (start, end), end exclusive; None without one."""
        return None if self.lead is None else lead_bounds(self.lead)


def lead_bounds(text: str) -> tuple[int, int]:
    """(start, end) of a ``lead`` value ``START-END`` (well-formed: the model checked it)."""
    start, _, end = text.partition("-")
    return int(start), int(end)


def lead_value(start: int, end: int) -> str:
    """The ``lead`` value for ``[start, end)``."""
    return f"{start}-{end}"


class NodeSummary(BaseModel):
    """``GET /v1/summary``: one node as another node's fleet view shows it. Counts, rates and
    limits only (see the module docstring: no URL or file name of the node's user); bounded
    (``MAX_SUMMARY_BYTES``, at most 16 states). A field this version does not know (a newer
    node's) is ignored, as in the hub's messages: during an upgrade an older node still
    shows its newer peers; every field it knows is checked as strictly as ever."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    node_id: StrictStr = Field(max_length=128)
    version: StrictStr = Field(max_length=64)
    #: the node's downloads by state (a ``DownloadState`` value -> how many)
    downloads: dict[str, NonNegativeInt] = Field(default_factory=dict, max_length=16)
    download_rate: NonNegativeFloat = 0.0  # bytes/s over its running downloads
    active_streams: NonNegativeInt = 0  # helper streams it serves now
    streams_served: NonNegativeInt = 0  # since its start
    bytes_sent_today: NonNegativeInt = 0  # helper bytes streamed on this UTC day
    refused: NonNegativeInt = 0  # helper requests refused since its start
    slots: StrictInt = Field(ge=1)
    rate_limit: NonNegativeInt | None = None  # bytes/s, None: no limit
    daily_quota: NonNegativeInt | None = None  # bytes per UTC day, None: no quota
    quota_left: NonNegativeInt | None = None
    helping_paused: StrictBool = False
    hub_registered: StrictBool | None = None  # None: it uses no hub
    #: origin bytes it saved its group on this UTC day: LAN bytes served plus LAN bytes
    #: received (``node.daily``, #15); None: an older node, which does not say
    group_saved_today: StrictInt | None = Field(default=None, ge=0, le=MAX_DAY_BYTES)
