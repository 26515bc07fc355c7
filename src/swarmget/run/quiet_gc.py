"""The cyclic garbage collector held off while a command imports what it runs (issue #14).

A command's start is mostly imports, and they make objects by the hundred thousand that
live as long as the process: modules, classes, functions, pydantic's schemas. CPython's
collector counts allocations and walks its young generation every 700 of them, so ``get
--hub``'s imports ran ~140 young collections, a dozen middle ones and a full one, each
over objects that can never be garbage (bench/README "The collector during start-up").
``held`` turns the collector off for a block of imports and back on after it (when it was
on). In the ``swarmget`` program (``freeze_after_start``, called by its entry point, never
by a caller such as a test) what such a block made is also moved out of the collector's
sight when it ends (``gc.freeze``, as a server does once it listens: ``net.serving_gc``),
so the collections of the download that follows do not walk it either. Standard library
only: ``run.early`` runs inside it before anything else is imported.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_after_start", "held"]

_freeze = False  # (process-wide, like the collector itself)


def freeze_after_start() -> None:
    """From now on, what a ``held`` block made is frozen when it ends (the program's
    entry point calls this: its start-up objects live as long as it does)."""
    global _freeze
    _freeze = True


class held:  # noqa: N801 (used as `with held():`, like contextlib's lower-case helpers)
    """``with held():`` no cyclic collection in the block; the collector as it was after
    it (nested blocks: the outermost turns it back on)."""

    def __enter__(self) -> None:
        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was:
            if _freeze:
                gc.freeze()
            gc.enable()
