"""The daemon's link to Redis: every round trip bounded in time and retried while Redis is away.

A Redis that is down, restarting, loading its AOF, failing over or frozen
is a fault the daemon rides out (docs/design.md, "Process model"): the
first failed or timed-out round trip of an outage turns the link DEGRADED
and logs one ``redis.unreachable`` (connection refused, reset, lost) or
``redis.degraded`` (no answer within ``timeout``: frozen or overloaded)
error event; the call is retried with capped exponential backoff until it
goes through, then ``redis.recovered`` says how long it lasted. A retried
round trip is always safe here: reads are reads, and every write is a
guarded commit (version, seq, lease, ``SET NX`` on the liquidation id, the
input entry still pending) that a second run refuses.

While DEGRADED the rest of the daemon keeps going where it can: feeds keep
conflating the latest mark per symbol (bounded by the number of symbols);
the engine and the input consumer wait on their call. After an outage the
engine reconciles like a start (:attr:`RedisLink.outages` tells it).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

import structlog
from redis.exceptions import (
    BusyLoadingError,
    ClusterError,
    MovedError,
    ReadOnlyError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")

# Failures that heal by themselves: the connection (refused, reset, closed,
# auth lost with a restart), a reply that never came, a server still loading
# its data or demoted to replica during a failover; on a Redis Cluster also a
# cluster that is down or has a slot without a master while a replica is
# promoted, and redirections that kept moving (the client re-reads the slot
# map before the retry). A command refused with a redirection was not run.
TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    TryAgainError,
    ClusterError,
    SlotNotCoveredError,
    MovedError,
)


class LinkState(StrEnum):
    """Whether Redis answers: OK, or DEGRADED while calls fail or time out."""

    OK = "OK"
    DEGRADED = "DEGRADED"


class LinkClosed(Exception):
    """The daemon is stopping while Redis does not answer: give the call up."""


class RedisLink:
    """Run Redis round trips with a timeout; retry transient failures until they pass."""

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        drop_idle: Callable[[], Awaitable[None]] | None = None,
        shard: int | None = None,
    ) -> None:
        """``shard``: the one shard whose calls this link carries (named in its log lines)."""
        self.timeout = timeout
        # Closes the client's idle connections: after a restart of Redis each
        # one is dead, and would fail the next call that took it.
        self.drop_idle = drop_idle
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.clock = clock
        self.state = LinkState.OK
        # How many outages ended: the engine reconciles when this moves.
        self.outages = 0
        self.failures = 0
        self.down_since: float | None = None
        self.recovered_at = float("-inf")
        self.last_error: str | None = None
        # For the metrics: round trips tried, by what they were for; failures, ever.
        self.round_trips: Counter[str] = Counter()
        self.errors = 0
        self._closing = asyncio.Event()
        log = structlog.get_logger().bind(component="redis")
        self._log = log if shard is None else log.bind(shard=shard)

    def close(self) -> None:
        """Make calls that wait on a Redis that does not answer give up (LinkClosed)."""
        self._closing.set()

    async def call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` until it succeeds; ``what`` names it in the log.

        ``op`` must make a round trip: its success is how the link learns that
        Redis answers again.
        """
        attempt = 0
        while True:
            started = self.clock()
            self.round_trips[what] += 1
            try:
                async with asyncio.timeout(self.timeout):
                    result = await op()
            except TRANSIENT as exc:
                if self._failed(what, exc, started):
                    await self._drop_idle()
                await self._wait(attempt)
                attempt += 1
                continue
            if self.state is LinkState.DEGRADED:
                self._recovered()
                await self._drop_idle()
            return result

    async def once(self, what: str, op: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``op`` once within the timeout; None (logged) if Redis did not take it."""
        self.round_trips[what] += 1
        try:
            async with asyncio.timeout(self.timeout):
                return await op()
        except TRANSIENT as exc:
            self.errors += 1
            self._log.warning("redis.call_dropped", call=what, error=_describe(exc, self.timeout))
            return None

    async def _drop_idle(self) -> None:
        if self.drop_idle is not None:
            await self.drop_idle()

    def _failed(self, what: str, exc: BaseException, started: float) -> bool:
        """Count a failure; say whether it begins an outage."""
        self.failures += 1
        self.errors += 1
        self.last_error = _describe(exc, self.timeout)
        if self.state is LinkState.DEGRADED or started < self.recovered_at:
            # Already said; or a try begun before Redis came back, failing late:
            # the outage it belongs to is over.
            return False
        self.state = LinkState.DEGRADED
        self.down_since = self.clock()
        frozen = isinstance(exc, TimeoutError | RedisTimeoutError)
        self._log.error(
            "redis.degraded" if frozen else "redis.unreachable",
            call=what,
            error=self.last_error,
            timeout_s=self.timeout,
        )
        return True

    def _recovered(self) -> None:
        down = 0.0 if self.down_since is None else self.clock() - self.down_since
        self.state = LinkState.OK
        self.down_since = None
        self.recovered_at = self.clock()
        self.outages += 1
        self._log.warning("redis.recovered", outage_s=round(down, 3), failures=self.failures)
        self.failures = 0

    async def _wait(self, attempt: int) -> None:
        if self._closing.is_set():
            raise LinkClosed(self.last_error or "closed")
        delay = min(self.backoff_cap, self.backoff_base * 2**attempt)
        try:
            async with asyncio.timeout(delay):
                await self._closing.wait()
        except TimeoutError:
            return
        raise LinkClosed(self.last_error or "closed")

    def degraded_for(self) -> float:
        """Seconds since the current outage began (0 while OK)."""
        return 0.0 if self.down_since is None else self.clock() - self.down_since


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {timeout:g} s"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
