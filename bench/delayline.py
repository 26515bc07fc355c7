"""A delay line in front of the origin: requests reach nginx one round trip after they are sent.

This kernel has no netem (and no fq/ETF qdisc to hold packets by time stamp), so the testbed
cannot delay packets. This relay, run in the origin's namespace, gives every request the round
trip of a distant origin instead:

* it listens on the origin's public address and forwards each connection to nginx on the
  namespace's loopback;
* bytes from the client (requests) are held for ``rtt`` before they go on, and none go on
  before ``2 * rtt`` after the connection was accepted (the TCP handshake's round trip: a
  client's ``connect`` returns at once here, so the handshake is charged from the accept: a
  request sent at once waits two round trips, one sent on a connection opened at least one
  round trip earlier waits one, as on a real path where the connect was done early);
* bytes from nginx (responses) go straight back with ``splice`` (no copy into Python), out of
  the origin's ``eth0``, where the per-host caps (HTB) apply as before.

So a request-response exchange costs ``rtt`` and a new connection ``2 * rtt`` before its first
byte (less the time it stood open, down to ``rtt``: a warm-up connect pays off as it would),
as on a real path with that round trip; what it does not reproduce is TCP's ramp-up
(slow start grows the window per round trip of the *relay's* connection, which has none).
The benchmark's README says so next to every figure measured with it.

Usage (stdlib only, run by ``lan_swarm.start_origin`` inside ``sgb-origin``)::

    python delayline.py --listen 10.77.0.1:80 --to 127.0.0.1:8080 --rtt-ms 30

It prints ``ready`` once it listens, and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import heapq
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence

CHUNK = 1 << 20
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Python 3.10+ on Linux)
BACKLOG = 512
MAX_CONNECTIONS = 2000  # each costs 3 threads; a benchmark uses a few dozen


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Link:
    """One client connection and its connection to nginx."""

    def __init__(self, client: socket.socket, upstream: socket.socket, rtt: float) -> None:
        self.client = client
        self.upstream = upstream
        self.rtt = rtt
        self._due: list[tuple[float, int, bytes]] = []  # (when, seq, data); b"" is EOF
        self._seq = 0
        self._last_due = 0.0
        #: the handshake's round trip runs from here (``_read_requests``)
        self.accepted = time.monotonic()
        self._cv = threading.Condition()
        self._closed = threading.Event()
        self._running = 0  # threads still working on the sockets (guarded by _cv)

    def start(self) -> None:
        targets = (self._read_requests, self._send_requests, self._splice_responses)
        self._running = len(targets)
        for target in targets:
            threading.Thread(target=self._thread, args=(target,), daemon=True).start()

    def _thread(self, target: Callable[[], None]) -> None:
        """Run ``target``; the last thread to end closes the sockets. Never earlier: the
        splice thread works on the raw descriptors, and a descriptor closed under it is
        reused by the next accepted connection, into which it would then splice a
        response (nginx saw file bytes as a request line and answered 400)."""
        try:
            target()
        finally:
            with self._cv:
                self._running -= 1
                last = self._running == 0
            if last:
                for s in (self.client, self.upstream):
                    s.close()

    def close(self) -> None:
        """Stop the link: shut both sockets down (every thread then returns); closing them
        is left to the last thread (``_thread``)."""
        if self._closed.is_set():
            return
        self._closed.set()
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        with self._cv:
            self._cv.notify_all()

    def _read_requests(self) -> None:
        # a request goes on one round trip after it came, but never before the handshake's
        # round trip (counted from the accept) and its own: two round trips after the accept
        handshake_done = self.accepted + 2 * self.rtt
        try:
            while not self._closed.is_set():
                data = self.client.recv(CHUNK)
                now = time.monotonic()
                with self._cv:
                    # never overtake what is already waiting: a byte stream keeps its order
                    self._last_due = max(now + self.rtt, handshake_done, self._last_due)
                    heapq.heappush(self._due, (self._last_due, self._seq, data))
                    self._seq += 1
                    self._cv.notify()
                if not data:
                    return
        except OSError:
            self.close()

    def _send_requests(self) -> None:
        try:
            while not self._closed.is_set():
                with self._cv:
                    while not self._due and not self._closed.is_set():
                        self._cv.wait()
                    if self._closed.is_set():
                        return
                    when, _, data = self._due[0]
                    wait = when - time.monotonic()
                    if wait > 0:
                        self._cv.wait(wait)
                        continue
                    heapq.heappop(self._due)
                if not data:
                    self.upstream.shutdown(socket.SHUT_WR)
                    return
                self.upstream.sendall(data)
        except OSError:
            self.close()

    def _splice_responses(self) -> None:
        r, w = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, F_SETPIPE_SZ, CHUNK)
        try:
            src, dst = self.upstream.fileno(), self.client.fileno()
            while True:
                n = os.splice(src, w, CHUNK)
                if n == 0:
                    with contextlib.suppress(OSError):
                        self.client.shutdown(socket.SHUT_WR)
                    break
                while n:
                    n -= os.splice(r, dst, n)
        except OSError:
            pass
        finally:
            os.close(r)
            os.close(w)
            self.close()


def serve(listen: tuple[str, int], to: tuple[str, int], rtt: float) -> None:
    server = socket.create_server(listen, backlog=BACKLOG, reuse_port=False)
    print("ready", flush=True)
    live: set[Link] = set()
    while True:
        client, _ = server.accept()
        live = {link for link in live if not link._closed.is_set()}
        if len(live) >= MAX_CONNECTIONS:
            client.close()
            continue
        try:
            upstream = socket.create_connection(to, timeout=5)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(client, upstream, rtt)
        live.add(link)
        link.start()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True, help="HOST:PORT to accept clients on")
    p.add_argument("--to", required=True, help="HOST:PORT of the origin server")
    p.add_argument("--rtt-ms", type=float, required=True, help="round trip to emulate")
    args = p.parse_args(argv)
    if not 0 <= args.rtt_ms <= 10_000:
        p.error("--rtt-ms must be within 0..10000")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(_addr(args.listen), _addr(args.to), args.rtt_ms / 1000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
