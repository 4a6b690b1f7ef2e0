"""One feed connection as one task: connect, subscribe, keep alive, parse, offer, reconnect.

:func:`run_feed` never returns: it reconnects forever with
:class:`~watcher.feeds.backoff.Backoff`. Network and protocol failures are
retried; a bad frame or a bad price is counted, logged once per burst and
dropped; anything else (a bug, a bad URL) propagates so that the TaskGroup
owning the feed ends and the supervisor restarts the process.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NoReturn

import structlog
from structlog.typing import FilteringBoundLogger
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake

from state.models import MarkPrice
from watcher.clock import wall_ms
from watcher.feeds.backoff import Backoff
from watcher.feeds.book import MarkBook
from watcher.feeds.errors import FrameError
from watcher.feeds.spec import FeedSpec, public_url
from watcher.feeds.venue import ParseResult, Venue, WallClock

Clock = Callable[[], float]


class FeedState(StrEnum):
    """Where a feed connection is: LIVE only once marks for its symbols arrived."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    LIVE = "LIVE"
    BACKOFF = "BACKOFF"


@dataclass(slots=True)
class FeedStats:
    """Counters of one feed task, read by metrics and health checks."""

    state: FeedState = FeedState.CONNECTING
    attempts: int = 0
    connects: int = 0
    frames: int = 0
    marks: int = 0
    frame_errors: Counter[str] = field(default_factory=Counter)
    venue_errors: int = 0
    replies: int = 0
    keepalives: int = 0
    silences: int = 0
    # Runs of ``storm_after`` failed connections in a row, each alerted once.
    storms: int = 0
    # Venue notices of a coming restart, each answered by a reconnect.
    restart_notices: int = 0
    # Marks for symbols this feed was not asked for (Orderly's ``markprices``
    # carries every market): expected, so counted apart from rejections.
    unrouted: int = 0
    # Clock references reset after a run of marks refused as old
    # (``feed.clock_skew``), each alerted once.
    clock_resyncs: int = 0


def is_retryable(exc: Exception) -> bool:
    """Tell whether a connection failure may heal by itself (network, handshake, close)."""
    return isinstance(exc, (OSError, TimeoutError, ConnectionClosed, InvalidHandshake))


class BurstLog:
    """Log the first refusal of a burst at once, then fold the rest into counts.

    At most one event per ``interval`` seconds: a venue sending 300 bad prices
    a second must not write 300 log lines a second; the counters keep exact numbers.
    """

    def __init__(
        self, log: FilteringBoundLogger, event: str, interval: float, clock: Clock
    ) -> None:
        self._log = log
        self._event = event
        self._interval = interval
        self._clock = clock
        self._pending: Counter[str] = Counter()
        self._quiet_until = float("-inf")
        self._sample = ""

    def note(self, reason: str, sample: str = "") -> None:
        """Count one refusal and log if the last log is old enough."""
        self._pending[reason] += 1
        if sample:
            self._sample = sample
        now = self._clock()
        if now >= self._quiet_until:
            self._quiet_until = now + self._interval
            self.flush()

    def flush(self) -> None:
        """Log whatever was folded since the last event."""
        if self._pending:
            self._log.warning(self._event, counts=dict(self._pending), sample=self._sample)
            self._pending.clear()
            self._sample = ""


