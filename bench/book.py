"""A realistic book for the benchmarks: N positions over 20 symbols, as contract input messages.

- 20 markets: BTC, ETH and SOL on Orderly's own model with the parameters of
  MARGIN.md, BNB, XRP and DOGE on brackets (base 1%, 2% from $100k, 5% from
  $500k), the other 14 flat at 2.5% (5% for three of them). Positions are
  spread over them by weight, BTC and ETH heaviest, as on a real venue.
- 70% of the positions are CROSS legs of accounts holding 1 to 6 of them (on
  distinct symbols, longs and shorts); 30% are ISOLATED, a third of those in
  a cross account on one of its cross symbols (both modes on one symbol), the
  rest in accounts of 1 to 3 isolated positions.
- Notionals are log-uniform from $100 to $1M (so some Orderly positions are
  past the threshold where the numeric solve is needed), leverage 2x to 50x
  (capped by the market's maximum), entries within 3% of the mark.
- Every position and account is healthy at the starting marks, with at least
  0.1% to 1% of its notional to spare; the margin ratio then spreads from
  there to 50%, so a random walk liquidates a steady share of the book.

The book is a list of ``msg`` payloads (JSON bytes, CONTRACT.md "Input"), in
seq order per account (balance first), and the same book in memory as
:class:`state.models.Position` objects for the full-recompute baseline. Same
seed, same book.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

import orjson

from state import margin
from state.models import (
    BracketsModel,
    FlatModel,
    MaintenanceModel,
    MarginMode,
    Market,
    OrderlyModel,
    Position,
)

D = Decimal
CENT = D("0.01")

# symbol, model, starting mark, weight (share of positions), max leverage.
_BRACKETS = BracketsModel.from_rates(
    [(D(0), D("0.01")), (D(100_000), D("0.02")), (D(500_000), D("0.05"))]
)
_FLAT = FlatModel(D("0.025"))
_FLAT_WIDE = FlatModel(D("0.05"))
SPECS: tuple[tuple[str, MaintenanceModel, Decimal, float, int], ...] = (
    ("PERP_BTC_USDC", OrderlyModel(D("0.01"), D("0.006"), D("0.000000091")), D("97000"), 25, 50),
    ("PERP_ETH_USDC", OrderlyModel(D("0.01"), D("0.006"), D("0.0000001724")), D("3400"), 18, 50),
    ("PERP_SOL_USDC", OrderlyModel(D("0.01"), D("0.006"), D("0.0000010667")), D("195"), 8, 50),
    ("PERP_BNB_USDC", _BRACKETS, D("690"), 4, 50),
    ("PERP_XRP_USDC", _BRACKETS, D("2.4"), 4, 50),
    ("PERP_DOGE_USDC", _BRACKETS, D("0.33"), 4, 50),
    ("PERP_ADA_USDC", _FLAT, D("0.98"), 3, 20),
    ("PERP_AVAX_USDC", _FLAT, D("38.5"), 3, 20),
    ("PERP_LINK_USDC", _FLAT, D("24.1"), 3, 20),
    ("PERP_DOT_USDC", _FLAT, D("7.2"), 3, 20),
    ("PERP_LTC_USDC", _FLAT, D("105.3"), 3, 20),
    ("PERP_NEAR_USDC", _FLAT, D("5.31"), 3, 20),
    ("PERP_SUI_USDC", _FLAT, D("4.12"), 3, 20),
    ("PERP_APT_USDC", _FLAT, D("9.43"), 3, 20),
    ("PERP_ARB_USDC", _FLAT, D("0.781"), 3, 20),
    ("PERP_OP_USDC", _FLAT, D("2.14"), 3, 20),
    ("PERP_TRX_USDC", _FLAT, D("0.251"), 3, 20),
    ("PERP_TON_USDC", _FLAT_WIDE, D("5.62"), 2, 10),
    ("PERP_WIF_USDC", _FLAT_WIDE, D("2.31"), 2, 10),
    ("PERP_1000PEPE_USDC", _FLAT_WIDE, D("0.0193"), 2, 10),
)
SYMBOLS = tuple(s for s, *_ in SPECS)
_WEIGHTS = [w for *_, w, _ in SPECS]
_MAX_LEV = {s: lev for s, *_, lev in SPECS}

CROSS_SHARE = 0.7
# Of the isolated positions, the share held in a cross account on one of its cross symbols.
BOTH_MODES_SHARE = 1 / 3
NOTIONAL_RANGE = (100.0, 1_000_000.0)
ENTRY_SPREAD = 0.03
# Health at the starting marks is at least this share of the notional (drawn per account).
MIN_SPARE = (0.001, 0.01)
_ISO_PER_CROSS_LEG = (1 - CROSS_SHARE) * BOTH_MODES_SHARE / CROSS_SHARE


def markets() -> dict[str, Market]:
    """Every market of the book, keyed by symbol."""
    return {s: Market(s, model) for s, model, *_ in SPECS}


def models() -> dict[str, MaintenanceModel]:
    """Every market's maintenance model."""
    return {s: model for s, model, *_ in SPECS}


