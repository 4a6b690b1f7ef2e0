"""The demo's notification sink: a local webhook receiver that checks signatures and prints.

It stands where Slack, PagerDuty or a venue's own endpoint would: the demo's
notifier delivers every liquidation (or, in a burst, a summary per symbol)
to it, signed; it verifies the HMAC-SHA256 signature and prints one line
per message.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

import orjson
from aiohttp import web

from watcher.demo.redis_server import free_port
from watcher.notify.secret import Secret
from watcher.notify.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


class PrintingSink:
    """An HTTP server on 127.0.0.1 taking the notifier's webhook posts."""

    def __init__(self, secret: str, out: TextIO) -> None:
        self.secret = Secret(secret)
        self.out = out
        self.port = free_port()
        self.received = 0
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __aenter__(self) -> PrintingSink:
        app = web.Application()
        app.router.add_post("/hook", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not verify(self.secret, stamp, given, body, now=int(time.time())):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.received += 1
        print(f"  notified (signature ok): {describe(orjson.loads(body))}", file=self.out)
        return web.Response(status=200)


def describe(message: dict[str, Any]) -> str:
    """One line for a webhook message: an event, or a summary of a burst."""
    if message.get("type") == "liquidation":
        event = message.get("event", {})
        return (
            f"{event.get('kind')} {event.get('account')} {event.get('symbol')}"
            f" at mark {event.get('mark_price')}"
        )
    if message.get("type") == "liquidation_summary":
        return (
            f"summary {message.get('symbol')}: {message.get('count')} liquidations,"
            f" notional {message.get('total_notional')}"
        )
    return str(message.get("type"))
