"""A deliberately corrupting helper, for integrity tests: ``swarmget node`` that flips bytes.

``python -m swarmget.testing.evil_node ARGS`` takes the same arguments as ``swarmget node``;
every chunk it streams to a requester has one byte flipped (so the length and framing stay
right and only a hash can tell). With ``SWARMGET_EVIL_CLEAN_BYTES=N`` in its environment it
first passes N bytes on untouched (a liar that behaves while it is new), and with
``SWARMGET_EVIL_FLIP_EVERY=K`` it flips one byte in every K of a chunk instead of one per
chunk. Never used outside tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from swarmget.core.ranges import Chunk


def flip_one_byte(chunk: Chunk) -> Chunk:
    if not chunk:
        return chunk
    flipped = bytearray(chunk)  # a copy: the chunk may be a view of the reader's buffer
    middle = len(flipped) // 2
    flipped[middle] ^= 0xFF
    return bytes(flipped)


def corrupter(clean_bytes: int = 0, flip_every: int | None = None) -> Callable[[Chunk], Chunk]:
    """A chunk filter: after ``clean_bytes`` untouched bytes, flip one byte per chunk (or
    one in every ``flip_every`` bytes of each chunk)."""
    passed = 0

    def corrupt(chunk: Chunk) -> Chunk:
        nonlocal passed
        passed += len(chunk)
        if passed <= clean_bytes or not chunk:
            return chunk
        if flip_every is None:
            return flip_one_byte(chunk)
        flipped = bytearray(chunk)
        for i in range(0, len(flipped), flip_every):
            flipped[i] ^= 0xFF
        return bytes(flipped)

    return corrupt


def main(argv: list[str] | None = None) -> None:
    from swarmget.cli import main as cli_main
    from swarmget.node.daemon import NodeHooks

    every = os.environ.get("SWARMGET_EVIL_FLIP_EVERY")
    clean = int(os.environ.get("SWARMGET_EVIL_CLEAN_BYTES", "0"))
    hooks = NodeHooks(chunk_filter=corrupter(clean, int(every) if every else None))
    cli_main(["node", *(sys.argv[1:] if argv is None else argv)], obj=hooks)


if __name__ == "__main__":
    main()
