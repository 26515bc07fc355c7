"""A download's error as people read it: what happened in plain words, what to do next, and
the raw message (library text, a 13-line checksum report) kept for a ``<details>`` toggle.

Chosen by the error's code (``swarmget.protocol.errors.EXCEPTIONS``: the error tree's codes),
never by the message's text; a code this table does not know gets a general sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PlainError", "plain_error"]

_RETRY = "Retry: the bytes already fetched are kept."
_STORAGE = (
    "The node could not write the file",
    "Check the free space and the permissions of the download directory, then Retry.",
)
_SOURCES = (
    "No source could deliver the rest of the file: the server or the helpers were unreachable "
    "or kept failing",
    f"Check that the server is reachable from this node, then {_RETRY}",
)
#: code -> (what happened, what to do next)
_PLAIN: dict[str, tuple[str, str]] = {
    "cancelled": ("Cancelled", f"{_RETRY}"),
    "origin_unusable": (
        "The server refused the file (for example 404: not found)",
        "Check the URL in a browser; start a new download with the right one.",
    ),
    "forbidden_target": (
        "The URL leads to an address this node may not fetch from",
        "Use a public address, or allow the network in the node's settings.",
    ),
    "origin_changed": (
        "The file changed on the server during the download",
        "Start it again with “start over if the file changed” ticked.",
    ),
    "checksum_mismatch": (
        "The finished file does not match the checksum you gave",
        "Check the checksum; the data is kept for inspection.",
    ),
    "no_sources": _SOURCES,
    "source": _SOURCES,
    "source_retryable": _SOURCES,
    "source_broken": _SOURCES,
    "source_rate_limited": _SOURCES,
    "download": _SOURCES,
    "storage": _STORAGE,
    "insufficient_storage": (
        "There is not enough room for the file",
        "Free some space in the download directory, then Retry.",
    ),
    "too_large": (
        "The file is larger than this node's size limit",
        "Raise the node's max_size, or download it elsewhere.",
    ),
    "untrusted_file": (
        "A file in the way is not safely this node's own (a link, or another user's)",
        "Look at the file named in the details, remove it, then Retry.",
    ),
    "destination_exists": (
        "A file with this name exists already",
        "Choose another name, or tick “overwrite”.",
    ),
    "relay": ("The relay could not serve the file", f"Try again later: {_RETRY}"),
    "relay_unavailable": ("The relay could not be reached", f"Try again later: {_RETRY}"),
    "relay_rejected": (
        "The relay refused this node's request",
        "Check that the relay and this node share the swarm secret and their clocks agree.",
    ),
    "error": (
        "Something went wrong inside swarmget",
        "Retry; if it happens again, please report it with the details below.",
    ),
}
_GENERAL = ("The download failed", f"See the details below. {_RETRY}")


@dataclass(frozen=True, kw_only=True)
class PlainError:
    code: str
    summary: str  # one line, plain words
    advice: str  # what to do next
    details: str  # the raw message, for the toggle

    @property
    def line(self) -> str:
        return f"{self.summary}."


def plain_error(error: Mapping[str, Any] | None) -> PlainError | None:
    """The plain version of a download's ``{"code", "message"}`` (None: no error)."""
    if not error:
        return None
    code = str(error.get("code") or "")
    summary, advice = _PLAIN.get(code, _GENERAL)
    return PlainError(
        code=code, summary=summary, advice=advice, details=str(error.get("message") or "")
    )
