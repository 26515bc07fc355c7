"""The hub's Prometheus metrics: its registered nodes and heartbeat latency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from swarmget.net.metrics import CONTENT_TYPE


class HubMetrics:
    """The hub's registered nodes (read from the store at scrape time) and how long
    heartbeats take to record."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.nodes = Gauge(
            "swarmget_hub_registered_nodes", "Live nodes in the registry", registry=self.registry
        )
        self.heartbeat = Histogram(
            "swarmget_hub_heartbeat_seconds",
            "Time to record a heartbeat",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )

    def handler(
        self, live_nodes: Callable[[], Awaitable[int]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            self.nodes.set(await live_nodes())
            body = generate_latest(self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

        return handle
