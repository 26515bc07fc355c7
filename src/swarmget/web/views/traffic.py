"""The overview's bytes per day, a bar chart drawn on the server as SVG (no script, no
library), and the figures the product exists for: this node's own origin link spared (bytes
received from peers, helpers and LAN holders, instead of over it), the origin bytes saved for
the group (LAN only: a helper's bytes crossed its own origin link) and the last finished download's
"faster than alone" estimate.

Input is the node status's ``traffic`` (``node.daily``: ``{"days": [{"day", "origin",
"peer", "served"} ...], "saved_today", "saved_total"}``) and the downloads' JSON
(``speedup``, ``core.savings``). Each day has two bars: received (from the origin at the
bottom, from peers on top) and served to peers. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmget.core.savings import NoEstimate
from swarmget.web.humanize import human_bytes, human_duration

__all__ = ["HEIGHT", "WIDTH", "DayBars", "Rect", "TrafficView", "speedup_text", "traffic_view"]

WIDTH = 600  # the SVG's own units (it scales to the page)
HEIGHT = 140
LABEL_SPACE = 16  # below the bars: the day's label
_GAP = 0.2  # of a day's slot, left free between days


@dataclass(frozen=True, kw_only=True)
class Rect:
    kind: str  # origin, peer, served
    x: float
    y: float
    width: float
    height: float
    value: int
    title: str


@dataclass(frozen=True, kw_only=True)
class DayBars:
    day: str  # YYYY-MM-DD
    label: str  # MM-DD, under the bars
    label_x: float
    rects: tuple[Rect, ...]
    origin: str
    peer: str
    served: str


@dataclass(frozen=True, kw_only=True)
class TrafficView:
    days: tuple[DayBars, ...]
    top: str  # the highest bar (the chart's height)
    summary: str  # the chart's description, for screen readers
    saved_today: str
    saved_total: str
    any_bytes: bool
    #: origin bytes saved for the group (LAN served + LAN received): today (UTC), in all;
    #: None from an older node
    group_saved_today: str | None = None
    group_saved_total: str | None = None
    day: str | None = None  # today, as the node counts it (UTC, the daily quota's day)
    last_speedup: str | None  # the latest finished download's estimate, said in words
    last_speedup_name: str | None


def traffic_view(
    traffic: Mapping[str, Any] | None, downloads: Iterable[Mapping[str, Any]] = ()
) -> TrafficView | None:
    """The overview's chart and figures; None when the node has no daily counts or they are
    malformed."""
    if not traffic:
        return None
    try:
        rows = [
            (str(d["day"]), int(d["origin"]), int(d["peer"]), int(d["served"]))
            for d in traffic["days"]
        ]
        saved_today, saved_total = int(traffic["saved_today"]), int(traffic["saved_total"])
    except (KeyError, TypeError, ValueError):
        return None
    top = max((max(o + p, s) for _, o, p, s in rows), default=0)
    name, said = _last_speedup(downloads)
    return TrafficView(
        days=tuple(_bars(rows, top or 1)),
        top=human_bytes(top),
        summary=_summary(rows),
        saved_today=human_bytes(saved_today),
        saved_total=human_bytes(saved_total),
        any_bytes=top > 0,
        last_speedup=said,
        last_speedup_name=name,
        group_saved_today=_bytes_or_none(traffic.get("group_saved_today")),
        group_saved_total=_bytes_or_none(traffic.get("group_saved_total")),
        day=None if traffic.get("today") is None else str(traffic["today"]),
    )


def _bytes_or_none(value: Any) -> str | None:
    try:
        return None if value is None else human_bytes(int(value))
    except (TypeError, ValueError):
        return None


def _bars(rows: Sequence[tuple[str, int, int, int]], top: int) -> Iterable[DayBars]:
    slot = WIDTH / max(1, len(rows))
    bar = slot * (1 - _GAP) / 2
    plot = HEIGHT - LABEL_SPACE

    def rect(kind: str, x: float, below: int, value: int, day: str) -> Rect:
        height = plot * value / top
        y = plot - plot * below / top - height
        words = {"origin": "from the origin", "peer": "from peers", "served": "served to peers"}
        return Rect(
            kind=kind,
            x=round(x, 1),
            y=round(y, 1),
            width=round(bar, 1),
            height=round(height, 1),
            value=value,
            title=f"{day}: {human_bytes(value)} {words[kind]}",
        )

    for i, (day, origin, peer, served) in enumerate(rows):
        left = i * slot + slot * _GAP / 2
        yield DayBars(
            day=day,
            label=day[5:],
            label_x=round(i * slot + slot / 2, 1),
            rects=(
                rect("origin", left, 0, origin, day),
                rect("peer", left, origin, peer, day),
                rect("served", left + bar, 0, served, day),
            ),
            origin=human_bytes(origin),
            peer=human_bytes(peer),
            served=human_bytes(served),
        )


def _summary(rows: Sequence[tuple[str, int, int, int]]) -> str:
    if not rows:
        return "no days"
    origin = sum(r[1] for r in rows)
    peer = sum(r[2] for r in rows)
    served = sum(r[3] for r in rows)
    return (
        f"bytes per day, {rows[0][0]} to {rows[-1][0]}: received {human_bytes(origin)} from "
        f"the origin and {human_bytes(peer)} from peers, served {human_bytes(served)} to peers"
    )


def speedup_text(speedup: Mapping[str, Any] | None) -> str | None:
    """A finished download's estimate in words (None: it has none, e.g. not done)."""
    if not speedup:
        return None
    try:
        factor = speedup.get("factor")
        if factor is not None:
            own = human_bytes(int(speedup["own_origin_bytes"]))
            took = human_duration(float(speedup["own_origin_seconds"]))
            return (
                f"about {float(factor):.1f}× faster than alone (estimate: this node's own "
                f"origin link fetched {own} in {took})"
            )
        missing = NoEstimate(speedup["missing"])
    except (KeyError, TypeError, ValueError):
        return None
    return f"no estimate: {missing.text}"


def _last_speedup(downloads: Iterable[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    latest: tuple[float, str, str] | None = None
    for d in downloads:
        said = speedup_text(d.get("speedup"))
        if said is None:
            continue
        created = float(d.get("created") or 0)
        if latest is None or created > latest[0]:
            name = str((d.get("result") or {}).get("path") or d.get("url") or d.get("id"))
            latest = (created, name.rsplit("/", 1)[-1], said)
    return (None, None) if latest is None else (latest[1], latest[2])
