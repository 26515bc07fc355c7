"""A live terminal view of a download: one bar for the file, one row per source."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console, Group, NewLine
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from swarmget.core.units import human_bytes

if TYPE_CHECKING:
    from swarmget.engine import Download, DownloadProgress, DownloadResult

REFRESH = 0.25
T = TypeVar("T")


def human_time(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def render(p: DownloadProgress) -> Group:
    """The view of one snapshot (pure: easy to test)."""
    total = p.size or 0
    head = Text.assemble(
        (f"{p.stage.value:<11}", "bold"),
        f" {human_bytes(p.done)}",
        f" / {human_bytes(total)}" if p.size is not None else "",
        f"  {human_bytes(p.rate)}/s  ETA {human_time(p.eta)}  [{p.mode}]",
    )
    bar = ProgressBar(total=max(total, 1), completed=p.done if total else 0, width=60)
    table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
    for col in ("source", "state", "streams", "bytes", "rate", "failures"):
        table.add_column(col, justify="right" if col not in ("source", "state") else "left")
    for s in p.sources:
        table.add_row(
            s.source_id,
            s.state.value,
            str(s.active_leases),
            human_bytes(s.claimed),
            f"{human_bytes(s.rate)}/s",
            str(s.failures),
        )
    return Group(head, bar, NewLine(), table)  # a bar does not end its line by itself


#: A function given each progress snapshot (the public API's ``progress=``).
ProgressCallback = Callable[["DownloadProgress"], None]
#: Where progress goes: a terminal, redrawn live, or a ``ProgressCallback``.
Display = Console | ProgressCallback


async def watch_progress(download: Download, display: Display | None) -> DownloadResult:
    """Run ``download``, showing its progress on ``display`` (None: silently)."""
    return await watch(download.run(), download.statistics, display)


async def watch(
    work: Coroutine[Any, Any, T],
    snapshot: Callable[[], DownloadProgress | None],
    display: Display | None,
) -> T:
    """Await ``work``, showing ``snapshot()`` on ``display`` every ``REFRESH`` seconds and
    once more when it ends (None: silently). A callback that raises stops the work."""
    if display is None:
        return await work
    task = asyncio.create_task(work)
    try:
        if isinstance(display, Console):
            await _redraw(task, snapshot, display)
        else:
            await _report(task, snapshot, display)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result()


async def _redraw(
    task: asyncio.Task[Any], snapshot: Callable[[], DownloadProgress | None], console: Console
) -> None:
    with Live(Text("starting"), console=console, transient=True) as live:
        while not task.done():
            await asyncio.wait([task], timeout=REFRESH)
            current = snapshot()
            if current is not None:
                live.update(render(current))


async def _report(
    task: asyncio.Task[Any],
    snapshot: Callable[[], DownloadProgress | None],
    callback: ProgressCallback,
) -> None:
    while not task.done():
        await asyncio.wait([task], timeout=REFRESH)
        current = snapshot()
        if current is not None:
            callback(current)
