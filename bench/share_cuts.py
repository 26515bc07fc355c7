"""Origin streams cut short, per host, from the testbed nginx's access log (issue #15).

``lan_swarm.start_origin``'s nginx logs every request with the Range asked, the time it took
and when it ended (``common.nginx_config``: the ``timed`` format). A response whose body is
shorter than the range asked was cut by the client (a stolen piece, a lost copy, a helper
dropped): what nginx had sent into it beyond what the client read is origin bytes for
nothing. Usage (after ``lan.py run share``; the log of the last run of that URL)::

    python bench/share_cuts.py /tmp/swarmget-lan/nginx/access.log 268435456/share-group.bin
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict

MiB = 1 << 20
LINE = re.compile(
    r'(\S+) .*?"(\w+) (\S+) [^"]*" (\d+) (\d+) "[^"]*" "[^"]*" "([^"]*)" ([\d.]+) ([\d.]+)'
)
RANGE = re.compile(r"bytes=(\d+)-(\d+)")
WINDOW = 60.0  # seconds before the last matching request: one run


def main(log: str, path: str) -> None:
    rows = []  # (client, body, asked or 0, began, ended)
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if m is None or path not in m.group(3):
                continue
            asked = RANGE.match(m.group(6))
            want = int(asked.group(2)) - int(asked.group(1)) + 1 if asked else 0
            end = float(m.group(8))
            rows.append((m.group(1), int(m.group(5)), want, end - float(m.group(7)), end))
    if not rows:
        raise SystemExit("no request of that path in the timed format")
    last = max(r[4] for r in rows)
    rows = [r for r in rows if r[4] > last - WINDOW]
    t0 = min(r[3] for r in rows)
    hosts: dict[str, list[tuple[str, int, int, float, float]]] = defaultdict(list)
    for r in rows:
        hosts[r[0]].append(r)
    for host, rs in sorted(hosts.items()):
        cut = [r for r in rs if r[2] and r[1] < r[2]]
        body = sum(r[1] for r in rs) / MiB
        first, end = min(r[3] for r in rs) - t0, max(r[4] for r in rs) - t0
        span = f"{first:.2f}-{end:.2f} s"
        print(f"{host}: {len(rs)} requests, {len(cut)} cut, {body:.1f} MiB, {span}")
    for r in sorted(rows, key=lambda r: r[4]):
        if r[2] and r[1] < r[2]:
            print(f"cut at {r[4] - t0:.2f} s: {r[0]} sent {r[1] / MiB:.2f} of {r[2] / MiB:.2f} MiB")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
