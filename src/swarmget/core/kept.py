"""Lists the selector works out from the ledger and reads many times (``core.selection``):
``Lazy`` (worked out as far as any reader went) and ``Kept`` (checked again as read)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """An iterator's items, worked out once as far as any reader went, read again by many
    (while the ledger is as it was: ``config.refresh`` 0)."""

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._seen: list[T] = []

    def valid(self, check: Callable[[T], bool]) -> Iterator[T]:
        """The items, lazily (all still valid: the ledger did not change)."""
        yield from self._seen
        for item in self._items:
            self._seen.append(item)
            yield item


class Kept(Generic[T]):
    """Items worked out at some time and read until the views are worked out again; each
    is checked again when read, and those no longer valid at the front are dropped (so
    readers that find nothing do not walk them again: O(1) amortized per item)."""

    def __init__(self, items: list[T]) -> None:
        self._items = items
        self._first = 0

    def valid(self, check: Callable[[T], bool]) -> Iterator[T]:
        """The items that pass ``check`` now, in order."""
        items = self._items
        while self._first < len(items) and not check(items[self._first]):
            self._first += 1
        for i in range(self._first, len(items)):
            if check(items[i]):
                yield items[i]
