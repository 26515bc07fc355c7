"""The node's user API messages (``swarmget.node.user_api``), defined once.

``POST /v1/downloads`` takes a ``CreateDownload``: the CLI builds one for a download it hands
to the running node, the portal parses its form into one, and the user API validates the
same model (unknown fields refused, lengths bounded) before anything is resolved or fetched.
Errors are ``{"error", "code"}`` (``swarmget.protocol.errors.USER_ERRORS``); a download that
failed reports ``{"code", "message"}`` with its error-tree code
(``swarmget.protocol.errors.exception_for_code`` reads it back).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from swarmget.core.lifecycle import DownloadState
from swarmget.core.verification import DEFAULT_VERIFY_SAMPLE
from swarmget.protocol.content import ContentKeyModel
from swarmget.protocol.user_create import (
    DOWNLOADS_PATH,
    MAX_CHECKSUMS,
    MAX_HELPERS,
    MAX_OUTPUT_CHARS,
    MAX_URL_CHARS,
)

__all__ = [
    "CLEAR_FINISHED_PATH",
    "DOWNLOADS_PATH",
    "CreateDownload",
    "DownloadAction",
    "DownloadFilter",
    "Removal",
    "RemoveDownload",
    "SETTINGS_PATH",
    "SHARED_OUTPUTS_PATH",
    "ShareOutput",
    "ShareRefusal",
    "SharedOutput",
    "SettingSource",
    "SettingsUpdate",
    "SettingsView",
    "action_path",
]

#: fetch once per LAN (#15): ``get --share-output`` hands the node a file it saved elsewhere
SHARED_OUTPUTS_PATH = "/v1/shared-outputs"
CLEAR_FINISHED_PATH = "/v1/downloads/clear-finished"  # POST: {"removed": N}


class CreateDownload(BaseModel):
    """Start a download: ``url`` into ``output`` (relative to the node's download directory;
    None: a name from the URL), checked against ``checksums`` (``ALG:HEX``), from these
    ``helpers`` only (None: any the hub lists)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL_CHARS)
    output: str | None = Field(default=None, max_length=MAX_OUTPUT_CHARS)
    checksums: list[str] = Field(default_factory=list, max_length=MAX_CHECKSUMS)
    force: bool = False
    restart_if_changed: bool = False
    helpers: list[str] | None = Field(default=None, max_length=MAX_HELPERS)
    verify_sample: float = Field(default=DEFAULT_VERIFY_SAMPLE, ge=0.0, le=1.0)
    max_size: int | None = Field(default=None, ge=0)

    def as_json(self) -> dict[str, Any]:
        """The request body (fields left at None are not sent: the same as absent)."""
        return self.model_dump(mode="json", exclude_none=True)


class DownloadAction(enum.StrEnum):
    """``POST /v1/downloads/{id}/{action}`` (no body): answered with the download's JSON, or
    409 ``wrong_state`` when its state does not allow it. Each keeps the download's id: the
    same download goes on from the bytes its part file holds."""

    PAUSE = "pause"  # a starting or running one
    RESUME = "resume"  # a paused one
    RETRY = "retry"  # a failed or cancelled one


def action_path(download_id: str, action: DownloadAction | str) -> str:
    return f"{DOWNLOADS_PATH}/{download_id}/{action}"


class RemoveDownload(BaseModel):
    """``POST /v1/downloads/{id}/remove``: forget a download that does not run (409
    otherwise); with ``delete_file`` its file, or its part file, is deleted too."""

    model_config = ConfigDict(extra="forbid")

    delete_file: bool = False


class Removal(BaseModel):
    """The answer to a removal: the id, and the file names deleted."""

    id: str
    deleted: list[str]


