"""``ConnectionUids``: who is at the other end, asked of the kernel once per connection."""

from __future__ import annotations

from typing import Any

from swarmget.net.peercred import ConnectionUids


class Transport:
    """Stands for an asyncio transport: only its identity matters here."""


class CountingLookup:
    def __init__(self, answers: dict[int, int | None]) -> None:
        self.answers = answers
        self.asked: list[int] = []

    def __call__(self, transport: Any) -> int | None:
        self.asked.append(id(transport))
        return self.answers[id(transport)]


def test_one_lookup_per_connection() -> None:
    a, b = Transport(), Transport()
    lookup = CountingLookup({id(a): 1000, id(b): 0})
    uids = ConnectionUids(lookup)
    assert [uids.uid(a), uids.uid(a), uids.uid(b), uids.uid(a), uids.uid(b)] == [
        1000, 1000, 0, 1000, 0,
    ]  # fmt: skip
    assert lookup.asked == [id(a), id(b)]


def test_an_unknown_owner_is_asked_again() -> None:
    a = Transport()
    lookup = CountingLookup({id(a): None})
    uids = ConnectionUids(lookup)
    assert uids.uid(a) is None
    lookup.answers[id(a)] = 1000
    assert uids.uid(a) == 1000
    assert len(lookup.asked) == 2


def test_no_transport_no_uid() -> None:
    uids = ConnectionUids(CountingLookup({}))
    assert uids.uid(None) is None


def test_forgotten_with_its_connection() -> None:
    a = Transport()
    uids = ConnectionUids(lambda t: 5)
    assert uids.uid(a) == 5
    del a
    assert len(uids._known) == 0


def test_not_weakly_referenceable_is_asked_each_time() -> None:
    lookup_calls = []

    def lookup(transport: Any) -> int:
        lookup_calls.append(transport)
        return 7

    uids = ConnectionUids(lookup)
    assert uids.uid(3) == 7  # an int cannot be weakly referenced
    assert uids.uid(3) == 7
    assert len(lookup_calls) == 2
