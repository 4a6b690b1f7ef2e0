"""Mark-price feeds: venue parsers, the connection task and the mark book.

Everything a venue sends is parsed here, at the edge, into
``state.models.MarkPrice``; nothing downstream knows which venue it came from.
"""

from __future__ import annotations

from collections.abc import Callable

from watcher.feeds.binance import BinanceVenue
from watcher.feeds.book import MarkBook, SymbolStatus, Tick
from watcher.feeds.errors import FeedError, FrameError, PriceRejected
from watcher.feeds.orderly import OrderlyVenue
from watcher.feeds.spec import FeedSpec
from watcher.feeds.venue import ParseResult, Venue

# Venue name (as in configs) -> the class that speaks its wire format.
VENUES: dict[str, Callable[[], Venue]] = {
    OrderlyVenue.name: OrderlyVenue,
    BinanceVenue.name: BinanceVenue,
}


def make_venue(name: str) -> Venue:
    """Return a parser for the venue called ``name``; raise KeyError naming the known ones."""
    try:
        factory = VENUES[name]
    except KeyError:
        raise KeyError(f"unknown venue {name!r}; known: {sorted(VENUES)}") from None
    return factory()


__all__ = [
    "VENUES",
    "BinanceVenue",
    "FeedError",
    "FeedSpec",
    "FrameError",
    "MarkBook",
    "OrderlyVenue",
    "ParseResult",
    "PriceRejected",
    "SymbolStatus",
    "Tick",
    "Venue",
    "make_venue",
]
