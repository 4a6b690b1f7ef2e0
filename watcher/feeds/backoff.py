"""Reconnect delays: full-jitter exponential backoff with a cap, reset only by a healthy link."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Hand out reconnect delays: uniform in [0, min(cap, base * 2**n)] for failure n.

    Full jitter spreads many clients (or many feeds) reconnecting after one
    outage. ``reset_after`` is how long a connection must keep delivering data
    before the caller may :meth:`reset`: a server that accepts and drops at
    once must keep us backing off, not reconnecting in a tight loop.
    """

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        reset_after: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        if reset_after < 0:
            raise ValueError(f"reset_after must be >= 0, got {reset_after}")
        self.base = base
        self.cap = cap
        self.reset_after = reset_after
        self._rng = rng
        self.failures = 0

    def ceiling(self) -> float:
        """Return the largest delay the next call to :meth:`next_delay` may return."""
        # Past ~60 doublings the float overflows long after any cap is reached.
        return min(self.cap, self.base * 2.0 ** min(self.failures, 60))

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        delay = self.ceiling() * self._rng()
        self.failures += 1
        return delay

    def reset(self) -> None:
        """Start over from ``base``: the last connection proved healthy."""
        self.failures = 0