def start_marks() -> dict[str, Decimal]:
    """The marks the book is built at."""
    return {s: mark for s, _, mark, *_ in SPECS}


@dataclass(slots=True)
class Account:
    """One account of the book as the daemon will hold it after applying its messages."""

    name: str
    balance: Decimal
    cross: list[Position] = field(default_factory=list)
    isolated: list[Position] = field(default_factory=list)


@dataclass(slots=True)
class Book:
    """The generated book: its input messages and the same accounts in memory."""

    seed: int
    messages: list[bytes]
    accounts: list[Account]

    @property
    def positions(self) -> int:
        """How many open positions the book holds."""
        return sum(len(a.cross) + len(a.isolated) for a in self.accounts)

    @property
    def cross_accounts(self) -> int:
        """How many accounts hold at least one cross leg."""
        return sum(1 for a in self.accounts if a.cross)

    def summary(self) -> dict[str, int]:
        """Counts that describe the book."""
        cross_legs = sum(len(a.cross) for a in self.accounts)
        return {
            "positions": self.positions,
            "accounts": len(self.accounts),
            "cross_accounts": self.cross_accounts,
            "cross_legs": cross_legs,
            "isolated_positions": self.positions - cross_legs,
            "both_modes_on_one_symbol": sum(
                1
                for a in self.accounts
                if {p.symbol for p in a.cross} & {p.symbol for p in a.isolated}
            ),
            "messages": len(self.messages),
        }


class _Draw:
    """Per-symbol constants and the random draws of one book."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.models = models()
        self.marks = start_marks()
        # A lot worth $1-$10 and a price tick of about six significant digits.
        self.lot = {s: D(1).scaleb(-m.adjusted()) for s, m in self.marks.items()}
        self.tick = {s: D(1).scaleb(m.adjusted() - 5) for s, m in self.marks.items()}
        self.mark_f = {s: float(m) for s, m in self.marks.items()}

    def symbols(self, k: int) -> list[str]:
        """Draw k distinct symbols by weight."""
        chosen: list[str] = []
        while len(chosen) < k:
            s = self.rng.choices(SYMBOLS, weights=_WEIGHTS)[0]
            if s not in chosen:
                chosen.append(s)
        return chosen

    def qty(self, symbol: str, side: int) -> Decimal:
        """A signed quantity of a log-uniform notional, in whole lots."""
        lo, hi = NOTIONAL_RANGE
        notional = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
        lot = self.lot[symbol]
        lots = max(1, round(notional / self.mark_f[symbol] / float(lot)))
        return side * lots * lot

    def entry(self, symbol: str, adverse: float, side: int) -> Decimal:
        """An entry price ``adverse`` (relative) on the losing side of the mark, on the tick."""
        tick = self.tick[symbol]
        price = self.mark_f[symbol] * (1 + side * adverse)
        return max(1, round(price / float(tick))) * tick

    def adverse(self) -> float:
        return self.rng.uniform(-ENTRY_SPREAD, ENTRY_SPREAD)

    def leverage(self, symbols: list[str]) -> int:
        cap = min(_MAX_LEV[s] for s in symbols)
        return min(cap, self.rng.randint(2, 50))

    def spare(self) -> Decimal:
        lo, hi = MIN_SPARE
        return D(repr(round(math.exp(self.rng.uniform(math.log(lo), math.log(hi))), 6)))


def _text(value: Decimal) -> str:
    return format(value, "f")


class _Messages:
    """One account's messages, numbered."""

    def __init__(self, name: str, out: list[bytes]) -> None:
        self.name = name
        self.out = out
        self.seq = 0

    def add(self, kind: str, **fields: str) -> None:
        self.seq += 1
        msg = {"type": kind, "account": self.name, **fields, "seq": self.seq}
        # A copy: orjson hands back its whole 4 kB output buffer, 40x the message.
        self.out.append(memoryview(orjson.dumps(msg)).tobytes())


