"""The overview's bytes-per-day chart (issue #16): the SVG the real template draws, parsed,
has one group per day with bars in proportion to the counts, a title, a description and a
table of the same numbers; the figures (origin bytes saved, the last estimate) are said."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import jinja2
import pytest

from swarmget.web.site import HERE
from swarmget.web.views import speedup_text, traffic_view
from swarmget.web.views.traffic import HEIGHT, LABEL_SPACE

SVG = "{http://www.w3.org/2000/svg}"
KiB = 1024


def traffic(days: list[tuple[str, int, int, int]], **extra: Any) -> dict[str, Any]:
    return {
        "days": [{"day": d, "origin": o, "peer": p, "served": s} for d, o, p, s in days],
        "saved_today": days[-1][2] if days else 0,
        "saved_total": sum(p for _, _, p, _ in days),
        **extra,
    }


def render(view: Any) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("parts/traffic.html").render(traffic=view)


def svg_of(html: str) -> ET.Element:
    match = re.search(r"<svg.*?</svg>", html, re.S)
    assert match
    return ET.fromstring(
        match.group(0).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
    )


DAYS = [("2026-12-03", 0, 0, 0), ("2026-12-04", 100 * KiB, 300 * KiB, 50 * KiB),
        ("2026-12-05", 200 * KiB, 0, 400 * KiB)]  # fmt: skip


def test_bars_per_day_in_proportion() -> None:
    view = traffic_view(traffic(DAYS))
    assert view is not None
    svg = svg_of(render(view))
    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}title") is not None
    assert svg.find(f"{SVG}desc") is not None
    assert "300.0 KiB from peers" in (svg.find(f"{SVG}desc").text or "")  # type: ignore[union-attr]
    groups = svg.findall(f"{SVG}g")
    assert [g.get("data-day") for g in groups] == [d for d, *_ in DAYS]
    plot = HEIGHT - LABEL_SPACE
    top = 400 * KiB  # the highest bar: day 2's received (100 + 300) and day 3's served
    for g, (_, origin, peer, served) in zip(groups, DAYS, strict=True):
        bars = {r.get("data-kind"): r for r in g.findall(f"{SVG}rect")}
        assert set(bars) == {"origin", "peer", "served"}
        for kind, value in (("origin", origin), ("peer", peer), ("served", served)):
            assert int(bars[kind].get("data-value") or -1) == value
            assert float(bars[kind].get("height") or -1) == pytest.approx(
                plot * value / top, abs=0.1
            )
        # stacked: peers' bar sits on the origin's; served stands beside them
        o, p, s = bars["origin"], bars["peer"], bars["served"]
        assert float(p.get("y")) + float(p.get("height")) == pytest.approx(
            float(o.get("y")), abs=0.2
        )  # type: ignore[arg-type]
        assert float(o.get("y")) + float(o.get("height")) == pytest.approx(plot, abs=0.2)  # type: ignore[arg-type]
        assert float(s.get("x")) > float(o.get("x"))  # type: ignore[arg-type]
        assert o.find(f"{SVG}title") is not None


def test_table_fallback_and_figures() -> None:
    html = render(traffic_view(traffic(DAYS)))
    rows = re.findall(
        r"<tr><th scope=\"row\">(.*?)</th><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", html
    )
    assert rows[1] == ("2026-12-04", "100.0 KiB", "300.0 KiB", "50.0 KiB")
    assert 'id="saved-total">300.0 KiB<' in html
    assert 'id="saved-today">0 B<' in html


def test_no_traffic_says_so() -> None:
    assert traffic_view(None) is None
    assert "keeps no daily counts" in render(None)


@pytest.mark.parametrize(
    "bad", [{"days": "x"}, {"days": [{"day": "d"}]}, {"days": [], "saved_today": "many"}]
)
def test_malformed_traffic_is_no_chart(bad: dict[str, Any]) -> None:
    assert traffic_view(bad) is None


def test_empty_days_draw_nothing_tall() -> None:
    view = traffic_view(traffic([("2026-12-05", 0, 0, 0)]))
    assert view is not None
    assert not view.any_bytes
    svg = svg_of(render(view))
    assert all(float(r.get("height") or 1) == 0 for r in svg.iter(f"{SVG}rect"))


SPEEDUP = {
    "factor": 2.5, "missing": None, "fetched_bytes": 1000, "own_origin_bytes": 400,
    "peer_bytes": 600, "elapsed": 4.0, "own_origin_seconds": 4.0,
}  # fmt: skip


def test_last_finished_download_estimate_is_shown() -> None:
    downloads = [
        {
            "id": "a",
            "created": 1.0,
            "url": "http://o/old.bin",
            "speedup": {**SPEEDUP, "factor": 9.0},
        },
        {"id": "b", "created": 2.0, "url": "http://o/new.bin", "speedup": SPEEDUP},
        {"id": "c", "created": 3.0, "url": "http://o/running.bin"},
    ]
    view = traffic_view(traffic(DAYS), downloads)
    assert view is not None
    assert view.last_speedup_name == "new.bin"
    assert view.last_speedup is not None
    assert view.last_speedup.startswith("about 2.5× faster")
    assert "estimate" in view.last_speedup


def test_speedup_in_words() -> None:
    assert speedup_text(None) is None
    assert speedup_text({**SPEEDUP, "factor": None, "missing": "resumed"}) == (
        "no estimate: resumed from an earlier run"
    )
    assert speedup_text({**SPEEDUP, "factor": None, "missing": "nonsense"}) is None
