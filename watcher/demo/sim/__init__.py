"""Simulated venues: real websocket servers on loopback speaking each venue's format.

Used by the tests (to break feeds on purpose) and by ``liqwatch demo`` (to
move prices with a seeded random walk). Never started by the daemon itself.
"""

from __future__ import annotations

from watcher.demo.sim.binance import BinanceMarkServer
from watcher.demo.sim.bybit import BybitMarkServer
from watcher.demo.sim.dydx import DydxMarkServer
from watcher.demo.sim.hyperliquid import HyperliquidMarkServer
from watcher.demo.sim.okx import OkxMarkServer
from watcher.demo.sim.orderly import OrderlyMarkServer
from watcher.demo.sim.walk import PriceWalk

__all__ = [
    "BinanceMarkServer",
    "BybitMarkServer",
    "DydxMarkServer",
    "HyperliquidMarkServer",
    "OkxMarkServer",
    "OrderlyMarkServer",
    "PriceWalk",
]
