"""Generate a book: accounts as input messages, and the same accounts in memory.

The one book generator of liqwatch: ``liqwatch demo`` loads a small one, the
benchmarks (``bench/book.py``) a large one, each with its own markets and
:class:`Shape`. Same seed, same book.

Each account gets a ``balance`` first, then its ``leverage`` and ``position``
updates, ``seq`` rising per account (README, "Input"). Accounts are either
CROSS (1 or more legs over distinct symbols, longs and shorts; some also hold
an ISOLATED position on one of their cross symbols) or ISOLATED only. An
isolated margin is given one of the three ways the contract allows: in the
message, by the message's ``leverage``, or by an earlier ``leverage`` update.

Every cross account and isolated position is built backwards from a target
distance to liquidation ``d`` drawn from ``Shape.distances``: sizes and
entries are drawn first, then the collateral is solved exactly so that
health is zero with every leg's mark moved by ``d`` against it (rounded up
to the cent, so it is healthy there and liquidated just past). So nothing is
liquidatable at the starting marks, and a move of x% liquidates about the
share of the book whose ``d`` is below x.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import orjson

from state.margin import isolated_margin_from_leverage, maintenance
from state.models import (
    Bracket,
    BracketsModel,
    FlatModel,
    MaintenanceModel,
    MarginMode,
    Market,
    OrderlyModel,
    PartialRule,
    Position,
)
from state.partial import default_rule

_D = Decimal
_CENT = _D("0.01")


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market of a book: its starting mark, its share of the positions, its top leverage."""

    market: Market
    mark: Decimal
    weight: float = 1.0
    max_leverage: int = 50

    @property
    def symbol(self) -> str:
        """The market's symbol."""
        return self.market.symbol


@dataclass(frozen=True, slots=True)
class Shape:
    """What a book looks like.

    ``cross_share`` of the positions are cross legs; ``both_modes_share`` of
    the isolated ones sit in a cross account on one of its cross symbols.
    Notionals are log-uniform over ``notional``; entries within
    ``entry_spread`` of the mark, either side. ``distances``: (weight, low,
    high) in basis points of the mark, the target distance to liquidation.
    """

    cross_share: float = 0.7
    both_modes_share: float = 1 / 3
    cross_legs: tuple[int, int] = (1, 4)
    isolated_per_account: tuple[int, int] = (1, 2)
    notional: tuple[float, float] = (100.0, 200_000.0)
    entry_spread: float = 0.03
    distances: tuple[tuple[int, int, int], ...] = (
        (6, 20, 150),
        (24, 150, 600),
        (40, 600, 1500),
        (30, 1500, 3000),
    )


@dataclass(slots=True)
class Account:
    """One account as the daemon will hold it after applying its messages."""

    name: str
    balance: Decimal
    cross: list[Position] = field(default_factory=list)
    isolated: list[Position] = field(default_factory=list)


@dataclass(slots=True)
class Book:
    """A generated book: its input messages (JSON bytes, in order) and its accounts."""

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


def generate(
    specs: Sequence[MarketSpec],
    shape: Shape,
    *,
    seed: int,
    accounts: int | None = None,
    positions: int | None = None,
    prefix: str = "a",
) -> Book:
    """Generate ``accounts`` accounts, or accounts until ``positions`` positions are held."""
    if (accounts is None) == (positions is None):
        raise ValueError("give either accounts or positions")
    if (accounts or 0) < 0 or (positions or 0) < 0:
        raise ValueError(f"accounts and positions must be >= 0, got {accounts}, {positions}")
    if not specs:
        raise ValueError("no market to draw positions on")
    for spec in specs:
        if not spec.mark.is_finite() or spec.mark <= 0:
            raise ValueError(f"mark of {spec.symbol} must be a finite Decimal > 0, got {spec.mark}")
    draw = _Draw(specs, shape, seed)
    book = Book(seed, [], [])
    width = max(4, len(str(accounts if accounts is not None else positions)))
    legs = in_cross = total = 0
    # Per account, the mix converges on the shape's shares.
    iso_per_leg = (1 - shape.cross_share) * shape.both_modes_share / shape.cross_share
    while (len(book.accounts) < accounts) if accounts is not None else (total < (positions or 0)):
        out = _Messages(f"{prefix}{len(book.accounts) + 1:0{width}d}", book.messages)
        if total == 0 or legs < shape.cross_share * total:
            account = draw.cross_account(out)
            legs += len(account.cross)
            if in_cross < legs * iso_per_leg:
                symbol = draw.rng.choice(account.cross).symbol
                account.isolated.append(draw.isolated(out, symbol))
                in_cross += 1
        else:
            account = draw.isolated_account(out)
        total += len(account.cross) + len(account.isolated)
        book.accounts.append(account)
    return book


