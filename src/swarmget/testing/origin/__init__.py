"""A real HTTP origin for tests, demos and the benchmark, with switchable misbehaviour.

``TestOrigin`` is an aiohttp server on real sockets that stands in for an internet origin.
It serves files under ``/files/{name}``: generated ones (deterministic pseudo-random bytes
held in memory) and real ones (read from disk in chunks). It speaks honest HTTP:

* HEAD and GET, strong quoted ETag, Last-Modified, ``Accept-Ranges: bytes``, Content-Length,
  optional Content-Disposition and RFC 9530 ``Repr-Digest``; never a Content-Encoding.
* One range per request (RFC 9110 §14.2): ``bytes=a-b``, ``a-``, ``-n`` → 206; an
  unsatisfiable one → 416 with ``Content-Range: bytes */size``; several ranges or an invalid
  one → the whole file with 200 (a server may ignore Range). Range only applies to GET.
* ``If-Range`` (§13.1.5) with a strong ETag or the exact Last-Modified date; anything else
  makes the Range be ignored. ``If-Match`` (§13.1.1) mismatch → 412.

Misbehaviours are fields of ``Behaviour``; set them at construction, with
``origin.configure(...)``, or with ``POST /_config`` (JSON). ``POST /_reset`` restores the
behaviour the origin was built with and zeroes the counters; ``GET /_stats`` and
``origin.stats()`` report them. Redirects live under ``/redirect/{n}/{name}``,
``/redirect-loop`` and ``/redirect-to?url=...``.

Run it as a process with ``python -m swarmget.testing.origin --file big=300M``; it prints one
JSON line ``{"base_url": ...}`` once listening and serves until SIGTERM or SIGINT.

The parts: ``behaviour`` (the switches, the counters, ``OriginStats``), ``files`` (generated
and real bodies, their versions), ``rules`` (Range, If-Range, If-Match as pure functions),
``responses`` (how one file request is answered, throttled and cut), ``server``
(``TestOrigin``, ``open_test_origin``), ``command`` (the process).
"""

from __future__ import annotations

from swarmget.core.units import parse_size
from swarmget.testing.origin.behaviour import (
    DRAIN_TIMEOUT,
    GENERATED_BLOCK,
    GENERATED_MTIME,
    MAX_THROTTLED_CHUNK,
    ROTATION,
    SERVED_LOG_LIMIT,
    SHUTDOWN_TIMEOUT,
    UNTHROTTLED_CHUNK,
    VERSION_MTIME_STEP,
    Behaviour,
    KiB,
    MiB,
    OriginStats,
    ServedRange,
    behaviour_from_json,
)
from swarmget.testing.origin.files import generate_content
from swarmget.testing.origin.rules import (
    UNSATISFIABLE,
    Unsatisfiable,
    if_match_holds,
    if_range_holds,
    parse_range,
)
from swarmget.testing.origin.server import TestOrigin, open_test_origin

__all__ = [
    "DRAIN_TIMEOUT",
    "GENERATED_BLOCK",
    "GENERATED_MTIME",
    "MAX_THROTTLED_CHUNK",
    "ROTATION",
    "SERVED_LOG_LIMIT",
    "SHUTDOWN_TIMEOUT",
    "UNSATISFIABLE",
    "UNTHROTTLED_CHUNK",
    "VERSION_MTIME_STEP",
    "Behaviour",
    "KiB",
    "MiB",
    "OriginStats",
    "ServedRange",
    "TestOrigin",
    "Unsatisfiable",
    "behaviour_from_json",
    "generate_content",
    "if_match_holds",
    "if_range_holds",
    "main",
    "open_test_origin",
    "parse_range",
    "parse_size",
]


def main(argv: list[str] | None = None) -> int:
    """``python -m swarmget.testing.origin`` (see ``command``)."""
    from swarmget.testing.origin.command import main as command_main

    return command_main(argv)
