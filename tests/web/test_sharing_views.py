"""The details page's bytes by source and sharing lines (``web.views.sharing``), from the
download JSON: what is shown, and nothing (not a crash) for an older node's or a malformed
answer."""

from __future__ import annotations

from typing import Any

import pytest

from swarmget.core.verification import Verification
from swarmget.engine.sharing import SharingNote, SharingReport
from swarmget.web.views.sharing import by_source, byte_facts, sharing_view


def test_facts_show_origin_and_lan_always_helpers_and_checks_when_any() -> None:
    d = {"progress": {"by_source": {"origin": 10, "helper": 0, "lan": 2048, "check": 0}}}
    facts = byte_facts(by_source(d))
    assert [(f.kind, f.bytes, f.text) for f in facts] == [
        ("origin", 10, "10 B"),
        ("lan", 2048, "2.0 KiB"),
    ]
    d["progress"]["by_source"]["check"] = 5
    assert [f.kind for f in byte_facts(by_source(d))] == ["origin", "lan", "check"]


@pytest.mark.parametrize(
    "d", [{}, {"progress": {}}, {"progress": {"by_source": {"lan": -3}}}, {"progress": None}]
)
def test_no_facts_from_an_older_or_malformed_answer(d: dict[str, Any]) -> None:
    assert byte_facts(by_source(d)) == ()


def test_the_sharing_lines_say_how_holders_were_checked_and_who_was_banned() -> None:
    report = SharingReport(
        joined=True,
        holders_used=True,
        origin_bytes=1024,
        lan_bytes=4096,
        holder_check=Verification.SAMPLED,
        banned_holders=("liar1",),
        notes=(SharingNote.INDEX_SILENT,),
    )
    view = sharing_view({"result": {"sharing": report.to_json()}})
    assert view is not None
    assert (view.origin_bytes, view.lan_bytes) == ("1.0 KiB", "4.0 KiB")
    assert view.holder_check_key == "sampled"
    assert "sampled against the origin" in view.holder_check
    assert view.banned == ("liar1",)
    assert len(view.notes) == 1


def test_no_sharing_lines_without_a_report_or_with_a_malformed_one() -> None:
    assert sharing_view({"result": {}}) is None
    assert sharing_view({}) is None
    assert sharing_view({"result": {"sharing": {"joined": True}}}) is None
    bad = SharingReport().to_json() | {"holder_check": "trust me"}
    assert sharing_view({"result": {"sharing": bad}}) is None