def write_jsonl(messages: Iterable[bytes], path: Path | str) -> int:
    """Write one message per line to ``path``; return how many lines were written."""
    count = 0
    with Path(path).open("wb") as f:
        for message in messages:
            f.write(message + b"\n")
            count += 1
    return count


def _text(value: Decimal) -> str:
    """Write a Decimal as plain text, never in exponent notation."""
    return format(value, "f")


class _Messages:
    """One account's messages, numbered, appended to the book's list."""

    def __init__(self, name: str, out: list[bytes]) -> None:
        self.name = name
        self.out = out
        self.seq = 0

    def add(self, kind: str, **fields: str) -> None:
        self.seq += 1
        message = {"type": kind, "account": self.name, **fields, "seq": self.seq}
        # A copy: orjson hands back its whole output buffer, many times the message.
        self.out.append(memoryview(orjson.dumps(message)).tobytes())

    def position(self, p: Position, **extra: str) -> None:
        self.add(
            "position",
            symbol=p.symbol,
            margin_mode=p.margin_mode.value,
            qty=_text(p.qty),
            entry_price=_text(p.entry_price),
            **extra,
        )


class _Draw:
    """The random draws of one book, and the collateral solved from them."""

    def __init__(self, specs: Sequence[MarketSpec], shape: Shape, seed: int) -> None:
        self.rng = random.Random(seed)
        self.shape = shape
        self.specs = {s.symbol: s for s in specs}
        self.symbols = [s.symbol for s in specs]
        self.weights = [s.weight for s in specs]
        # A lot worth $1-$10 and a price tick of about six significant digits.
        self.lot = {s.symbol: _D(1).scaleb(-s.mark.adjusted()) for s in specs}
        self.tick = {s.symbol: _D(1).scaleb(s.mark.adjusted() - 5) for s in specs}
        self.distance_weights = [w for w, _, _ in shape.distances]

    def pick(self, k: int) -> list[str]:
        """Draw ``k`` distinct symbols by weight (fewer if there are not that many)."""
        chosen: list[str] = []
        while len(chosen) < min(k, len(self.symbols)):
            symbol = self.rng.choices(self.symbols, weights=self.weights)[0]
            if symbol not in chosen:
                chosen.append(symbol)
        return chosen

    def leg(self, account: str, symbol: str, mode: MarginMode) -> Position:
        """Draw a side, a size and an entry on ``symbol`` (isolated margin still 0)."""
        spec, lot = self.specs[symbol], self.lot[symbol]
        lo, hi = self.shape.notional
        notional = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
        lots = max(1, math.floor(notional / float(spec.mark) / float(lot)))
        while lots * lot * spec.mark < _D(repr(lo)):
            lots += 1
        side = self.rng.choice((1, -1))
        adverse = self.rng.uniform(-self.shape.entry_spread, self.shape.entry_spread)
        tick = self.tick[symbol]
        entry = max(tick, (spec.mark * _D(repr(1 + side * adverse))).quantize(tick))
        margin = _D(0) if mode is MarginMode.ISOLATED else None
        return Position(account, symbol, mode, side * lots * lot, entry, margin)

    def distance(self) -> Decimal:
        """Draw a target distance to liquidation, as a fraction of the mark."""
        _, low, high = self.rng.choices(self.shape.distances, weights=self.distance_weights)[0]
        return _D(self.rng.randint(low, high)).scaleb(-4)

    def stressed(self, legs: Sequence[Position], d: Decimal) -> Decimal:
        """Collateral that leaves ``legs`` at health exactly 0, every mark moved ``d`` against it.

        ``sum(MM_i(|q_i| * x_i)) - sum(q_i * (x_i - e_i))`` with ``x_i`` the moved marks.
        """
        need = _D(0)
        for p in legs:
            spec = self.specs[p.symbol]
            x = spec.mark * (1 - d if p.qty > 0 else 1 + d)
            need += maintenance(spec.market.maintenance, abs(p.qty) * x) - p.qty * (
                x - p.entry_price
            )
        return need

    def cross_account(self, out: _Messages) -> Account:
        """Draw a cross account (balance solved from its distance), and write it."""
        low, high = self.shape.cross_legs
        symbols = self.pick(self.rng.randint(low, high))
        legs = [self.leg(out.name, s, MarginMode.CROSS) for s in symbols]
        balance = max(_D(0), self.stressed(legs, self.distance())).quantize(_CENT, ROUND_CEILING)
        out.add("balance", balance=_text(balance))
        for p in legs:
            out.position(p)
        return Account(out.name, balance, legs)

    def isolated_account(self, out: _Messages) -> Account:
        """Draw an account of isolated positions only (with some cash aside), and write it."""
        balance = _D(self.rng.randint(0, 5_000))
        out.add("balance", balance=_text(balance))
        low, high = self.shape.isolated_per_account
        held = [self.isolated(out, s) for s in self.pick(self.rng.randint(low, high))]
        return Account(out.name, balance, [], held)

    def isolated(self, out: _Messages, symbol: str) -> Position:
        """Draw one isolated position (margin solved from its distance), and write it."""
        drawn = self.leg(out.name, symbol, MarginMode.ISOLATED)
        spec = self.specs[symbol]
        notional = abs(drawn.qty) * drawn.entry_price
        need = self.stressed([drawn], self.distance())
        # The whole-number leverage whose margin is at least what the distance needs.
        leverage = spec.max_leverage if need <= 0 else int(notional / need)
        leverage = min(spec.max_leverage, leverage)
        style = self.rng.randrange(3) if leverage >= 2 else 0
        if style == 0:
            margin = max(need, notional / spec.max_leverage).quantize(_CENT, ROUND_CEILING)
            p = _with_margin(drawn, margin, None)
            out.position(p, margin=_text(margin))
            return p
        lev = _D(leverage)
        # As the daemon derives it from the leverage.
        p = _with_margin(
            drawn, isolated_margin_from_leverage(drawn.qty, drawn.entry_price, lev), lev
        )
        if style == 1:
            out.position(p, leverage=str(leverage))
        else:
            out.add("leverage", symbol=symbol, margin_mode="ISOLATED", leverage=str(leverage))
            out.position(p)
        return p


