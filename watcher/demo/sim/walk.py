"""A seeded price path (the demo, the sims, the bench): a geometric walk with sharp moves."""

from __future__ import annotations

import math
import random
from decimal import Decimal

# Six significant digits: enough to look like a venue's tick sizes, and a
# float carries them exactly through a JSON number (Orderly's format).
SIGNIFICANT_DIGITS = 6


class PriceWalk:
    """Move prices one step at a time; the same seed gives the same path.

    Each step multiplies by ``exp(N(0, volatility))``; with probability
    ``jump_probability`` it adds a jump of about ``jump_size`` (0.5x to 1.5x)
    up or down, the kind of move that sets off a liquidation cascade.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        volatility: float = 0.002,
        jump_probability: float = 0.02,
        jump_size: float = 0.05,
        digits: int = SIGNIFICANT_DIGITS,
    ) -> None:
        if volatility < 0 or jump_size < 0 or not 0 <= jump_probability <= 1:
            raise ValueError("volatility and jump_size must be >= 0, jump_probability in [0, 1]")
        self._rng = random.Random(seed)
        self.volatility = volatility
        self.jump_probability = jump_probability
        self.jump_size = jump_size
        self.digits = digits

    def step(self, price: Decimal) -> Decimal:
        """Return the next price after ``price`` (positive, ``digits`` significant digits)."""
        log_return = self._rng.gauss(0.0, self.volatility)
        if self._rng.random() < self.jump_probability:
            direction = self._rng.choice((-1.0, 1.0))
            log_return += direction * self.jump_size * self._rng.uniform(0.5, 1.5)
        moved = price * Decimal(repr(math.exp(log_return)))
        return round_significant(moved, self.digits)


def round_significant(price: Decimal, digits: int = SIGNIFICANT_DIGITS) -> Decimal:
    """Round a positive ``price`` to ``digits`` significant digits."""
    return price.quantize(Decimal(1).scaleb(price.adjusted() - digits + 1))
