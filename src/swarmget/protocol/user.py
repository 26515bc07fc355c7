"""The node's user API messages (``swarmget.node.user_api``), defined once.

``POST /v1/downloads`` takes a ``CreateDownload``: the CLI builds one for a download it hands
to the running node, the portal parses its form into one, and the user API validates the
same model (unknown fields refused, lengths bounded) before anything is resolved or fetched.
Errors are ``{"error", "code"}`` (``swarmget.protocol.errors.USER_ERRORS``); a download that
failed reports ``{"code", "message"}`` with its error-tree code
(``swarmget.protocol.errors.exception_for_code`` reads it back).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from swarmget.core.verification import DEFAULT_VERIFY_SAMPLE

__all__ = ["DOWNLOADS_PATH", "CreateDownload"]

DOWNLOADS_PATH = "/v1/downloads"


class CreateDownload(BaseModel):
    """Start a download: ``url`` into ``output`` (relative to the node's download directory;
    None: a name from the URL), checked against ``checksums`` (``ALG:HEX``), from these
    ``helpers`` only (None: any the hub lists)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=8192)
    output: str | None = Field(default=None, max_length=4096)
    checksums: list[str] = Field(default_factory=list, max_length=8)
    force: bool = False
    restart_if_changed: bool = False
    helpers: list[str] | None = Field(default=None, max_length=256)
    verify_sample: float = Field(default=DEFAULT_VERIFY_SAMPLE, ge=0.0, le=1.0)
    max_size: int | None = Field(default=None, ge=0)

    def as_json(self) -> dict[str, Any]:
        """The request body (fields left at None are not sent: the same as absent)."""
        return self.model_dump(mode="json", exclude_none=True)
