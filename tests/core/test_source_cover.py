"""``SourceBook.cover``: what the alive sources that may serve only part of the file can
serve together. It is kept between calls (the selector asks on every pick while such
sources are alive) and must always equal the union worked out afresh."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import SchedulerConfig
from swarmget.core.sources import SourceBook

runs = st.lists(
    st.tuples(st.integers(0, 400), st.integers(1, 50)).map(lambda t: ByteRange(t[0], t[0] + t[1])),
    max_size=4,
)
ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "add_any", "grow", "gone", "ban", "lease"]),
        st.sampled_from(["a", "b", "c"]),
        runs,
    ),
    max_size=30,
)


def _afresh(book: SourceBook) -> RangeSet:
    out = RangeSet()
    for src in book:
        if src.available is not None and src.alive():
            for r in src.available:
                out.add(r)
    return out


@settings(max_examples=200)
@given(ops)
def test_the_kept_cover_is_always_the_union_worked_out_afresh(
    steps: list[tuple[str, str, list[ByteRange]]],
) -> None:
    book = SourceBook(SchedulerConfig())
    lease_ids = iter(range(1, 1000))
    for op, sid, ranges in steps:
        src = book.get(sid)
        if op == "add":
            book.add(sid, 2, 0.0, RangeSet(ranges))
        elif op == "add_any":
            book.add(sid, 2, 0.0)  # may serve any byte (again)
        elif src is None:
            continue
        elif op == "grow":
            book.grow(src, RangeSet(ranges))
        elif op == "gone":
            src.gone = True
            book.refresh(src)
        elif op == "ban":
            src.banned = "lied"
            book.refresh(src)
        else:
            book.hold(src, next(lease_ids), 0.0)
            book.refresh(src)
        assert book.cover() == _afresh(book)