def _utc(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class DownloadFilter(BaseModel):
    """``GET /v1/downloads`` query: ``state`` (comma-separated states), ``since`` (created at
    or after) and ``before`` (created before), each an ISO 8601 date or time (UTC unless
    it says otherwise) or Unix seconds, and ``q``: text the URL or file name contains
    (case-insensitive). Every one given must match."""

    model_config = ConfigDict(extra="forbid")

    state: list[DownloadState] | None = Field(default=None, max_length=len(DownloadState))
    since: datetime | None = None
    before: datetime | None = None
    q: str | None = Field(default=None, max_length=400)

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> DownloadFilter:
        """From a request's query (``ValidationError`` for a bad value or an unknown key)."""
        raw: dict[str, Any] = {k: v for k, v in query.items() if v != ""}
        if "state" in raw:
            raw["state"] = [s for s in str(raw["state"]).split(",") if s]
        return cls.model_validate(raw)

    def as_query(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.state:
            out["state"] = ",".join(s.value for s in self.state)
        for name in ("since", "before"):
            moment = getattr(self, name)
            if moment is not None:
                out[name] = moment.isoformat()
        if self.q:
            out["q"] = self.q
        return out

    def matches(self, download: Mapping[str, Any]) -> bool:
        """Whether a download's JSON (``node.download_json``) passes."""
        if self.state and download.get("state") not in self.state:
            return False
        created = float(download.get("created") or 0.0)
        since, before = _utc(self.since), _utc(self.before)
        if (since is not None and created < since) or (before is not None and created >= before):
            return False
        return not self.q or self.q.casefold() in _searchable(download).casefold()


def _searchable(download: Mapping[str, Any]) -> str:
    progress = download.get("progress") or {}
    result = download.get("result") or {}
    parts = [download.get("id"), download.get("url"), progress.get("dest"), result.get("path")]
    return "\n".join(str(p) for p in parts if p)


SETTINGS_PATH = "/v1/settings"  # GET: a SettingsView; PUT a SettingsUpdate: the new view
#: The most slots a node may be given at run time (as many as the config file allows).
MAX_SLOTS = 256


class SettingSource(enum.StrEnum):
    """Where a setting's value comes from: the config file (or the command line, or the
    built-in default), or a change made at run time (kept in the state directory)."""

    CONFIG = "config"
    RUNTIME = "runtime"


class SettingsUpdate(BaseModel):
    """``PUT /v1/settings``: change the node's helper limits at run time. Only the fields
    sent change; ``null`` for ``rate_limit``/``daily_quota`` means "no limit". Names listed
    in ``reset`` go back to the config file's value (and are no longer kept). Kept in the
    node's state directory, a value set here wins over the config file's at every start."""

    model_config = ConfigDict(extra="forbid")

    slots: int | None = Field(default=None, ge=1, le=MAX_SLOTS)
    rate_limit: int | None = Field(default=None, ge=1024, le=10**12)  # bytes/s
    daily_quota: int | None = Field(default=None, ge=1, le=10**15)  # bytes per UTC day
    helping_paused: bool | None = None
    reset: list[Literal["slots", "rate_limit", "daily_quota", "helping_paused"]] = Field(
        default_factory=list, max_length=4
    )

    def changes(self) -> dict[str, Any]:
        """The fields sent (besides ``reset``), with their values."""
        return {k: getattr(self, k) for k in self.model_fields_set if k != "reset"}

    @field_validator("slots", "helping_paused")
    @classmethod
    def _not_null(cls, value: int | bool | None) -> int | bool | None:
        # runs only for a value sent: null here cannot mean "no limit" (use ``reset``)
        if value is None:
            raise ValueError("give a value, or list the name in reset")
        return value


class SettingValue(BaseModel):
    value: int | bool | None
    source: SettingSource


class SettingsView(BaseModel):
    """The node's helper settings in force, each with where its value comes from."""

    slots: SettingValue
    rate_limit: SettingValue
    daily_quota: SettingValue
    helping_paused: SettingValue


class ShareOutput(BaseModel):
    """``POST /v1/shared-outputs``: serve the finished file at ``path`` (absolute, saved
    outside the node's directories by ``swarmget get``) to the node's LAN group as content
    ``key`` (what the download's probe pinned). The user asked (``get --share-output``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, max_length=4096)
    key: ContentKeyModel


class ShareRefusal(enum.StrEnum):
    """Why the node does not share the file."""

    #: the node does not share files saved outside its directories (its --share-output)
    NODE_REFUSES = "node_refuses"
    #: sharing off (cache budget 0), or the file is not this user's regular file of the
    #: content's size, or the content is not shareable, or it does not fit the budget
    NOT_KEPT = "not_kept"


class SharedOutput(BaseModel):
    """The answer: kept (served and announced) or why not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kept: bool
    refusal: ShareRefusal | None = None
