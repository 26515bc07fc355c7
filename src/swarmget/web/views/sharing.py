"""Where a download's bytes came from and what fetch once per LAN (#15) did for it: the
details page's "bytes by source" facts (live, from the progress's ``by_source``) and its
sharing lines (once done, from the result's ``sharing``, ``engine.sharing.SharingReport``).
``swarmget status`` says the same in the same words."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarmget.core.byte_sources import BytesBySource, SourceKind
from swarmget.core.verification import Verification
from swarmget.engine.sharing import SharingNote, SharingReport
from swarmget.web.humanize import human_bytes

__all__ = ["KIND_WORDS", "ByteFact", "SharingView", "byte_facts", "by_source", "sharing_view"]

#: how each kind of source is named on the page and in ``swarmget status``
KIND_WORDS = {
    SourceKind.ORIGIN: "from the origin",
    SourceKind.HELPER: "via helpers",
    SourceKind.LAN: "from LAN holders",
    SourceKind.CHECK: "origin checks",
}
_CHECK_WORDS = {
    Verification.CHECKSUM: "checked against the given checksum",
    Verification.MANIFEST: "checked against the relay's manifest",
    Verification.REPR_DIGEST: "checked against the origin's Repr-Digest",
    Verification.SAMPLED: "spot-checked: every holder stream sampled against the origin",
    Verification.NONE: "none taken",
}
_NOTE_WORDS = {
    SharingNote.NOT_SHAREABLE: "not shareable (no size, or no strong validator and no sha256)",
    SharingNote.RELAY: "fetched through a relay: not shared",
    SharingNote.INDEX_UNREACHABLE: "the hub's content index was unreachable: origin only",
    SharingNote.NO_CHECK: "no way to check holders' bytes (no digest, sampling off): not used",
    SharingNote.INDEX_SILENT: "the content index went silent: the origin link took the rest",
}


@dataclass(frozen=True, kw_only=True)
class ByteFact:
    kind: str  # a SourceKind value (the element's data-kind)
    label: str
    bytes: int
    text: str


@dataclass(frozen=True, kw_only=True)
class SharingView:
    joined: bool
    origin_bytes: str  # over origin links: own, helpers', checks
    lan_bytes: str
    holder_check: str
    holder_check_key: str  # a Verification value
    banned: tuple[str, ...]  # holders caught with bad bytes (and reported)
    notes: tuple[str, ...]


def by_source(d: Mapping[str, Any]) -> BytesBySource | None:
    """The download's bytes so far per kind of source; None from an older node."""
    counts = (d.get("progress") or {}).get("by_source")
    try:
        return None if counts is None else BytesBySource.from_json(counts)
    except (TypeError, ValueError, AttributeError):
        return None


def byte_facts(counts: BytesBySource | None) -> tuple[ByteFact, ...]:
    """One fact per kind of source (helpers and checks only when there are any)."""
    if counts is None:
        return ()
    shown = [k for k in SourceKind if counts.get(k) or k in (SourceKind.ORIGIN, SourceKind.LAN)]
    return tuple(
        ByteFact(
            kind=k.value, label=KIND_WORDS[k], bytes=counts.get(k), text=human_bytes(counts.get(k))
        )
        for k in shown
    )


def sharing_view(d: Mapping[str, Any]) -> SharingView | None:
    """What sharing did (None: not asked for, not done yet, or an older node)."""
    data = (d.get("result") or {}).get("sharing")
    try:
        report = None if data is None else SharingReport.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None
    if report is None:
        return None
    return SharingView(
        joined=report.joined,
        origin_bytes=human_bytes(report.origin_bytes),
        lan_bytes=human_bytes(report.lan_bytes),
        holder_check=_CHECK_WORDS[report.holder_check],
        holder_check_key=report.holder_check.value,
        banned=report.banned_holders,
        notes=tuple(_NOTE_WORDS[n] for n in report.notes),
    )
