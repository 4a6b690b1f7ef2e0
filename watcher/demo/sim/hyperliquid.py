"""A simulated Hyperliquid websocket: ``activeAssetCtx`` per coin, greeting, JSON ping/pong."""

from __future__ import annotations

from decimal import Decimal

import orjson

from watcher.demo.sim.base import SimClient, SimServer

CHANNEL = "activeAssetCtx"
GREETING = "Websocket connection established."


class HyperliquidMarkServer(SimServer):
    """Play Hyperliquid: greet, echo subscriptions, push one context per coin, no timestamp.

    ``{"method":"ping"}`` is answered with ``{"channel":"pong"}``; a second
    subscription to the same coin gets the "Already subscribed" error; a
    subscription to a coin the venue does not list closes the socket (1008),
    the way the real venue may.
    """

    @property
    def url(self) -> str:
        """Return ``ws://127.0.0.1:<port>/ws``."""
        return f"{self.base_url}/ws"

    def greeting(self, client: SimClient) -> list[str]:
        """Return the plain-text greeting the real server sends on connect."""
        return [GREETING]

    async def on_message(self, client: SimClient, message: str | bytes) -> None:
        """Answer pings and ``activeAssetCtx`` subscriptions; refuse anything else."""
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict):
            await self._error(
                client, f"Error parsing JSON into valid websocket request: {message!s:.100}"
            )
            return
        if msg.get("method") == "ping":
            self.client_pings += 1
            await self._send(client, '{"channel":"pong"}')
            return
        subscription = msg.get("subscription")
        if msg.get("method") != "subscribe" or not isinstance(subscription, dict):
            await self._error(client, f"Invalid request: {message!s:.100}")
            return
        self.subscribe_messages += 1
        coin = subscription.get("coin")
        if subscription.get("type") != CHANNEL or not isinstance(coin, str):
            await self._error(
                client, f"Invalid subscription: {orjson.dumps(subscription).decode()}"
            )
        elif coin not in self.prices:
            await client.ws.close(1008, "unknown coin")
        elif coin in client.topics:
            await self._error(client, f"Already subscribed: {orjson.dumps(subscription).decode()}")
        else:
            client.topics.add(coin)
            response = {"channel": "subscriptionResponse", "data": msg}
            await self._send(client, orjson.dumps(response).decode())

    async def _error(self, client: SimClient, text: str) -> None:
        await self._send(client, orjson.dumps({"channel": "error", "data": text}).decode())

    def frames_for(self, client: SimClient) -> list[str]:
        """Return one ``activeAssetCtx`` frame per subscribed coin."""
        frames: list[str] = []
        for coin in sorted(client.topics):
            if coin in self.silent or coin not in self.prices:
                continue
            frames.append(orjson.dumps(_context(coin, self.prices[coin])).decode())
        return frames


def _context(coin: str, price: Decimal) -> dict[str, object]:
    text = str(price)
    ctx = {
        "funding": "0.0000125",
        "openInterest": "1000.0",
        "prevDayPx": text,
        "dayNtlVlm": "0.0",
        "premium": "0.0",
        "oraclePx": text,
        "markPx": text,
        "midPx": text,
        "impactPxs": [text, text],
        "dayBaseVlm": "0.0",
    }
    return {"channel": CHANNEL, "data": {"coin": coin, "ctx": ctx}}
