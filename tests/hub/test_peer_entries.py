"""``peer_json``: a record as a peers answer lists it, built without pydantic, is exactly
what ``PeerEntry`` makes of it (the model a node validates each entry with)."""

from __future__ import annotations

from swarmget.hub.peer_entries import peer_json
from swarmget.hub.store import NodeRecord
from swarmget.protocol.hub import PeerEntry
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
