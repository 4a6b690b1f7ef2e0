"""Mark-price feeds: venue parsers, the connection task and the mark book.

Everything a venue sends is parsed here, at the edge, into
``state.models.MarkPrice``; nothing downstream knows which venue it came from.
"""

from __future__ import annotations

from collections.abc import Callable

from watcher.feeds.binance import BinanceVenue
from watcher.feeds.book import MarkBook, SymbolStatus, Tick
from watcher.feeds.bybit import BybitVenue
from watcher.feeds.dydx import DydxVenue
from watcher.feeds.errors import FeedError, FrameError, PriceRejected
from watcher.feeds.hyperliquid import HyperliquidVenue
from watcher.feeds.okx import OkxVenue
from watcher.feeds.orderly import OrderlyVenue
from watcher.feeds.spec import FeedSpec
from watcher.feeds.venue import ParseResult, Venue

# Venue name (as in configs) -> the class that speaks its wire format.
VENUES: dict[str, Callable[[], Venue]] = {
    OrderlyVenue.name: OrderlyVenue,
    BinanceVenue.name: BinanceVenue,
    BybitVenue.name: BybitVenue,
    OkxVenue.name: OkxVenue,
    HyperliquidVenue.name: HyperliquidVenue,
    DydxVenue.name: DydxVenue,
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
    "BybitVenue",
    "DydxVenue",
    "FeedError",
    "FeedSpec",
    "FrameError",
    "HyperliquidVenue",
    "MarkBook",
    "OkxVenue",
    "OrderlyVenue",
    "ParseResult",
    "PriceRejected",
    "SymbolStatus",
    "Tick",
    "Venue",
    "make_venue",
]
