"""``swarmget.core.units``: the one way sizes are read and written."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.units import human_bytes, parse_size

KiB, MiB, GiB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("8M", 8 * MiB), ("1.5G", 3 * GiB // 2), ("10MiB", 10 * MiB),
     ("64k", 64 * KiB), ("300MB", 300 * MiB), (" 2T ", 2 * 1024 * GiB), (7, 7)],
)  # fmt: skip
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "ten", "-1K", "1X", -1])
def test_parse_size_refuses(text: str | int) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1023.6, "1024 B"), (1536, "1.5 KiB"),
     (24 * MiB, "24.0 MiB"), (3 * GiB, "3.0 GiB"), (5000 * 1024 * GiB, "5000.0 TiB")],
)  # fmt: skip
def test_human_bytes(n: float, text: str) -> None:
    assert human_bytes(n) == text


@given(st.integers(min_value=0, max_value=1024**5))
def test_human_bytes_reads_back_within_a_tenth_of_its_unit(n: int) -> None:
    text = human_bytes(n)
    value, _, unit = text.partition(" ")
    back = parse_size(value + unit.removesuffix("iB").removesuffix("B"))
    scale = 1 if unit == "B" else 1024 ** ("KMGT".index(unit[0]) + 1)
    assert abs(back - n) <= scale * 0.05 + 1
