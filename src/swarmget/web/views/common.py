"""What every portal view shares: names, ranges as people read them, the typed events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from swarmget.core import events as ev
from swarmget.core.ranges import ByteRange
from swarmget.web.humanize import human_bytes

PALETTE_SIZE = 8  # colour classes c0 ... c7 in portal.css


def human_range(r: ByteRange) -> str:
    """``[0, 4194304)`` → ``0 B–4.0 MiB`` (the raw offsets stay in a tooltip)."""
    return f"{human_bytes(r.start)}–{human_bytes(r.end)}"


def read_events(raw: Iterable[Mapping[str, Any]]) -> list[ev.Event]:
    """The typed events of a download's JSON; one that cannot be read is left out."""
    return [e for e in (ev.from_json(x) for x in raw) if e is not None]


def display_name(d: Mapping[str, Any]) -> str:
    """The file's name: where it is written, else the URL's last segment, else its host."""
    result, progress = d.get("result"), d.get("progress")
    path = (result or {}).get("path") or (progress or {}).get("dest")
    if path:
        return PurePosixPath(str(path)).name
    parts = urlsplit(str(d["url"]))
    return unquote(PurePosixPath(parts.path).name) or parts.hostname or str(d["url"])
