"""Simulated venues: real websocket servers on loopback speaking each venue's format.

Used by the tests (to break feeds on purpose) and by ``liqwatch demo`` (to
move prices with a seeded random walk). Never started by the daemon itself.
"""

from __future__ import annotations

from watcher.sim.binance import BinanceMarkServer
from watcher.sim.bybit import BybitMarkServer
from watcher.sim.dydx import DydxMarkServer
from watcher.sim.hyperliquid import HyperliquidMarkServer
from watcher.sim.okx import OkxMarkServer
from watcher.sim.orderly import OrderlyMarkServer
from watcher.sim.walk import PriceWalk

__all__ = [
    "BinanceMarkServer",
    "BybitMarkServer",
    "DydxMarkServer",
    "HyperliquidMarkServer",
    "OkxMarkServer",
    "OrderlyMarkServer",
    "PriceWalk",
]
