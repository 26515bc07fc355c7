"""A download's rate over time as a stacked area chart, drawn on the server as SVG (no script,
no library: the portal ships no charting code and works offline).

Input is the download JSON's ``rates``: samples of how many bytes each source had received
(``node.rates``). Each interval between two samples gives each source's rate there; the
sources are stacked in the order of the piece map's colours, so the chart reads like the
map's legend. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmget.web.humanize import human_duration, human_rate

__all__ = ["WIDTH", "HEIGHT", "Area", "RateChart", "rate_chart"]

WIDTH = 600  # the SVG's own units (it scales to the page)
HEIGHT = 120


@dataclass(frozen=True, kw_only=True)
class Area:
    source: str
    colour: int
    points: str  # an SVG polygon's points
    peak: str  # the source's highest rate, for its tooltip


@dataclass(frozen=True, kw_only=True)
class RateChart:
    areas: tuple[Area, ...]
    top: str  # the highest total rate (the chart's height)
    span: str  # the time the chart covers
    summary: str  # for screen readers


def rate_chart(
    samples: Sequence[Sequence[Any]] | None, colours: Mapping[str, int]
) -> RateChart | None:
    """The chart; None with fewer than two samples (nothing to draw yet) or a malformed list."""
    try:
        points = [
            (float(at), {str(k): int(v) for k, v in got.items()}) for at, got in samples or []
        ]
    except (TypeError, ValueError, AttributeError):
        return None
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    sources = sorted({s for _, got in points for s in got}, key=lambda s: (colours.get(s, 99), s))
    rates = _rates(points, sources)  # per interval: {source: bytes/s}
    top = max((sum(r.values()) for _, _, r in rates), default=0.0) or 1.0
    start, end = points[0][0], points[-1][0]
    base = [0.0] * len(rates)
    areas = []
    for source in sources:
        upper = [b + r[source] for b, (_, _, r) in zip(base, rates, strict=True)]
        areas.append(
            Area(
                source=source,
                colour=colours.get(source, 0),
                points=_polygon(rates, base, upper, start, end, top),
                peak=human_rate(max(r[source] for _, _, r in rates)),
            )
        )
        base = upper
    total = (sum(points[-1][1].values()) - sum(points[0][1].values())) / (end - start)
    return RateChart(
        areas=tuple(areas),
        top=human_rate(top),
        span=human_duration(end - start),
        summary=f"rate over {human_duration(end - start)}: peak {human_rate(top)}, "
        f"average {human_rate(total)}, {len(sources)} source(s)",
    )


def _rates(
    points: Sequence[tuple[float, Mapping[str, int]]], sources: Sequence[str]
) -> list[tuple[float, float, dict[str, float]]]:
    out = []
    for (t0, before), (t1, after) in zip(points, points[1:], strict=False):
        dt = t1 - t0
        if dt <= 0:
            continue
        out.append((t0, t1, {s: max(0, after.get(s, 0) - before.get(s, 0)) / dt for s in sources}))
    return out


def _polygon(
    rates: Sequence[tuple[float, float, Mapping[str, float]]],
    lower: Sequence[float],
    upper: Sequence[float],
    start: float,
    end: float,
    top: float,
) -> str:
    def x(t: float) -> float:
        return WIDTH * (t - start) / (end - start)

    def y(v: float) -> float:
        return HEIGHT * (1 - v / top)

    edge = [
        p
        for (t0, t1, _), v in zip(rates, upper, strict=True)
        for p in ((x(t0), y(v)), (x(t1), y(v)))
    ]
    back = [
        p
        for (t0, t1, _), v in reversed(list(zip(rates, lower, strict=True)))
        for p in ((x(t1), y(v)), (x(t0), y(v)))
    ]
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in edge + back)
