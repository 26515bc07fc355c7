"""A deliberately corrupting helper, for integrity tests: ``swarmget node`` that flips bytes.

``python -m swarmget.testing.evil_node ARGS`` takes the same arguments as ``swarmget node``;
every chunk it streams to a requester has one byte flipped (so the length and framing stay
right and only a hash can tell). Never used outside tests.
"""

from __future__ import annotations

import sys

from swarmget.core.ranges import Chunk


def flip_one_byte(chunk: Chunk) -> Chunk:
    if not chunk:
        return chunk
    flipped = bytearray(chunk)  # a copy: the chunk may be a view of the reader's buffer
    middle = len(flipped) // 2
    flipped[middle] ^= 0xFF
    return bytes(flipped)


def main(argv: list[str] | None = None) -> None:
    from swarmget.cli import main as cli_main
    from swarmget.node import helper

    helper.CHUNK_FILTER = flip_one_byte
    cli_main(["node", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
