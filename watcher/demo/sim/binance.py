"""A simulated Binance USD-M market stream: single, combined and ``!markPrice@arr`` forms."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from decimal import Decimal
from typing import Unpack

import orjson

from watcher.demo.sim.base import SimClient, SimOptions, SimServer

MARK_STREAM = "@markPrice"
ALL_MARKS_STREAM = "!markPrice@arr"
# Marker in SimClient.topics for a client of the ``/market/stream`` wrapper form.
COMBINED = "combined"


class BinanceMarkServer(SimServer):
    """Play Binance: streams come from the request path, prices are strings.

    ``/market/ws/<sym>@markPrice[@1s]`` sends bare updates,
    ``/market/stream?streams=a/b`` wraps each in ``{"stream", "data"}``,
    ``!markPrice@arr[@1s]`` sends one array of every symbol. As on the real
    venue, any other path accepts SUBSCRIBE requests and then sends nothing.
    """

    def __init__(
        self,
        prices: Mapping[str, Decimal],
        **options: Unpack[SimOptions],
    ) -> None:
        options.setdefault("ws_ping_interval", 180.0)
        super().__init__(prices, **options)

    @property
    def url(self) -> str:
        """Return the base URL; :class:`~watcher.feeds.binance.BinanceVenue` adds the path."""
        return self.base_url

    def on_connect(self, client: SimClient) -> None:
        """Take the streams from the path; none if it is not under ``/market/``."""
        parsed = urllib.parse.urlsplit(client.path)
        if parsed.path.startswith("/market/ws/"):
            client.streams = [urllib.parse.unquote(parsed.path.removeprefix("/market/ws/"))]
        elif parsed.path == "/market/stream":
            query = urllib.parse.parse_qs(parsed.query)
            client.streams = [s for value in query.get("streams", []) for s in value.split("/")]
            client.topics.add(COMBINED)

    async def on_message(self, client: SimClient, message: str | bytes) -> None:
        """Acknowledge SUBSCRIBE, UNSUBSCRIBE and LIST_SUBSCRIPTIONS; they change nothing sent."""
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self._send(client, '{"code":3,"msg":"Invalid JSON"}')
            return
        if not isinstance(msg, dict) or "method" not in msg:
            await self._send(client, '{"code":2,"msg":"Invalid request: missing field `method`"}')
            return
        self.subscribe_messages += 1
        result = client.streams if msg["method"] == "LIST_SUBSCRIPTIONS" else None
        await self._send(client, orjson.dumps({"result": result, "id": msg.get("id")}).decode())

    def frames_for(self, client: SimClient) -> list[str]:
        """Return one frame per stream of ``client``, wrapped if it asked for the combined form."""
        event_ms = self.event_ms()
        frames: list[str] = []
        for stream in client.streams:
            payload = self._payload(stream, event_ms)
            if payload is None:
                continue
            if COMBINED in client.topics:
                payload = {"stream": stream, "data": payload}
            frames.append(orjson.dumps(payload).decode())
        return frames

    def _payload(self, stream: str, event_ms: int) -> object:
        if stream.startswith(ALL_MARKS_STREAM):
            return [self._update(s, p, event_ms) for s, p in self.prices.items()]
        name, _, _speed = stream.partition(MARK_STREAM)
        symbol = name.upper()
        if MARK_STREAM not in stream or symbol not in self.prices:
            return None
        return self._update(symbol, self.prices[symbol], event_ms)

    @staticmethod
    def _update(symbol: str, price: Decimal, event_ms: int) -> dict[str, object]:
        return {
            "e": "markPriceUpdate",
            "E": event_ms,
            "s": symbol,
            "p": str(price),
            "i": str(price),
            "P": str(price),
            "r": "0.00010000",
            "T": event_ms - event_ms % 28_800_000 + 28_800_000,
        }
