"""What every simulated venue shares: serving, clients, pushing, pausing, test hooks.

A subclass says how to route a request path, answer a client message and
build each client's frames; this module runs the server, the periodic
pushes, and gives tests the levers to break things (silence, drops,
garbage, accept-then-close).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypedDict

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from watcher.clock import wall_ms
from watcher.demo.sim.walk import PriceWalk


class SimOptions(TypedDict, total=False):
    """The options every simulated venue takes (see :class:`SimServer`)."""

    interval: float
    random_walk: bool
    seed: int | None
    volatility: float
    jump_probability: float
    clock_ms: Callable[[], int]
    ws_ping_interval: float | None
    idle_timeout: float | None


class SimClient:
    """One connected client and what it asked for."""

    __slots__ = ("message_id", "path", "sent", "streams", "topics", "unanswered_pings", "ws")

    def __init__(self, ws: ServerConnection, path: str) -> None:
        self.ws = ws
        self.path = path
        self.topics: set[str] = set()
        self.streams: list[str] = []
        self.unanswered_pings = 0
        # What venues that send deltas last told this client, per symbol.
        self.sent: dict[str, Decimal] = {}
        # Frames numbered so far, for venues that number them (dYdX).
        self.message_id = 0


class SimServer:
    """Serve a venue on 127.0.0.1 from ``async with`` until its exit.

    ``interval`` seconds between pushes of every price (0 or less: push only
    on :meth:`push`); ``random_walk`` moves prices before each periodic push.
    """

    def __init__(
        self,
        prices: Mapping[str, Decimal],
        *,
        interval: float = 1.0,
        random_walk: bool = False,
        seed: int | None = None,
        volatility: float = 0.002,
        jump_probability: float = 0.02,
        clock_ms: Callable[[], int] = wall_ms,
        ws_ping_interval: float | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self.prices: dict[str, Decimal] = dict(prices)
        self.interval = interval
        self.walk = (
            PriceWalk(seed=seed, volatility=volatility, jump_probability=jump_probability)
            if random_walk
            else None
        )
        self.clock_ms = clock_ms
        self.ws_ping_interval = ws_ping_interval
        # Close a client that sent nothing for this long (OKX: 30 s, Hyperliquid: 60 s).
        self.idle_timeout = idle_timeout
        self.clients: list[SimClient] = []
        # Counters for tests: connections accepted, control messages received,
        # application-level client pings, frames pushed, clients closed as idle.
        self.connections = 0
        self.subscribe_messages = 0
        self.client_pings = 0
        self.pushes = 0
        self.idle_closes = 0
        self._last_event_ms = 0
        # While set, accept the websocket handshake and close at once.
        self.drop_on_accept = False
        self.paused = False
        # Symbols left out of every frame (a venue dropping one symbol while
        # the rest flows).
        self.silent: set[str] = set()
        self.port = 0
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Self:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, ping_interval=self.ws_ping_interval, compression=None
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.interval > 0:
            self._tasks.append(asyncio.create_task(self._push_every(self.interval)))
        self._tasks.extend(asyncio.create_task(loop) for loop in self.background())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        # Surfaces a crash of a background loop instead of hiding it.
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for result in results:
            if isinstance(result, Exception):
                raise result

    def background(self) -> list[Coroutine[Any, Any, None]]:
        """Return extra coroutines to run while serving (a venue's heartbeat)."""
        return []

    @property
    def base_url(self) -> str:
        """Return ``ws://127.0.0.1:<port>``."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Return the URL a feed connects to; venues override it with their path."""
        return self.base_url

    def event_ms(self) -> int:
        """Return the time of a frame sent now: wall milliseconds, strictly increasing."""
        self._last_event_ms = max(self.clock_ms(), self._last_event_ms + 1)
        return self._last_event_ms

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Set the mark that the next push sends for ``symbol``."""
        self.prices[symbol] = price

    def pause(self) -> None:
        """Fall silent: keep every socket open but send no frames."""
        self.paused = True

    def resume(self) -> None:
        """Send frames again."""
        self.paused = False

    async def push(self) -> None:
        """Send every client its mark frames now (nothing while paused)."""
        if self.paused:
            return
        self.pushes += 1
        for client in list(self.clients):
            for frame in self.frames_for(client):
                await self._send(client, frame)

    async def send_raw(self, text: str | bytes) -> None:
        """Send ``text`` as is to every client, even while paused."""
        for client in list(self.clients):
            await self._send(client, text)

    async def close_clients(self, code: int = 1001, reason: str = "going away") -> None:
        """Close every client connection from the server side."""
        for client in list(self.clients):
            await client.ws.close(code, reason)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; re-checked after every connection or message."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _send(self, client: SimClient, frame: str | bytes) -> None:
        # A closed client is on its way out: its handler removes it.
        with contextlib.suppress(ConnectionClosed):
            await client.ws.send(frame)

    async def _push_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.walk is not None and not self.paused:
                for symbol, price in self.prices.items():
                    self.prices[symbol] = self.walk.step(price)
            await self.push()

    async def _handle(self, ws: ServerConnection) -> None:
        if self.drop_on_accept:
            self.connections += 1
            await ws.close(1011, "simulated drop")
            await self._notify()
            return
        path = ws.request.path if ws.request is not None else "/"
        client = SimClient(ws, path)
        self.on_connect(client)
        # Greeted before it is listed: no push can overtake the greeting.
        for frame in self.greeting(client):
            await self._send(client, frame)
        self.clients.append(client)
        self.connections += 1
        await self._notify()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        message = await ws.recv()
                except TimeoutError:
                    self.idle_closes += 1
                    await ws.close(1000, "idle timeout")
                    break
                await self.on_message(client, message)
                await self._notify()
        except ConnectionClosed:
            pass
        finally:
            self.clients.remove(client)
            await self._notify()

    def on_connect(self, client: SimClient) -> None:
        """Read what the request path asks for (Binance puts streams there)."""

    def greeting(self, client: SimClient) -> list[str]:
        """Return the frames a venue sends as soon as a client connects (Hyperliquid, dYdX)."""
        return []

    async def on_message(self, client: SimClient, message: str | bytes) -> None:
        """Answer one client message."""
        raise NotImplementedError

    def frames_for(self, client: SimClient) -> list[str]:
        """Return the mark frames ``client`` gets on a push."""
        raise NotImplementedError
