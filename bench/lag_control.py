"""A control for the requester's event-loop lag (``requester_cpu.py``): a process that does
nothing but sleep ``interval`` seconds in an asyncio loop and note how late it woke, until
its standard input closes; then it prints p50, p99 and max (ms) as JSON. Its lag is what
the machine's load alone costs a process that wants the CPU for a moment every 10 ms: the
requester's own lag beyond it is the requester's."""

from __future__ import annotations

import asyncio
import json
import sys


async def main(interval: float) -> None:
    loop = asyncio.get_running_loop()
    late: list[float] = []
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    done = asyncio.ensure_future(reader.read())
    while not done.done():
        t0 = loop.time()
        await asyncio.sleep(interval)
        late.append(loop.time() - t0 - interval)
    late.sort()
    pick = (lambda q: 1000 * late[min(len(late) - 1, int(q * len(late)))]) if late else None
    out = {"samples": len(late)}
    if pick is not None:
        out.update(p50_ms=round(pick(0.5), 1), p99_ms=round(pick(0.99), 1))
        out.update(max_ms=round(1000 * late[-1], 1))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.01))
