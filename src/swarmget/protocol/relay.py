"""The relay API's fetch messages (``swarmget.relay.app``, ``swarmget.net.relay_client``).

``POST /v1/fetch`` takes a ``FetchRequest``; it and ``GET /v1/fetches/{id}`` answer a
``FetchAnswer``: the fetch's id, URL and state (``fetching``, ``ready``, ``failed``), with the
blob's name, size, URLs and manifest once it is ready, the error once it failed, and the
bytes done while fetching. Fields that do not apply are not given, and left out of the JSON.
Errors are ``{"error", "code"}``: ``swarmget.protocol.errors.RELAY_ERRORS``; a failed fetch
carries its error-tree code (``relay_fetch_error`` reads it back).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FETCHES_PATH",
    "FETCH_PATH",
    "FetchAnswer",
    "FetchError",
    "FetchProgress",
    "FetchRequest",
    "blob_path",
]

FETCH_PATH = "/v1/fetch"
FETCHES_PATH = "/v1/fetches"


def blob_path(sha256: str) -> str:
    """Where a blob is served, relative to the relay's base URL."""
    return f"/v1/blobs/{sha256}"


class FetchRequest(BaseModel):
    """Have the relay fetch ``url`` (once, however many ask)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=8192)


class FetchError(BaseModel):
    """Why a fetch failed: the error-tree code and a message for people."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str = ""


class FetchProgress(BaseModel):
    model_config = ConfigDict(frozen=True)

    done: int
    size: int | None = None


class FetchAnswer(BaseModel):
    """A fetch, as the relay describes it."""

    model_config = ConfigDict(frozen=True)

    id: str
    url: str
    state: str  # fetching, ready, failed
    sha256: str | None = None
    size: int | None = None
    hit: bool | None = None
    blob_url: str | None = None
    manifest_url: str | None = None
    manifest: dict[str, Any] | None = None
    error: FetchError | None = None
    progress: FetchProgress | None = None

    def as_json(self) -> dict[str, Any]:
        """The answer's body (fields not given left out)."""
        return self.model_dump(mode="json", exclude_unset=True)
