"""``peer_json``: a record as a peers answer lists it, built without pydantic, is exactly
what ``PeerEntry`` makes of it (the model a node validates each entry with); the entries
kept as JSON text (``PeerFragments``) are made again whenever the record changed."""

from __future__ import annotations

import json

import pytest

from swarmget.hub.peer_entries import PeerFragments, peer_json, peers_answer_text
from swarmget.hub.store import NodeRecord
from swarmget.protocol.hub import PeerEntry, PeersAnswer
from swarmget.testing.fakes import nid


def _record(**changes: object) -> NodeRecord:
    fields: dict[str, object] = {
        "node_id": nid("a"),
        "address": "10.1.2.3",
        "port": 7500,
        "url": "http://10.1.2.3:7500",
        "version": "0.1.0",
        "slots": 4,
        "group": "10.1.0.0/16",
        "wan_rate": 1000,
        "quota_left": None,
        "registered_at": 100.0,
        "last_seen": 105.5,
        "stats": {"slots": 3, "bytes_served": 12},
    }
    return NodeRecord(**(fields | changes))  # type: ignore[arg-type]


def test_an_entry_is_what_the_model_makes_of_it() -> None:
    entry = peer_json(_record())
    assert list(entry) == list(PeerEntry.model_fields)
    model = PeerEntry.model_validate(entry)
    assert model.model_dump(exclude={"stats"}) | {"stats": model.stats.as_json()} == entry
    assert entry["stats"] == {"slots": 3, "bytes_served": 12}


def test_stats_that_do_not_validate_are_listed_as_none() -> None:
    entry = peer_json(_record(stats={"slots": "many"}))
    assert entry["stats"] == {}
    assert PeerEntry.model_validate(entry).model_dump(exclude={"stats"}).items() <= entry.items()


def test_a_fragment_is_the_entry_as_json_and_is_made_once_per_version() -> None:
    fragments = PeerFragments()
    record = _record()
    text = fragments.text(record)
    assert json.loads(text) == peer_json(record)
    assert fragments.text(_record()) == text  # an equal record read again: kept
    assert fragments.made == 1


@pytest.mark.parametrize(
    "change",
    [
        {"last_seen": 106.0},
        {"stats": {"slots": 2, "bytes_served": 12}},  # the same time, other stats: made again
        {"slots": 1},
        {"quota_left": 5},
        {"address": "10.1.2.4", "url": "http://10.1.2.4:7500"},
        {"registered_at": 101.0},
    ],
)
def test_a_changed_record_is_never_listed_as_it_was(change: dict[str, object]) -> None:
    fragments = PeerFragments()
    fragments.text(_record())
    changed = _record(**change)
    assert json.loads(fragments.text(changed)) == peer_json(changed)
    assert fragments.made == 2


def test_stats_changed_in_place_are_not_mistaken_for_the_kept_ones() -> None:
    fragments = PeerFragments()
    stats: dict[str, object] = {"slots": 3}
    record = _record(stats=stats)
    fragments.text(record)
    stats["slots"] = 1  # (the kept copy is the hub's own)
    assert json.loads(fragments.text(record))["stats"] == {"slots": 1}


def test_fragments_are_bounded_and_forgotten() -> None:
    fragments = PeerFragments(max_entries=2)
    for name in "abc":
        fragments.text(_record(node_id=nid(name)))
    assert len(fragments) == 1  # the third started afresh
    fragments.forget(nid("c"))
    assert len(fragments) == 0


def test_an_answer_put_together_from_fragments_reads_back() -> None:
    fragments = PeerFragments()
    records = [_record(node_id=nid(n)) for n in "ab"]
    text = peers_answer_text("10.1.0.0/16", map(fragments.text, records), 7)
    answer = PeersAnswer.model_validate_json(text)
    assert (answer.group, answer.total) == ("10.1.0.0/16", 7)
    assert [PeerEntry.model_validate(p).node_id for p in answer.peers] == [nid("a"), nid("b")]
    assert json.loads(text) == {
        "group": "10.1.0.0/16",
        "peers": [peer_json(r) for r in records],
        "total": 7,
    }
