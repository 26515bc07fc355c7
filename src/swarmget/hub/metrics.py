"""The hub's Prometheus metrics: its registered nodes (read from the store at scrape time),
registrations, departures and expiries (counted as they happen), heartbeat latency, the
store's write batches, waits and transactions (``swarmget.hub.write_stats``); the content
index's contents, grants handed out and reports (fetch once, #15: set by
``swarmget.hub.content_routes``); the session keys held and used (``swarmget.hub.sessions``);
the replicas seen alive, the watches held and the replicas found gone
(``swarmget.hub.replicas``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from swarmget.hub.write_stats import WriteStats
from swarmget.net.metrics import CONTENT_TYPE, HistogramTally, counter, gauge, service_registry

HEARTBEAT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class HubMetrics(Collector):
    """The hub's counters, its live nodes and how long heartbeats take to record."""

    def __init__(self, writes: WriteStats | None = None) -> None:
        self._writes = writes  # the store's batches and transactions (None: not exported)
        self.registrations = 0  # register calls answered (new nodes and returning ones)
        self.departures = 0  # nodes that left (SIGTERM of a node)
        self.expiries = 0  # records forgotten after their node stopped heartbeating
        self.contents = 0  # contents in the content index now
        self.content_claims = 0  # grants of origin bytes handed out (claims and steals)
        self.content_reports = 0  # reports of members that served bad bytes
        self.late_replays = 0  # deferred nonces found recorded already (hub.nonce_log)
        #: (sessions held, agreed since start, requests that named a held session):
        #: ``swarmget.hub.sessions``; None: not exported
        self.session_counts: Callable[[], tuple[int, int, int]] | None = None
        #: (replicas seen alive, this one included; watches held; replicas found gone
        #: since start): ``swarmget.hub.replicas``; None: not exported
        self.replica_counts: Callable[[], tuple[int, int, int]] | None = None
        self._heartbeats = HistogramTally(buckets=HEARTBEAT_BUCKETS)
        self._live = 0
        self.registry = service_registry(self)

    @contextmanager
    def heartbeat_timer(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._heartbeats.observe("", time.perf_counter() - started)

    def collect(self) -> Iterable[Metric]:
        yield gauge("swarmget_hub_registered_nodes", "Live nodes in the registry", self._live)
        yield counter("swarmget_hub_registrations", "Registrations answered", self.registrations)
        yield counter("swarmget_hub_departures", "Nodes that left the hub", self.departures)
        yield counter(
            "swarmget_hub_expiries",
            "Node records forgotten after their node stopped heartbeating",
            self.expiries,
        )
        yield gauge("swarmget_hub_contents", "Contents in the content index", self.contents)
        yield counter(
            "swarmget_hub_content_claims",
            "Grants of origin bytes handed out to content members",
            self.content_claims,
        )
        yield counter(
            "swarmget_hub_content_reports",
            "Reports of content members that served bad bytes",
            self.content_reports,
        )
        yield counter(
            "swarmget_hub_late_replays",
            "Heartbeats or peers queries replayed within a flush (accepted twice)",
            self.late_replays,
        )
        if self.session_counts is not None:
            held, agreed, signed = self.session_counts()
            yield gauge("swarmget_hub_sessions", "Session keys held (one per node)", held)
            yield counter("swarmget_hub_sessions_agreed", "Session keys agreed", agreed)
            yield counter(
                "swarmget_hub_session_requests",
                "Requests signed with a session key this process holds",
                signed,
            )
        if self.replica_counts is not None:
            alive, watches, gone = self.replica_counts()
            yield gauge(
                "swarmget_hub_replicas_alive",
                "Hub replicas of this registry seen alive (this one included)",
                alive,
            )
            yield gauge("swarmget_hub_replica_watches", "Replica watches held now", watches)
            yield counter(
                "swarmget_hub_replicas_gone", "Other replicas found gone since start", gone
            )
        yield self._heartbeats.family(
            "swarmget_hub_heartbeat_seconds", "Time to record a heartbeat"
        )
        if self._writes is not None:
            yield from self._writes.families()

    def handler(
        self, live_nodes: Callable[[], Awaitable[int]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            self._live = await live_nodes()
            body = generate_latest(self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

        return handle
