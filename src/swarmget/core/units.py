"""Sizes as people write and read them, in binary units: ``parse_size("1.5G")`` and
``human_bytes(1536) == "1.5 KiB"`` (the CLI, the portal, the config file and the test
origin all use these two)."""

from __future__ import annotations

__all__ = ["SIZE_UNITS", "human_bytes", "parse_size"]

SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_HUMAN_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def parse_size(text: str | int) -> int:
    """``8M``, ``1.5G``, ``4096``, ``10MiB`` → bytes (binary units); ValueError otherwise."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"negative size: {text}")
        return text
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in SIZE_UNITS and not t[-1:].isdigit() else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise ValueError(f"not a size: {text!r} (try 8M, 1.5G)") from None
    if value < 0:
        raise ValueError(f"negative size: {text!r}")
    return int(value * SIZE_UNITS[unit])


def human_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit under 1024 of it (whole bytes, else one
    decimal): ``1023 B``, ``1.5 KiB``, ``24.0 MiB``; TiB at most."""
    value = float(n)
    for unit in _HUMAN_UNITS:
        if abs(value) < 1024 or unit == _HUMAN_UNITS[-1]:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