async def run_feed(
    feed: FeedSpec,
    venue: Venue,
    book: MarkBook,
    *,
    backoff: Backoff,
    max_size: int = 2**20,
    clock: Clock = time.monotonic,
    wall_clock: WallClock = wall_ms,
    log: FilteringBoundLogger | None = None,
    stats: FeedStats | None = None,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    log_interval: float = 10.0,
    storm_after: int = 5,
) -> NoReturn:
    """Keep one connection to ``feed`` open forever and offer every mark to ``book``.

    ``max_size`` caps a frame in bytes: a bigger one closes the connection,
    which is then reopened. ``ping_interval``/``ping_timeout`` are websocket
    level pings that detect a dead TCP path; venue-level heartbeats are the
    venue module's business. ``storm_after`` failed connections in a row
    (none delivering for ``backoff.reset_after``) raise one
    ``feed.reconnect_storm`` alert. ``wall_clock`` (Unix ms) is what a
    mark's venue timestamp may run ahead of by at most ``feed.max_ahead``.
    """
    url = venue.url(feed.url, feed.symbols)
    base_log = log if log is not None else structlog.get_logger()
    log = base_log.bind(feed=venue.name, url=public_url(url))
    stats = stats if stats is not None else FeedStats()
    session = _Session(feed, venue, book, stats, log, clock, wall_clock, log_interval)
    while True:
        stats.attempts += 1
        stats.state = FeedState.CONNECTING
        venue.reset()
        session.begin()
        error: str | None = None
        try:
            async with connect(
                url,
                max_size=max_size,
                open_timeout=open_timeout,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                # A peer that will not finish the closing handshake must not
                # delay the reconnect by more than this.
                close_timeout=min(open_timeout, 5.0),
                # Direct connections only: no proxy picked up from the environment.
                proxy=None,
            ) as ws:
                stats.connects += 1
                log.info("feed.connected", attempt=stats.attempts)
                await session.serve(ws)
        except Exception as exc:
            # CancelledError is a BaseException: shutdown passes straight through.
            if not is_retryable(exc):
                raise
            error = f"{type(exc).__name__}: {exc}"
        finally:
            session.end()
        if session.delivered_for() >= backoff.reset_after:
            backoff.reset()
        delay = backoff.next_delay()
        stats.state = FeedState.BACKOFF
        if backoff.failures == storm_after:
            # Once per storm: the count restarts when a connection delivers for a while.
            stats.storms += 1
            log.warning("feed.reconnect_storm", failures=backoff.failures, error=error)
        log.warning(
            "feed.reconnecting",
            attempt=stats.attempts,
            failures=backoff.failures,
            delay=round(delay, 3),
            error=error,
        )
        await asyncio.sleep(delay)


