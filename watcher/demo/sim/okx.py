"""A simulated OKX v5 public stream: the ``mark-price`` channel, text ping/pong, restart notices."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Unpack

import orjson

from watcher.demo.sim.base import SimClient, SimOptions, SimServer

CHANNEL = "mark-price"


class OkxMarkServer(SimServer):
    """Play OKX: ack each subscribed instrument, push one frame per instrument, pong in text.

    ``ts`` and ``markPx`` are strings, as on the real venue; an unknown
    instrument or channel gets an error event; :meth:`notice_restart` sends
    the 64008 notice that the real venue sends 60 s before a restart.
    """

    def __init__(
        self,
        prices: Mapping[str, Decimal],
        **options: Unpack[SimOptions],
    ) -> None:
        super().__init__(prices, **options)
        self.notices = 0

    @property
    def url(self) -> str:
        """Return ``ws://127.0.0.1:<port>/ws/v5/public``."""
        return f"{self.base_url}/ws/v5/public"

    async def notice_restart(self) -> None:
        """Tell every client, as OKX does, that the service restarts soon (code 64008)."""
        self.notices += 1
        notice = {
            "event": "notice",
            "code": "64008",
            "msg": "The connection will soon be closed for a service upgrade. Please reconnect.",
            "connId": "sim",
        }
        await self.send_raw(orjson.dumps(notice).decode())

    async def on_message(self, client: SimClient, message: str | bytes) -> None:
        """Answer the text ping; ack or refuse each subscribe arg; refuse anything else."""
        if message == "ping":
            self.client_pings += 1
            await self._send(client, "pong")
            return
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or msg.get("op") != "subscribe":
            await self._error(client, "60012", f"Invalid request: {message!s:.100}")
            return
        self.subscribe_messages += 1
        args = msg.get("args")
        for arg in args if isinstance(args, list) else [args]:
            inst = arg.get("instId") if isinstance(arg, dict) else None
            if (
                not isinstance(arg, dict)
                or arg.get("channel") != CHANNEL
                or inst not in self.prices
            ):
                await self._error(client, "60018", f"Wrong URL or channel:{arg}, doesn't exist.")
                continue
            client.topics.add(str(inst))
            ack = {
                "event": "subscribe",
                "arg": {"channel": CHANNEL, "instId": inst},
                "connId": "sim",
            }
            await self._send(client, orjson.dumps(ack).decode())

    async def _error(self, client: SimClient, code: str, text: str) -> None:
        error = {"event": "error", "code": code, "msg": text, "connId": "sim"}
        await self._send(client, orjson.dumps(error).decode())

    def frames_for(self, client: SimClient) -> list[str]:
        """Return one ``mark-price`` frame per subscribed instrument."""
        ts = str(self.event_ms())
        frames: list[str] = []
        for inst in sorted(client.topics):
            if inst in self.silent or inst not in self.prices:
                continue
            item = {"instId": inst, "instType": "SWAP", "markPx": str(self.prices[inst]), "ts": ts}
            frame = {"arg": {"channel": CHANNEL, "instId": inst}, "data": [item]}
            frames.append(orjson.dumps(frame).decode())
        return frames
