"""``POST /v1/downloads`` without pydantic: its path, its bounds, and its body when every
field is within them (issue #14: ``swarmget get`` handed to a running node must start fast,
and pydantic with the API's models costs it 0.1-0.3 s of imports).

The bounds are defined here once; ``protocol.user.CreateDownload`` (the model the node
validates with) declares its fields with them. ``create_body`` builds exactly the JSON
``CreateDownload(...).as_json()`` would, or returns None when some field is outside the
bounds: the caller then builds the model, whose ``ValidationError`` says which field.
"""

from __future__ import annotations

from collections.abc import Sequence

TYPE_CHECKING = False  # (typing is ~4 ms of a plain `get`'s start: issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DOWNLOADS_PATH",
    "MAX_CHECKSUMS",
    "MAX_HELPERS",
    "MAX_OUTPUT_CHARS",
    "MAX_URL_CHARS",
    "create_body",
]

DOWNLOADS_PATH = "/v1/downloads"
MAX_URL_CHARS = 8192
MAX_OUTPUT_CHARS = 4096
MAX_CHECKSUMS = 8
MAX_HELPERS = 256


def create_body(
    *,
    url: str,
    output: str | None,
    checksums: Sequence[str],
    force: bool,
    restart_if_changed: bool,
    verify_sample: float,
    max_size: int | None,
) -> dict[str, Any] | None:
    """The request body (fields at None left out, as ``CreateDownload.as_json``), or None
    when a field is outside the model's bounds (or not of its plain type)."""
    within = (
        type(url) is str
        and len(url) <= MAX_URL_CHARS
        and (output is None or (type(output) is str and len(output) <= MAX_OUTPUT_CHARS))
        and len(checksums) <= MAX_CHECKSUMS
        and all(type(c) is str for c in checksums)
        and type(force) is bool
        and type(restart_if_changed) is bool
        and type(verify_sample) is float
        and 0.0 <= verify_sample <= 1.0  # (False for NaN)
        and (max_size is None or (type(max_size) is int and max_size >= 0))
    )
    if not within:
        return None
    body: dict[str, Any] = {"url": url}
    if output is not None:
        body["output"] = output
    body |= {
        "checksums": list(checksums),
        "force": force,
        "restart_if_changed": restart_if_changed,
        "verify_sample": verify_sample,
    }
    if max_size is not None:
        body["max_size"] = max_size
    return body
