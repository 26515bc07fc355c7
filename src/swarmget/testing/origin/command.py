"""``python -m swarmget.testing.origin``: a test origin as a process (see the package's
docstring), serving until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import swarmget.testing.origin as origin_package
from swarmget.core.units import parse_size
from swarmget.net.signals import announce_listening, serve_until_signalled
from swarmget.testing.origin.behaviour import Behaviour, behaviour_from_json
from swarmget.testing.origin.server import TestOrigin


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _generated_spec(text: str) -> tuple[str, int, int]:
    """``NAME=SIZE[:SEED]`` → (name, size, seed)."""
    name, spec = _name_value(text)
    size, _, seed = spec.partition(":")
    if seed and not seed.isdigit():
        raise argparse.ArgumentTypeError(f"not a seed: {seed!r}")
    try:
        return name, parse_size(size), int(seed or 0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m swarmget.testing.origin",
        description=origin_package.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument(
        "--file",
        action="append",
        default=[],
        type=_generated_spec,
        metavar="NAME=SIZE[:SEED]",
        help="a generated file",
    )
    p.add_argument(
        "--real-file",
        action="append",
        default=[],
        type=_name_value,
        metavar="NAME=PATH",
        help="a file served from disk",
    )
    p.add_argument("--digest", action="store_true", help="send Repr-Digest for every file")
    p.add_argument("--rate-per-ip", type=float, help="bytes/s per client IP")
    p.add_argument("--rate-per-conn", type=float, help="bytes/s per response")
    p.add_argument("--first-byte-delay", type=float, default=0.0, help="seconds")
    p.add_argument("--ignore-range", action="store_true")
    p.add_argument("--no-content-length", action="store_true")
    p.add_argument("--behaviour", default="{}", help="JSON object of more Behaviour fields")
    return p


def _behaviour_from_args(args: argparse.Namespace) -> Behaviour:
    base = Behaviour(
        rate_per_ip=args.rate_per_ip,
        rate_per_conn=args.rate_per_conn,
        first_byte_delay=args.first_byte_delay,
        ignore_range=args.ignore_range,
        no_content_length=args.no_content_length,
    )
    return behaviour_from_json(base, args.behaviour.encode())


def _origin_from_args(args: argparse.Namespace) -> TestOrigin:
    origin = TestOrigin(_behaviour_from_args(args))
    for name, size, seed in args.file:
        origin.add_generated(name, size, seed, digest=args.digest)
    for name, path in args.real_file:
        origin.add_file(name, path, digest=args.digest)
    return origin


async def _serve(origin: TestOrigin, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, announcing the base URL on stdout once listening."""

    @asynccontextmanager
    async def started() -> AsyncIterator[TestOrigin]:
        await origin.start(host, port)
        try:
            yield origin
        finally:
            await origin.close()

    def ready(started: TestOrigin) -> None:
        announce_listening({"base_url": started.base_url, "pid": os.getpid()})

    await serve_until_signalled(started(), ready)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        origin = _origin_from_args(args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    asyncio.run(_serve(origin, args.host, args.port))
    return 0
