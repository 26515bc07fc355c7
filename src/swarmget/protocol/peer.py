"""The peer API's messages, defined once for the requester and the helper.

``POST /v1/range`` carries a ``RangeRequest`` (the requester builds it, the helper validates
the same model strictly: unknown fields refused, lengths bounded, the range inside the file);
a helper streaming the range names it in ``RANGE_HEADER`` (``range_header``). ``GET
/v1/health`` answers a ``HealthAnswer``: ``ok``, the helper's node id and its statistics,
flat (``slots`` is what a requester reads; the other fields are for people and are kept as
they came). Errors are ``swarmget.protocol.errors.PEER_ERRORS``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

__all__ = [
    "HEALTH_PATH",
    "RANGE_HEADER",
    "RANGE_PATH",
    "HealthAnswer",
    "RangeRequest",
    "range_header",
]

RANGE_PATH = "/v1/range"
HEALTH_PATH = "/v1/health"
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
    (``swarmget.node.helper.HelperService.statistics``); a requester reads ``node_id`` and
    ``slots`` only, strictly (a count is a JSON integer, at least 1)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    ok: StrictBool = True
    node_id: StrictStr = Field(max_length=128)
    slots: StrictInt = Field(ge=1)
