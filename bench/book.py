"""The benchmarks' book: N positions over 20 symbols, drawn by the one book generator.

- 20 markets: BTC, ETH and SOL on Orderly's own model with the parameters of
  docs/margin.md, BNB, XRP and DOGE on brackets (base 1%, 2% from $100k, 5%
  from $500k), the other 14 flat at 2.5% (5% for three of them). Positions
  are spread over them by weight, BTC and ETH heaviest, as on a real venue.
- 70% of the positions are CROSS legs of accounts holding 1 to 6 of them (on
  distinct symbols, longs and shorts); 30% are ISOLATED, a third of those in
  a cross account on one of its cross symbols (both modes on one symbol), the
  rest in accounts of 1 to 3 isolated positions.
- Notionals are log-uniform from $100 to $1M (so some Orderly positions are
  past the threshold where the numeric solve is needed), entries within 3%
  of the mark, leverage up to each market's maximum.
- Every account and isolated position is healthy at the start, its distance
  to liquidation (every leg moving against it at once) drawn from 0.3% to
  50%, so a random walk liquidates a steady share of the book.

See :mod:`watcher.demo.book` for how collateral is solved from a distance.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from state.models import BracketsModel, FlatModel, MaintenanceModel, Market, OrderlyModel
from watcher.demo.book import Account, Book, MarketSpec, Shape, generate

__all__ = ["SYMBOLS", "Account", "Book", "generate_book", "markets", "models", "start_marks"]

D = Decimal

_BRACKETS = BracketsModel.from_rates(
    [(D(0), D("0.01")), (D(100_000), D("0.02")), (D(500_000), D("0.05"))]
)
_FLAT = FlatModel(D("0.025"))
_FLAT_WIDE = FlatModel(D("0.05"))
# symbol, model, starting mark, weight (share of positions), max leverage.
_TABLE: tuple[tuple[str, MaintenanceModel, str, float, int], ...] = (
    ("PERP_BTC_USDC", OrderlyModel(D("0.01"), D("0.006"), D("0.000000091")), "97000", 25, 50),
    ("PERP_ETH_USDC", OrderlyModel(D("0.01"), D("0.006"), D("0.0000001724")), "3400", 18, 50),
    ("PERP_SOL_USDC", OrderlyModel(D("0.01"), D("0.006"), D("0.0000010667")), "195", 8, 50),
    ("PERP_BNB_USDC", _BRACKETS, "690", 4, 50),
    ("PERP_XRP_USDC", _BRACKETS, "2.4", 4, 50),
    ("PERP_DOGE_USDC", _BRACKETS, "0.33", 4, 50),
    ("PERP_ADA_USDC", _FLAT, "0.98", 3, 20),
    ("PERP_AVAX_USDC", _FLAT, "38.5", 3, 20),
    ("PERP_LINK_USDC", _FLAT, "24.1", 3, 20),
    ("PERP_DOT_USDC", _FLAT, "7.2", 3, 20),
    ("PERP_LTC_USDC", _FLAT, "105.3", 3, 20),
    ("PERP_NEAR_USDC", _FLAT, "5.31", 3, 20),
    ("PERP_SUI_USDC", _FLAT, "4.12", 3, 20),
    ("PERP_APT_USDC", _FLAT, "9.43", 3, 20),
    ("PERP_ARB_USDC", _FLAT, "0.781", 3, 20),
    ("PERP_OP_USDC", _FLAT, "2.14", 3, 20),
    ("PERP_TRX_USDC", _FLAT, "0.251", 3, 20),
    ("PERP_TON_USDC", _FLAT_WIDE, "5.62", 2, 10),
    ("PERP_WIF_USDC", _FLAT_WIDE, "2.31", 2, 10),
    ("PERP_1000PEPE_USDC", _FLAT_WIDE, "0.0193", 2, 10),
)
SPECS = tuple(
    MarketSpec(Market(symbol, model), D(mark), weight, max_leverage)
    for symbol, model, mark, weight, max_leverage in _TABLE
)
SYMBOLS = tuple(s.symbol for s in SPECS)
SHAPE = Shape(
    cross_legs=(1, 6),
    isolated_per_account=(1, 3),
    notional=(100.0, 1_000_000.0),
    distances=((20, 30, 300), (40, 300, 1500), (40, 1500, 5000)),
)


def generate_book(n: int, *, seed: int = 1) -> Book:
    """Generate a book of about ``n`` positions (the last account may add a few)."""
    return generate(SPECS, SHAPE, seed=seed, positions=n)


def markets() -> dict[str, Market]:
    """Every market of the book, keyed by symbol."""
    return {s.symbol: s.market for s in SPECS}


def models() -> Mapping[str, MaintenanceModel]:
    """Every market's maintenance model."""
    return {s.symbol: s.market.maintenance for s in SPECS}


def start_marks() -> dict[str, Decimal]:
    """The marks the book is built at."""
    return {s.symbol: s.mark for s in SPECS}
