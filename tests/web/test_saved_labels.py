"""Every "saved" figure is named for what it counts (portal overview, details summary,
``swarmget status``): bytes from peers (helpers and LAN holders) spare this node's own origin
link, but a helper's bytes crossed the helper's origin link, so only the group figure (LAN
served plus LAN received, ``core.byte_sources``) is called origin bytes saved."""

from __future__ import annotations

import re
from typing import Any

import jinja2

from swarmget.cli.operator import traffic_lines
from swarmget.core.byte_sources import group_saved
from swarmget.web.humanize import human_bytes
from swarmget.web.site import HERE
from swarmget.web.views import traffic_view

KiB = 1024
# today: 40 KiB from the origin, 30 KiB from peers (20 from a helper, 10 from a LAN
# holder), 5 KiB served to LAN peers from this node's holdings
DAY = {"day": "2026-12-05", "origin": 40 * KiB, "peer": 30 * KiB, "served": 5 * KiB,
       "lan_received": 10 * KiB, "lan_served": 5 * KiB}  # fmt: skip
TRAFFIC: dict[str, Any] = {
    "days": [DAY], "today": "2026-12-05", "saved_today": 30 * KiB, "saved_total": 30 * KiB,
    "group_saved_today": group_saved(lan_served=5 * KiB, lan_received=10 * KiB),
    "group_saved_total": group_saved(lan_served=5 * KiB, lan_received=10 * KiB),
}  # fmt: skip
ORIGIN_SAVED = re.compile(r"origin bytes saved", re.IGNORECASE)


def _figures(html: str) -> dict[str, tuple[str, str]]:
    """Each figure of a ``<dl>``: its id -> (its label, its value)."""
    found = re.findall(r"<dt>(.*?)</dt><dd id=\"([^\"]+)\">(.*?)</dd>", html)
    return {fid: (label, value) for label, fid, value in found}


def test_the_overview_names_each_saved_figure_for_what_it_counts() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    html = env.get_template("parts/traffic.html").render(traffic=traffic_view(TRAFFIC))
    shown = _figures(html)
    for fid in ("saved-today", "saved-total"):  # helpers' bytes among them: not origin bytes
        label, value = shown[fid]
        assert value == human_bytes(30 * KiB)
        assert not ORIGIN_SAVED.search(label), label
    for fid in ("group-saved-today", "group-saved-total"):  # LAN only: origin bytes saved
        label, value = shown[fid]
        assert value == human_bytes(15 * KiB)
        assert ORIGIN_SAVED.search(label), label
        assert "group" in label, label


def test_the_details_summary_does_not_call_peer_bytes_origin_bytes() -> None:
    summary = (HERE / "templates" / "parts" / "summary.html").read_text()
    label = re.search(r"<dt>([^<]*)</dt><dd id=\"saved\">", summary)
    assert label is not None
    assert not ORIGIN_SAVED.search(label.group(1)), label.group(1)


def test_status_names_each_saved_figure_for_what_it_counts() -> None:
    own, group = traffic_lines(TRAFFIC)
    assert human_bytes(30 * KiB) in own
    assert not ORIGIN_SAVED.search(own), own
    assert human_bytes(15 * KiB) in group
    assert ORIGIN_SAVED.search(group), group
    assert traffic_lines({**TRAFFIC, "group_saved_today": None}) == [own]  # an older node
