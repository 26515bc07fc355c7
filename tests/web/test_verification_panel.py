"""The details page's verification panel names LAN holders' bytes as such (fetch once per
LAN), as the sources table does: the report's bytes from others are split between helpers
and LAN holders, and its title says whose bytes were (or were not) checked."""

from __future__ import annotations

from typing import Any

import pytest

from swarmget.web import views
from swarmget.web.humanize import human_bytes

MiB = 1024 * 1024


def _source(sid: str, start: int, end: int, kind: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": sid, "state": "idle", "slots": 1, "active": 0, "received": end - start,
        "claimed": end - start, "rate": 0.0, "failures": 0, "ban_reason": None,
        "segments": [[start, end]],
    }  # fmt: skip
    if kind is not None:
        out["kind"] = kind
    return out


def _done(methods: list[str], verified: list[str], *, helper: int, lan: int) -> dict[str, Any]:
    """A finished download of ``MiB + helper + lan`` bytes: this node's, then a helper's,
    then a LAN holder's (none of a kind with 0 bytes)."""
    size = MiB + helper + lan
    sources = [_source("me", 0, MiB, "origin")]
    if helper:
        sources.append(_source("h1", MiB, MiB + helper, "helper"))
    if lan:
        sources.append(_source("holder1", MiB + helper, size, "lan"))
    report = {
        "methods": methods, "helper_bytes": helper + lan, "helper_streams": 4,
        "sampled_streams": 4 if "sampled" in methods else 0, "sampled_bytes": 65536,
        "sample_fraction": 0.01,
    }  # fmt: skip
    by_source = {"origin": MiB, "helper": helper, "lan": lan, "check": 65536}
    progress = {
        "stage": "done", "dest": "/d/f", "size": size, "done": size, "rate": 0.0,
        "elapsed": 1.0, "mode": "segmented", "resumed_bytes": 0, "sources": sources,
        "by_source": by_source,
    }  # fmt: skip
    sharing = {
        "joined": True, "holders_used": bool(lan), "origin_bytes": MiB + helper + 65536,
        "lan_bytes": lan, "own_bytes": 0, "holder_check": methods[0] if methods else "none",
        "banned_holders": [], "notes": [],
    }  # fmt: skip
    result = {
        "path": "/d/f", "size": size, "elapsed": 1.0, "verified": verified,
        "digests": {alg: "ab" for alg in verified}, "verification": report, "sharing": sharing,
    }  # fmt: skip
    return {
        "id": "abc", "url": "http://example.org/f", "state": "done", "created": 0.0,
        "peers": [], "error": None, "progress": progress, "result": result, "events": [],
    }  # fmt: skip


def text_of(panel: views.Verification) -> str:
    return " ".join((panel.title, *panel.lines))


@pytest.mark.parametrize(
    ("methods", "verified"), [(["sampled"], []), ([], []), (["checksum", "sampled"], ["sha256"])]
)
@pytest.mark.parametrize(("helper", "lan"), [(2 * MiB, 3 * MiB), (0, 3 * MiB), (2 * MiB, 0)])
def test_lan_holder_bytes_are_shown_as_such_as_in_the_sources_table(
    methods: list[str], verified: list[str], helper: int, lan: int
) -> None:
    view = views.details_view(_done(methods, verified, helper=helper, lan=lan), node_id="me")
    panel = view.verification
    table = {row.role: row.claimed for row in view.sources}
    assert (panel.helper_bytes, panel.lan_bytes) == (helper, lan)
    holder_check = (methods[0] if methods else "none") if lan else None
    assert panel.lan_check == holder_check  # as the sharing report says they were checked
    if view.sharing is not None and lan:  # ... in the same words as the sharing panel
        assert view.sharing.holder_check in text_of(panel)
    assert ("LAN holder" in table) == bool(lan)
    assert ("helper" in table) == bool(helper)
    text = text_of(panel)
    for role, amount in (("helper", helper), ("LAN holder", lan)):
        if amount:
            assert table[role] == human_bytes(amount)
            assert human_bytes(amount) in text
    if not verified:  # the title says whose bytes were sampled, or were not checked
        assert ("LAN holders" in panel.title) == bool(lan)
        assert ("helpers" in panel.title) == bool(helper)


def test_an_older_nodes_report_without_kinds_is_all_helpers() -> None:
    d = _done(["sampled"], [], helper=2 * MiB, lan=0)
    for s in d["progress"]["sources"]:
        s.pop("kind")
    d["result"].pop("sharing")
    panel = views.details_view(d, node_id="me").verification
    assert (panel.helper_bytes, panel.lan_bytes) == (2 * MiB, 0)
