"""One feed connection's configuration: where to connect, which symbols, how fresh."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# A mark more than 25% away from the last accepted one waits for the next
# mark to confirm it.
DEFAULT_JUMP_BAND = 0.25
# A fresh symbol without a new mark for this long turns STALE.
DEFAULT_STALE_AFTER = 5.0
# A mark stamped more than this many seconds ahead of our wall clock is
# refused (future_ts): one glitched timestamp must not become the reference
# that every correct mark after it is compared with.
DEFAULT_MAX_AHEAD = 60.0


def public_url(url: str) -> str:
    """Return ``url`` without its query: some venues put listen keys or tokens there."""
    return url.split("?", 1)[0]


def default_silence_timeout(stale_after: float) -> float:
    """Return the silence watchdog of a feed: three stale periods, at least 10 s."""
    return max(10.0, 3 * stale_after)


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """Describe one connection: ``symbols`` are venue symbols, mapped to position symbols.

    ``symbol_map`` maps a venue symbol (``BTCUSDT``) to the symbol positions
    use (``PERP_BTC_USDC``); a venue symbol without an entry keeps its name.
    ``stale_after`` is how long, in seconds of the monotonic clock, a symbol
    stays LIVE without a new accepted mark. ``silence_timeout`` closes and
    reopens a connection that has delivered no mark for that long (a silent
    socket that still answers pings); by default three ``stale_after``, at
    least 10 s. ``jump_band`` holds a mark that moved more than that fraction
    from the last accepted one until the next confirms it; None turns the
    guard off. ``max_ahead`` is how far, in seconds, a mark's venue timestamp
    may run ahead of our wall clock before it is refused as ``future_ts``.
    A FeedSpec built in code has the defaults of a config file.
    """

    venue: str
    url: str
    symbols: tuple[str, ...]
    stale_after: float
    symbol_map: Mapping[str, str] = field(default_factory=dict)
    silence_timeout: float | None = None
    jump_band: float | None = DEFAULT_JUMP_BAND
    max_ahead: float = DEFAULT_MAX_AHEAD
    # venue symbol -> position symbol, for every subscribed symbol: one dict
    # lookup per mark on the hot path.
    routes: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError(f"feed {self.venue!r} has no symbols")
        if not self.stale_after > 0:
            raise ValueError(f"stale_after must be > 0, got {self.stale_after}")
        if self.jump_band is not None and not 0 < self.jump_band < 1:
            raise ValueError(f"jump_band must be in (0, 1), got {self.jump_band}")
        if not (self.max_ahead > 0 and math.isfinite(self.max_ahead)):
            raise ValueError(f"max_ahead must be a finite number > 0, got {self.max_ahead}")
        if self.silence_timeout is None:
            object.__setattr__(self, "silence_timeout", default_silence_timeout(self.stale_after))
        elif not self.silence_timeout > 0:
            raise ValueError(f"silence_timeout must be > 0, got {self.silence_timeout}")
        unknown = set(self.symbol_map) - set(self.symbols)
        if unknown:
            raise ValueError(f"symbol_map names unsubscribed symbols: {sorted(unknown)}")
        routes = {s: self.symbol_map.get(s, s) for s in self.symbols}
        if len(set(routes.values())) != len(routes):
            raise ValueError("two venue symbols map to the same position symbol")
        # Freeze what the caller may still hold a reference to.
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "symbol_map", MappingProxyType(dict(self.symbol_map)))
        object.__setattr__(self, "routes", MappingProxyType(routes))

    @property
    def position_symbols(self) -> tuple[str, ...]:
        """Return the position symbols this feed delivers marks for."""
        return tuple(self.routes.values())
