"""A live terminal view of a download: one bar for the file, one row per source.

rich is imported when a view is drawn: a download shown nowhere (``-q``, ``--json``, a
callback) does not pay for it (issue #14: the command's start-up)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

from swarmget.core.units import human_bytes

if TYPE_CHECKING:
    from rich.console import Console, Group

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
    from rich.console import Group, NewLine
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

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
Display: TypeAlias = "Console | ProgressCallback"


def is_console(display: Display) -> bool:
    """Whether ``display`` is a terminal (a rich ``Console``: then rich is imported)."""
    console = sys.modules.get("rich.console")
    return console is not None and isinstance(display, console.Console)


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
        if is_console(display):
            await _redraw(task, snapshot, cast("Console", display))
        else:
            await _report(task, snapshot, cast(ProgressCallback, display))
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result()


async def _redraw(
    task: asyncio.Task[Any], snapshot: Callable[[], DownloadProgress | None], console: Console
) -> None:
    from rich.live import Live
    from rich.text import Text

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
