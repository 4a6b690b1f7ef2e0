"""A simulated dYdX v4 indexer websocket: ``v4_markets`` snapshot, then oracle-price deltas."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Unpack

import orjson

from watcher.demo.sim.base import SimClient, SimOptions, SimServer

CHANNEL = "v4_markets"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DydxMarkServer(SimServer):
    """Play the dYdX indexer: greet, snapshot every market, then deltas of changed ones.

    A push sends each client one ``channel_data`` frame with the
    ``oraclePrices`` of the markets whose price moved since it last got
    them (nothing if none moved). Frames are numbered per client. The
    server pings at the websocket level (every ``ws_ping_interval`` s); a
    restart is ``close_clients(1012, ...)``.
    """

    def __init__(
        self,
        prices: Mapping[str, Decimal],
        **options: Unpack[SimOptions],
    ) -> None:
        options.setdefault("ws_ping_interval", 30.0)
        super().__init__(prices, **options)
        self.height = 1_000_000

    @property
    def url(self) -> str:
        """Return ``ws://127.0.0.1:<port>/v4/ws``."""
        return f"{self.base_url}/v4/ws"

    def greeting(self, client: SimClient) -> list[str]:
        """Return the ``connected`` message the indexer sends first."""
        return [self._message(client, {"type": "connected"})]

    async def on_message(self, client: SimClient, message: str | bytes) -> None:
        """Answer a ``v4_markets`` subscription with the snapshot; refuse anything else."""
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") != "subscribe":
            await self._error(client, f"Invalid message: {message!s:.100}")
            return
        self.subscribe_messages += 1
        if msg.get("channel") != CHANNEL:
            await self._error(client, f"Invalid subscribe message: channel {msg.get('channel')}")
        elif CHANNEL in client.topics:
            await self._error(client, f"Invalid subscribe message: already subscribed ({CHANNEL})")
        else:
            client.topics.add(CHANNEL)
            await self._send(client, self._snapshot(client))

    async def _error(self, client: SimClient, text: str) -> None:
        await self._send(client, self._message(client, {"type": "error", "message": text}))

    def _message(self, client: SimClient, fields: Mapping[str, object]) -> str:
        frame = {"connection_id": f"sim-{id(client):x}", "message_id": client.message_id}
        client.message_id += 1
        return orjson.dumps({**fields, **frame}).decode()

    def _snapshot(self, client: SimClient) -> str:
        markets: dict[str, object] = {}
        for market_id, (ticker, price) in enumerate(sorted(self.prices.items())):
            if ticker in self.silent:
                continue
            client.sent[ticker] = price
            markets[ticker] = {
                "clobPairId": str(market_id),
                "ticker": ticker,
                "status": "ACTIVE",
                "oraclePrice": str(price),
                "marketType": "CROSS",
                "initialMarginFraction": "0.05",
                "maintenanceMarginFraction": "0.03",
                "nextFundingRate": "0",
            }
        fields = {"type": "subscribed", "channel": CHANNEL, "contents": {"markets": markets}}
        return self._message(client, fields)

    def frames_for(self, client: SimClient) -> list[str]:
        """Return one oracle-price delta of the markets that moved, or nothing."""
        if CHANNEL not in client.topics:
            return []
        moved = [
            (market_id, ticker, price)
            for market_id, (ticker, price) in enumerate(sorted(self.prices.items()))
            if ticker not in self.silent and client.sent.get(ticker) != price
        ]
        if not moved:
            return []
        self.height += 1
        effective_at = _iso(self.event_ms())
        changed: dict[str, object] = {}
        for market_id, ticker, price in moved:
            client.sent[ticker] = price
            changed[ticker] = {
                "effectiveAt": effective_at,
                "effectiveAtHeight": str(self.height),
                "marketId": market_id,
                "oraclePrice": str(price),
            }
        fields = {
            "type": "channel_data",
            "channel": CHANNEL,
            "version": "1.0.0",
            "contents": {"oraclePrices": changed},
        }
        return [self._message(client, fields)]


def _iso(ms: int) -> str:
    when = _EPOCH + timedelta(milliseconds=ms)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"