def _cross_legs(draw: _Draw, name: str, k: int) -> tuple[Decimal, list[Position]]:
    """Draw k cross legs and a balance that leaves the account healthy at the marks."""
    symbols = draw.symbols(k)
    legs = []
    for s in symbols:
        side = draw.rng.choice((1, -1))
        legs.append(
            Position(
                name, s, MarginMode.CROSS, draw.qty(s, side), draw.entry(s, draw.adverse(), side)
            )
        )
    lev = draw.leverage(symbols)
    entry_notional = sum((abs(p.qty) * p.entry_price for p in legs), D(0))
    balance = (entry_notional / lev).quantize(CENT, ROUND_CEILING)
    state = margin.evaluate_cross(balance, legs, draw.models, draw.marks)
    floor = state.notional * draw.spare()
    if state.health < floor:
        balance = (balance + floor - state.health).quantize(CENT, ROUND_CEILING)
    return balance, legs


def _isolated(draw: _Draw, name: str, symbol: str) -> tuple[Position, str]:
    """Draw one healthy isolated position; return it and how its margin is given."""
    model = draw.models[symbol]
    mark = draw.marks[symbol]
    side = draw.rng.choice((1, -1))
    qty = draw.qty(symbol, side)
    lev = draw.leverage([symbol])
    adverse = draw.adverse()
    spare = draw.spare()
    while True:
        entry = draw.entry(symbol, adverse, side)
        m = margin.isolated_margin_from_leverage(qty, entry, D(lev))
        style = draw.rng.choice(("margin", "leverage", "prior"))
        if style == "margin":
            m = m.quantize(CENT, ROUND_CEILING)
        pos = Position(name, symbol, MarginMode.ISOLATED, qty, entry, m, D(lev))
        if margin.isolated_health(pos, mark, model) >= abs(qty) * mark * spare:
            return pos, style
        # Too close: enter on the winning side of the mark, then lower the leverage.
        if adverse > -0.005:
            adverse = draw.rng.uniform(-ENTRY_SPREAD, -0.005)
        else:
            lev = max(2, lev // 2)
            if lev == 2:
                adverse = -ENTRY_SPREAD


def _write_isolated(msgs: _Messages, pos: Position, style: str) -> None:
    fields = {
        "symbol": pos.symbol,
        "margin_mode": "ISOLATED",
        "qty": _text(pos.qty),
        "entry_price": _text(pos.entry_price),
    }
    assert pos.leverage is not None
    assert pos.margin is not None
    lev = _text(pos.leverage)
    if style == "margin":
        msgs.add("position", **fields, margin=_text(pos.margin))
    elif style == "leverage":
        msgs.add("position", **fields, leverage=lev)
    else:
        msgs.add("leverage", symbol=pos.symbol, margin_mode="ISOLATED", leverage=lev)
        msgs.add("position", **fields)


def generate(n: int, *, seed: int = 1) -> Book:
    """Generate a book of about ``n`` positions (the last account may add a few)."""
    draw = _Draw(seed)
    rng = draw.rng
    messages: list[bytes] = []
    accounts: list[Account] = []
    width = max(6, len(str(n)))
    # Decide per account; the mix converges on the shares above.
    cross_legs = iso_in_cross = total = i = 0
    while total < n:
        i += 1
        name = f"a{i:0{width}d}"
        msgs = _Messages(name, messages)
        if total == 0 or cross_legs < CROSS_SHARE * total:
            balance, legs = _cross_legs(draw, name, rng.randint(1, 6))
            acct = Account(name, balance, legs)
            msgs.add("balance", balance=_text(balance))
            for p in legs:
                msgs.add(
                    "position",
                    symbol=p.symbol,
                    margin_mode="CROSS",
                    qty=_text(p.qty),
                    entry_price=_text(p.entry_price),
                )
            cross_legs += len(legs)
            total += len(legs)
            if iso_in_cross < cross_legs * _ISO_PER_CROSS_LEG:
                pos, style = _isolated(draw, name, rng.choice(legs).symbol)
                _write_isolated(msgs, pos, style)
                acct.isolated.append(pos)
                iso_in_cross += 1
                total += 1
        else:
            acct = Account(name, D(rng.randint(0, 5_000)))
            msgs.add("balance", balance=_text(acct.balance))
            for s in draw.symbols(rng.randint(1, 3)):
                pos, style = _isolated(draw, name, s)
                _write_isolated(msgs, pos, style)
                acct.isolated.append(pos)
                total += 1
        accounts.append(acct)
    return Book(seed, messages, accounts)


def health_at(acct: Account, marks: Mapping[str, Decimal]) -> list[Decimal]:
    """Health of the account's cross legs (first, if any) and of each isolated position."""
    ms = models()
    out = []
    if acct.cross:
        out.append(margin.evaluate_cross(acct.balance, acct.cross, ms, marks).health)
    out += [margin.isolated_health(p, marks[p.symbol], ms[p.symbol]) for p in acct.isolated]
    return out
