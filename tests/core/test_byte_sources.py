"""Where a download's bytes came from (``core.byte_sources``): the counts per kind of link,
the origin bytes among them, and the origin bytes a node saved its group."""

from __future__ import annotations

import pytest

from swarmget.core.byte_sources import BytesBySource, SourceKind, group_saved


def test_counts_per_kind_and_the_origin_bytes_among_them() -> None:
    counts = BytesBySource.of({SourceKind.ORIGIN: 5, SourceKind.LAN: 100, SourceKind.CHECK: 3})
    assert (counts.origin, counts.helper, counts.lan, counts.check) == (5, 0, 100, 3)
    assert counts.over_origin_links == 8  # a LAN holder's bytes crossed no origin link
    helped = BytesBySource(origin=1, helper=9)
    assert helped.over_origin_links == 10  # a helper's bytes did (its own link)


def test_json_round_trip_and_an_older_nodes_answer() -> None:
    counts = BytesBySource(origin=1, helper=2, lan=3, check=4)
    assert counts.to_json() == {"origin": 1, "helper": 2, "lan": 3, "check": 4}
    assert BytesBySource.from_json(counts.to_json()) == counts
    assert BytesBySource.from_json({"origin": 7}) == BytesBySource(origin=7)


@pytest.mark.parametrize("bad", [{"lan": -1}, {"origin": "many"}, {"check": None}])
def test_a_malformed_answer_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        BytesBySource.from_json(bad)


def test_the_group_saving_is_lan_served_plus_lan_received() -> None:
    assert group_saved(lan_served=0, lan_received=0) == 0
    assert group_saved(lan_served=300, lan_received=0) == 300  # a holder
    assert group_saved(lan_served=0, lan_received=200) == 200  # a later requester
    assert group_saved(lan_served=300, lan_received=200) == 500
    with pytest.raises(ValueError, match="negative"):
        group_saved(lan_served=-1, lan_received=0)
