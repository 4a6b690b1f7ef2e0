"""A real HTTP sink on 127.0.0.1 for the notifier's tests: it answers as told and records.

Each request takes the next action of ``plan`` (then ``default``): an HTTP
status to answer with, or :class:`Hang` (answer only after that long, past
the notifier's timeout). With ``secret`` the server checks the webhook
signature itself, with the standard library's ``hmac``, as a receiver
would: a request whose signature does not match gets 401 and is counted in
``bad_signatures``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Hang:
    """Answer 200 only after ``seconds``: a sink that stalls past the timeout."""

    seconds: float


Action = int | Hang


@dataclass
class Received:
    """One request as the server saw it, and how it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SinkServer:
    """A local HTTP server that plays a sink."""

    plan: list[Action] = field(default_factory=list)
    default: Action = 200
    secret: str | None = None
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    bad_signatures: int = 0
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/secret-path-token"

    @property
    def delivered(self) -> list[Received]:
        """The requests answered with a 2xx."""
        return [r for r in self.received if 200 <= r.status < 300]

    def bodies(self) -> list[Any]:
        """The JSON bodies of the delivered requests, in order."""
        return [r.json() for r in self.delivered]

    async def start(self) -> SinkServer:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        action = self.plan.pop(0) if self.plan else self.default
        status = 200 if isinstance(action, Hang) else action
        if self.secret is not None and not self._signed(request.headers, body):
            self.bad_signatures += 1
            status = 401
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(action, Hang):
            # Recorded as it arrives, so the test sees it while it hangs.
            self.received.append(Received(request.path, dict(request.headers), body, 0, 0.0))
            await asyncio.sleep(action.seconds)
            return web.Response(status=status)
        self.received.append(
            Received(request.path, dict(request.headers), body, status, time.monotonic())
        )
        return web.Response(status=status, text="ok" if status < 300 else "no")

    def _signed(self, headers: Any, body: bytes) -> bool:
        assert self.secret is not None
        stamp = headers.get("X-Liqwatch-Timestamp", "")
        given = headers.get("X-Liqwatch-Signature", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
            return False
        expected = hmac.new(
            self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest("sha256=" + expected, given)


def event_ids(bodies: Sequence[Any]) -> list[str]:
    """The event ids a webhook sink received alone (summaries left out)."""
    return [b["event"]["id"] for b in bodies if b.get("type") == "liquidation"]
