"""The notifier's Prometheus metrics, and the ``/metrics`` endpoint of ``[notify] metrics_listen``.

Each notifier keeps its own registry (two in one process, as in the tests,
do not collide). Every sink's series exist from the start at 0, so an
alert on ``increase()`` sees the first failure.

| metric | type | meaning |
| --- | --- | --- |
| ``liqwatch_notify_delivered_total{sink}`` | counter | events delivered (alone or in a summary) |
| ``liqwatch_notify_messages_total{sink,kind}`` | counter | messages delivered (event, summary) |
| ``liqwatch_notify_summarized_total{sink}`` | counter | events folded into a summary |
| ``liqwatch_notify_failures_total{sink}`` | counter | failed attempts (each retry counts) |
| ``liqwatch_notify_dead_letters_total{sink}`` | counter | entries sent to the notify dead letters |
| ``liqwatch_notify_pending_entries`` | gauge | the group's entries read and not acknowledged |
| ``liqwatch_notify_lag_entries`` | gauge | the group's entries not yet read |
| ``liqwatch_notify_in_flight_entries`` | gauge | entries this process holds |
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from state.errors import LiqwatchError


class NotifyMetrics:
    """Counters and gauges of one notifier."""

    def __init__(self, sinks: Iterable[str], registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.delivered = Counter(
            "liqwatch_notify_delivered", "Events delivered to a sink.", ["sink"], registry=r
        )
        self.messages = Counter(
            "liqwatch_notify_messages",
            "Messages delivered to a sink, by kind (event or summary).",
            ["sink", "kind"],
            registry=r,
        )
        self.summarized = Counter(
            "liqwatch_notify_summarized",
            "Events folded into a summary message, past the sink's budget.",
            ["sink"],
            registry=r,
        )
        self.failures = Counter(
            "liqwatch_notify_failures", "Failed delivery attempts.", ["sink"], registry=r
        )
        self.dead_letters = Counter(
            "liqwatch_notify_dead_letters",
            "Entries a sink gave up on, sent to the notify dead-letter stream.",
            ["sink"],
            registry=r,
        )
        self.pending = Gauge(
            "liqwatch_notify_pending_entries",
            "Entries of the notify group read and not yet acknowledged.",
            registry=r,
        )
        self.lag = Gauge(
            "liqwatch_notify_lag_entries",
            "Entries of the events streams the notify group has not read yet.",
            registry=r,
        )
        self.in_flight = Gauge(
            "liqwatch_notify_in_flight_entries",
            "Entries this notifier holds: read, not yet delivered to every sink.",
            registry=r,
        )
        for sink in sinks:
            for counter in (self.delivered, self.summarized, self.failures, self.dead_letters):
                counter.labels(sink=sink)
            for kind in ("event", "summary"):
                self.messages.labels(sink=sink, kind=kind)

    def exposition(self) -> bytes:
        """The text format of every metric."""
        return generate_latest(self.registry)


async def serve_metrics(metrics: NotifyMetrics, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on ``host:port``; the caller cleans the runner up."""

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise MetricsListenError(
            f"notify.metrics_listen: cannot listen on {host}:{port}: {_why(exc)}"
        ) from None
    return runner


class MetricsListenError(LiqwatchError):
    """The /metrics endpoint cannot listen where it is told (in use, no such address)."""


def _why(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)