class _Session:
    """The per-connection half of :func:`run_feed`: what happens while a socket is open."""

    def __init__(
        self,
        feed: FeedSpec,
        venue: Venue,
        book: MarkBook,
        stats: FeedStats,
        log: FilteringBoundLogger,
        clock: Clock,
        wall_clock: WallClock,
        log_interval: float,
    ) -> None:
        self.feed = feed
        self.venue = venue
        self.book = book
        self.stats = stats
        self.log = log
        self.clock = clock
        self.wall_clock = wall_clock
        self.max_ahead_ms = round(feed.max_ahead * 1000)
        self.routes = feed.routes
        self.equal_ts_ok = venue.equal_ts_ok
        # Marks are ordered per connection config: two feeds of one symbol
        # each keep their own clock.
        self.source = f"{feed.venue}|{feed.url}"
        self.price_log = BurstLog(log, "price.rejected", log_interval, clock)
        self.frame_log = BurstLog(log, "feed.frame_rejected", log_interval, clock)
        self.first_mark: float | None = None
        self.last_mark: float | None = None
        self.opened = 0.0

    def begin(self) -> None:
        """Forget the previous connection's marks."""
        self.first_mark = self.last_mark = None
        self.opened = self.clock()

    def end(self) -> None:
        """Log what is still folded in the burst logs."""
        self.price_log.flush()
        self.frame_log.flush()

    def delivered_for(self) -> float:
        """Return for how long, first to last mark, the connection delivered marks."""
        if self.first_mark is None or self.last_mark is None:
            return 0.0
        return self.last_mark - self.first_mark

    async def serve(self, ws: ClientConnection) -> None:
        """Subscribe, then read frames until the connection closes or falls silent."""
        for message in self.venue.subscribe_messages(self.feed.symbols):
            await ws.send(message)
        self.stats.state = FeedState.CONNECTED
        keepalive = self.venue.keepalive_interval
        next_keepalive = self.clock() + keepalive if keepalive else None
        silence = self.feed.silence_timeout
        max_age = getattr(self.venue, "max_connection_age", None)
        retire_at = self.opened + max_age if max_age else None
        while True:
            deadline = next_keepalive
            if retire_at is not None:
                deadline = retire_at if deadline is None else min(deadline, retire_at)
            if silence is not None:
                quiet_since = self.last_mark if self.last_mark is not None else self.opened
                silent_at = quiet_since + silence
                deadline = silent_at if deadline is None else min(deadline, silent_at)
            try:
                if deadline is None:
                    frame = await ws.recv()
                else:
                    async with asyncio.timeout(max(0.0, deadline - self.clock())):
                        frame = await ws.recv()
            except TimeoutError:
                now = self.clock()
                if next_keepalive is not None and keepalive and now >= next_keepalive:
                    ping = self.venue.keepalive_message()
                    if ping is not None:
                        await ws.send(ping)
                        self.stats.keepalives += 1
                    next_keepalive = now + keepalive
                    continue
                if retire_at is not None and now >= retire_at:
                    # Ahead of the venue's own cut, at a moment of our choosing.
                    self.log.info("feed.retiring", age_s=round(now - self.opened))
                    return
                self.stats.silences += 1
                if self.first_mark is None:
                    # Acknowledged (or not) but silent: a mistyped topic looks like this.
                    self.log.warning("feed.silent_subscription", seconds=silence)
                else:
                    self.log.warning("feed.silent", seconds=silence)
                return
            except ConnectionClosedOK:
                return
            if await self._handle(ws, frame):
                return

    async def _handle(self, ws: ClientConnection, frame: str | bytes) -> bool:
        """Act on one frame; return True if the venue asked for a reconnect."""
        recv_ts = self.clock()
        self.stats.frames += 1
        try:
            result = self.venue.parse(frame, recv_ts)
        except FrameError as exc:
            self.stats.frame_errors[exc.reason] += 1
            self.frame_log.note(exc.reason, exc.detail[:120])
            return False
        if result.reply is not None:
            await ws.send(result.reply)
            self.stats.replies += 1
        if result.error is not None:
            self.stats.venue_errors += 1
            self.log.error("feed.venue_error", error=result.error)
        if result.ack:
            self.log.debug("feed.subscribed")
        if result.marks or result.rejects:
            self._offer(result, recv_ts)
        if result.reconnect:
            # Leaving the ``async with connect`` closes this socket cleanly;
            # run_feed then reopens it after the usual backoff.
            self.stats.restart_notices += 1
            self.log.warning("feed.restart_notice")
        return result.reconnect

    def _offer(self, result: ParseResult, recv_ts: float) -> None:
        delivered = False
        # A venue stamping further ahead of our clock than this glitched.
        not_after = self.wall_clock() + self.max_ahead_ms
        # (mark, the reference forgotten to take it) of every resynced symbol.
        resynced: list[tuple[MarkPrice, int]] = []
        for mark in result.marks:
            symbol = self.routes.get(mark.symbol)
            if symbol is None:
                self.stats.unrouted += 1
                continue
            delivered = True
            mark = MarkPrice(symbol, mark.price, mark.venue_ts, mark.recv_ts, self.source)
            offer = self.book.offer(mark, equal_ts_ok=self.equal_ts_ok, not_after=not_after)
            if offer.resynced_from is not None:
                resynced.append((mark, offer.resynced_from))
            if offer.accepted:
                self.stats.marks += 1
            elif offer.held:
                # Rare by nature, and an operator wants each one: not bursted.
                last = self.book.latest(mark.symbol)
                self.log.warning(
                    "price.jump_held",
                    symbol=mark.symbol,
                    price=str(mark.price),
                    last=None if last is None else str(last.price),
                )
            elif offer.reason is not None:
                self.price_log.note(offer.reason, mark.symbol)
        if resynced:
            self._clock_skew(resynced)
        # A refusal for a market nobody asked for is noise, not an alarm.
        wanted = [r for r in result.rejects if r.symbol is None or r.symbol in self.routes]
        self.book.note_rejects(wanted)
        for exc in wanted:
            self.price_log.note(exc.reason, exc.symbol or "")
        if delivered:
            if self.first_mark is None:
                self.first_mark = recv_ts
                self.stats.state = FeedState.LIVE
                self.log.info("feed.live")
            self.last_mark = recv_ts

    def _clock_skew(self, resynced: list[tuple[MarkPrice, int]]) -> None:
        """Alert that the book reset this feed's clock reference to take these marks.

        One line per frame, naming its first symbol: a venue whose clock went
        back does so for every symbol of a frame at once.
        """
        self.stats.clock_resyncs += len(resynced)
        mark, reference_ts = resynced[0]
        self.log.warning(
            "feed.clock_skew",
            symbol=mark.symbol,
            symbols=len(resynced),
            source=public_url(self.source),
            venue_ts=mark.venue_ts,
            reference_ts=reference_ts,
            behind_ms=reference_ts - mark.venue_ts,
        )
