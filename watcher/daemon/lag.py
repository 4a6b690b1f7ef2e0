"""Measure event-loop lag: how late a short sleep wakes up tells how blocked the loop is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog


class LagMeter:
    """Sleep ``interval`` over and over; the overshoot is the loop's lag.

    ``worst`` holds the largest lag since :meth:`take` last read it; a lag
    over ``alert_after`` logs ``loop.lag``, at most once per ``log_every``.
    """

    def __init__(
        self,
        interval: float = 0.05,
        alert_after: float = 0.1,
        log_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.alert_after = alert_after
        self.log_every = log_every
        self.clock = clock
        self.worst = 0.0
        self.samples = 0
        self._logged_at = -log_every
        self._log = structlog.get_logger().bind(component="lag")

    def take(self) -> float:
        """Return the worst lag (seconds) since the last call, and start over."""
        worst, self.worst = self.worst, 0.0
        return worst

    async def run(self, stop: asyncio.Event) -> None:
        """Measure until ``stop`` is set."""
        while not stop.is_set():
            start = self.clock()
            await asyncio.sleep(self.interval)
            now = self.clock()
            lag = max(0.0, now - start - self.interval)
            self.samples += 1
            self.worst = max(self.worst, lag)
            if lag > self.alert_after and now - self._logged_at >= self.log_every:
                self._logged_at = now
                self._log.warning("loop.lag", lag_ms=round(lag * 1000, 1))