def _with_margin(p: Position, margin: Decimal, leverage: Decimal | None) -> Position:
    return Position(p.account, p.symbol, p.margin_mode, p.qty, p.entry_price, margin, leverage)


# --- the demo's markets ----------------------------------------------------------------


def demo_specs() -> tuple[MarketSpec, ...]:
    """The demo's six markets: three on Orderly's model, two flat, one on brackets."""
    brackets = BracketsModel(
        (
            Bracket(_D(0), _D("0.01"), _D(0)),
            Bracket(_D(50_000), _D("0.015"), _D(250)),
            Bracket(_D(250_000), _D("0.025"), _D(2_750)),
        )
    )
    models: tuple[tuple[str, MaintenanceModel, str], ...] = (
        ("PERP_BTC_USDC", OrderlyModel(_D("0.01"), _D("0.006"), _D("0.000000091")), "97000"),
        ("PERP_ETH_USDC", OrderlyModel(_D("0.01"), _D("0.006"), _D("0.0000001724")), "3400"),
        ("PERP_SOL_USDC", OrderlyModel(_D("0.01"), _D("0.006"), _D("0.0000010667")), "195"),
        ("PERP_DOGE_USDC", FlatModel(_D("0.01")), "0.33"),
        ("PERP_XRP_USDC", FlatModel(_D("0.01")), "2.4"),
        ("PERP_BNB_USDC", brackets, "690"),
    )
    return tuple(
        MarketSpec(Market(s, model, partial=_partial(s, model)), _D(mark))
        for s, model, mark in models
    )


def _partial(symbol: str, model: MaintenanceModel) -> PartialRule | None:
    """Orderly's partial-liquidation defaults on the orderly model, as the config gives them."""
    return default_rule(symbol) if isinstance(model, OrderlyModel) else None


def demo_markets() -> dict[str, Market]:
    """The demo's markets, keyed by symbol."""
    return {s.symbol: s.market for s in demo_specs()}


def demo_marks() -> dict[str, Decimal]:
    """The demo's starting marks."""
    return {s.symbol: s.mark for s in demo_specs()}


def demo_book(accounts: int, seed: int) -> Book:
    """The demo's book: ``accounts`` accounts on the demo's markets, named ``demo-NNNN``."""
    return generate(demo_specs(), Shape(), seed=seed, accounts=accounts, prefix="demo-")
