"""The daemon's HTTP listener: ``/metrics`` for Prometheus, ``/ready`` for orchestrators.

Only when ``[metrics] listen`` is set; bound where it says (keep it on a
private address: it has no authentication).
"""

from __future__ import annotations

import asyncio

import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from watcher.daemon.config import parse_listen
from watcher.daemon.metrics import Daemon, DaemonMetrics, readiness

# Seconds between attempts to bind a listen address that is taken.
RETRY = 5.0


async def serve_metrics(
    daemon: Daemon, metrics: DaemonMetrics, listen: str, stop: asyncio.Event
) -> None:
    """Serve until ``stop``."""

    async def scrape(_request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ready(_request: web.Request) -> web.Response:
        reasons = readiness(daemon)
        body = orjson.dumps({"ready": not reasons, "reasons": reasons})
        return web.Response(
            body=body, status=200 if not reasons else 503, content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/ready", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = parse_listen(listen, "metrics.listen")
    log = structlog.get_logger().bind(component="metrics")
    try:
        while True:
            try:
                await web.TCPSite(runner, host, port).start()
                break
            except OSError as exc:
                # Liquidations go on without the listener (Prometheus alerts on
                # the missing target); the port is tried again until it is free.
                log.error("metrics.listen_failed", listen=listen, error=str(exc), retry_s=RETRY)
                try:
                    async with asyncio.timeout(RETRY):
                        await stop.wait()
                    return
                except TimeoutError:
                    continue
        log.info("metrics.listening", listen=listen)
        await stop.wait()
    finally:
        await runner.cleanup()
