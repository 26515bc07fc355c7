"""How the portal writes sizes, rates and durations (binary units, like the CLI)."""

from __future__ import annotations

from swarmget.core import units


def human_bytes(n: float | None) -> str:
    """``core.units.human_bytes``, and a dash for a size not known."""
    return "—" if n is None else units.human_bytes(n)


def human_rate(rate: float | None) -> str:
    return "—" if rate is None else f"{human_bytes(rate)}/s"


def human_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
