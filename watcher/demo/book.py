"""Generate a sample book of input messages whose liquidation distances are spread for a demo.

Each account gets a ``balance`` first, then its ``leverage`` and ``position``
updates, with ``seq`` strictly increasing per account (CONTRACT.md). About 70%
of the accounts hold 1-4 CROSS legs over several symbols, longs and shorts;
some of those also hold an ISOLATED position on one of their cross symbols;
the rest hold ISOLATED positions only, with an explicit ``margin``, with the
``leverage`` in the message, or with a prior ``leverage`` update.

Every position or cross account is built backwards from a target distance to
liquidation ``d`` (relative to the current mark, every leg moving against the
account at once) and a leverage ``L``: its collateral is ``1/L`` of its entry
notional and its entry prices are shifted against it until the account is
exactly at health zero with every mark moved by ``d``. The mix of ``d`` puts
about one position in sixteen within 1.5% of liquidation, so a random walk
of a few tenths of a percent a second (with a sharp move of a few percent now
and then) liquidates a steady trickle from the first seconds on, and the bulk
further out keeps it going for many minutes. Measured on 1,500 accounts
(~3,500 positions) against ``watcher.demo.sim.walk.PriceWalk`` stepping every
second (volatility 0.002, jumps of ~3% with probability 0.005): ~140
liquidations in the first minute, then 5-130 a minute for ten minutes, with
no position re-opened.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from pathlib import Path

from state.margin import maintenance
from state.models import (
    Bracket,
    BracketsModel,
    FlatModel,
    MaintenanceModel,
    MarginMode,
    Market,
    OrderlyModel,
)

Message = dict[str, object]

_D = Decimal
_CENT = _D("0.01")
# Entry prices stay within this relative distance of the current mark.
_MAX_ENTRY_OFFSET = _D("0.06")
# Extra relative scatter of each cross leg's entry around the common shift.
_LEG_NOISE_BPS = 50
_LEVERAGES = range(2, 51)
# Target distance to liquidation, in basis points of the mark: (weight, low, high).
_DISTANCE_MIX = ((6, 20, 150), (24, 150, 600), (40, 600, 1500), (30, 1500, 3000))
_NOTIONAL_MIN = _D(100)
_NOTIONAL_MAX = _D(200_000)
# Share of accounts: CROSS legs (the rest ISOLATED only); of those, also an ISOLATED
# position on one of their cross symbols.
_CROSS_SHARE = 0.7
_BOTH_MODES_SHARE = 0.25


def demo_markets() -> dict[str, Market]:
    """Return the demo's markets: three Orderly-model, two flat and one brackets market."""
    brackets = BracketsModel(
        (
            Bracket(_D(0), _D("0.01"), _D(0)),
            Bracket(_D(50_000), _D("0.015"), _D(250)),
            Bracket(_D(250_000), _D("0.025"), _D(2_750)),
        )
    )
    models: dict[str, MaintenanceModel] = {
        "PERP_BTC_USDC": OrderlyModel(_D("0.01"), _D("0.006"), _D("0.000000091")),
        "PERP_ETH_USDC": OrderlyModel(_D("0.01"), _D("0.006"), _D("0.0000001724")),
        "PERP_SOL_USDC": OrderlyModel(_D("0.01"), _D("0.006"), _D("0.0000010667")),
        "PERP_DOGE_USDC": FlatModel(_D("0.01")),
        "PERP_XRP_USDC": FlatModel(_D("0.01")),
        "PERP_BNB_USDC": brackets,
    }
    return {symbol: Market(symbol, model) for symbol, model in models.items()}


def demo_marks() -> dict[str, Decimal]:
    """Return a realistic starting mark for every demo market."""
    return {
        "PERP_BTC_USDC": _D("97000"),
        "PERP_ETH_USDC": _D("3400"),
        "PERP_SOL_USDC": _D("195"),
        "PERP_DOGE_USDC": _D("0.33"),
        "PERP_XRP_USDC": _D("2.4"),
        "PERP_BNB_USDC": _D("690"),
    }


@dataclass(frozen=True, slots=True)
class _Leg:
    """One position being built: its sign, size, current mark and entry scatter."""

    symbol: str
    model: MaintenanceModel
    side: int
    qty: Decimal
    mark: Decimal
    tick: Decimal
    noise: Decimal


@dataclass(frozen=True, slots=True)
class _Built:
    """A solved group of legs: entries and the collateral backing them."""

    entries: tuple[Decimal, ...]
    collateral: Decimal
    leverage: int


def _tick(mark: Decimal) -> Decimal:
    """Return a price tick giving a mark about six significant digits."""
    return _D(1).scaleb(mark.adjusted() - 5)


def _lot(mark: Decimal) -> Decimal:
    """Return a quantity step worth between $1 and $10 at the mark."""
    return _D(1).scaleb(-mark.adjusted())


def _text(value: Decimal) -> str:
    """Write a Decimal as a plain JSON string, never in exponent notation."""
    return format(value, "f")


def _distance(rng: random.Random) -> Decimal:
    """Draw a target distance to liquidation as a fraction of the mark."""
    weights = [w for w, _, _ in _DISTANCE_MIX]
    _, low, high = rng.choices(_DISTANCE_MIX, weights=weights)[0]
    return _D(rng.randint(low, high)).scaleb(-4)


def _notional(rng: random.Random) -> Decimal:
    """Draw a notional between $100 and $200k, spread about evenly over its orders of magnitude."""
    while True:
        value = _D(rng.randint(100, 999)) * _D(10) ** rng.randint(0, 3)
        if value <= _NOTIONAL_MAX:
            return value


def _leg(
    rng: random.Random, symbol: str, model: MaintenanceModel, mark: Decimal, *, noise: bool
) -> _Leg:
    """Draw one leg's side and size on ``symbol``."""
    lot = _lot(mark)
    qty = max(lot, (_notional(rng) / mark).quantize(lot, rounding=ROUND_DOWN))
    while qty * mark < _NOTIONAL_MIN:
        qty += lot
    scatter = rng.randint(-_LEG_NOISE_BPS, _LEG_NOISE_BPS) if noise else 0
    return _Leg(symbol, model, rng.choice((1, -1)), qty, mark, _tick(mark), _D(scatter).scaleb(-4))


@dataclass(frozen=True, slots=True)
class _Stress:
    """Sums over a group of legs, fixed once the legs and the distance are drawn.

    Entries are ``mark * (1 + side * (c + noise))`` and the collateral is a
    share ``f`` of the entry notional. Health at the marks moved by the
    distance ``d`` against every leg is then linear in ``c``:
    ``f * (A + c * S + W_s) - A * d - c * A - W - MM* = 0`` with ``A`` the
    notional at the marks, ``S`` its signed sum, ``W`` and ``W_s`` the noise
    weighted by notional (plain and signed) and ``MM*`` the maintenance at the
    moved marks.
    """

    notional: Decimal
    signed: Decimal
    noise: Decimal
    signed_noise: Decimal
    stressed_mm: Decimal
    distance: Decimal

    @classmethod
    def of(cls, legs: Sequence[_Leg], distance: Decimal) -> _Stress:
        """Sum up ``legs`` for a target ``distance``."""
        zero = _D(0)
        return cls(
            notional=sum((leg.qty * leg.mark for leg in legs), zero),
            signed=sum((leg.side * leg.qty * leg.mark for leg in legs), zero),
            noise=sum((leg.qty * leg.mark * leg.noise for leg in legs), zero),
            signed_noise=sum((leg.side * leg.qty * leg.mark * leg.noise for leg in legs), zero),
            stressed_mm=sum(
                (
                    maintenance(leg.model, leg.qty * leg.mark * (1 - leg.side * distance))
                    for leg in legs
                ),
                zero,
            ),
            distance=distance,
        )

    def shift(self, share: Decimal) -> Decimal:
        """Return the common adverse entry shift ``c`` for a collateral ``share`` of notional."""
        numerator = (
            self.notional * self.distance
            + self.noise
            + self.stressed_mm
            - share * (self.notional + self.signed_noise)
        )
        return numerator / (share * self.signed - self.notional)


def _build(rng: random.Random, legs: Sequence[_Leg], distance: Decimal, topup: Decimal) -> _Built:
    """Pick a leverage that keeps every entry near its mark and price the legs with it."""
    stress = _Stress.of(legs, distance)
    feasible: list[tuple[int, Decimal]] = []
    best: tuple[Decimal, int, Decimal] | None = None
    for leverage in _LEVERAGES:
        shift = stress.shift((1 + topup) / leverage)
        worst = max(abs(shift + leg.noise) for leg in legs)
        if worst <= _MAX_ENTRY_OFFSET:
            feasible.append((leverage, shift))
        if best is None or worst < best[0]:
            best = (worst, leverage, shift)
    assert best is not None
    leverage, shift = rng.choice(feasible) if feasible else (best[1], best[2])
    entries = tuple(
        (leg.mark * (1 + leg.side * (shift + leg.noise))).quantize(leg.tick, ROUND_HALF_EVEN)
        for leg in legs
    )
    entry_notional = sum((leg.qty * e for leg, e in zip(legs, entries, strict=True)), _D(0))
    collateral = (entry_notional * (1 + topup) / leverage).quantize(_CENT)
    return _Built(entries, collateral, leverage)


class _Account:
    """Collects one account's messages and numbers them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: list[Message] = []

    def add(self, kind: str, **fields: object) -> None:
        """Append a message of ``kind`` with the next seq."""
        seq = len(self.messages) + 1
        self.messages.append({"type": kind, "account": self.name, **fields, "seq": seq})

    def position(self, leg: _Leg, mode: MarginMode, entry: Decimal, **extra: object) -> None:
        """Append a position update for ``leg``."""
        self.add(
            "position",
            symbol=leg.symbol,
            margin_mode=mode.value,
            qty=_text(leg.side * leg.qty),
            entry_price=_text(entry),
            **extra,
        )


def _isolated(rng: random.Random, account: _Account, leg: _Leg) -> None:
    """Add one ISOLATED position, margined one of the three ways the contract allows."""
    style = rng.randrange(3)
    topup = _D(rng.choice((0, 0, 10, 25))).scaleb(-2) if style == 0 else _D(0)
    built = _build(rng, [leg], _distance(rng), topup)
    entry = built.entries[0]
    leverage = _text(_D(built.leverage))
    if style == 0:
        account.position(leg, MarginMode.ISOLATED, entry, margin=_text(built.collateral))
    elif style == 1:
        account.position(leg, MarginMode.ISOLATED, entry, leverage=leverage)
    else:
        account.add(
            "leverage", symbol=leg.symbol, margin_mode=MarginMode.ISOLATED.value, leverage=leverage
        )
        account.position(leg, MarginMode.ISOLATED, entry)


def _account(
    rng: random.Random,
    name: str,
    markets: Mapping[str, Market],
    marks: Mapping[str, Decimal],
    symbols: Sequence[str],
) -> list[Message]:
    """Draw one account and return its messages in seq order."""
    account = _Account(name)
    if rng.random() < _CROSS_SHARE:
        chosen = rng.sample(symbols, rng.randint(1, min(4, len(symbols))))
        legs = [
            _leg(rng, s, markets[s].maintenance, marks[s], noise=len(chosen) > 1) for s in chosen
        ]
        built = _build(rng, legs, _distance(rng), _D(0))
        account.add("balance", balance=_text(built.collateral))
        for leg, entry in zip(legs, built.entries, strict=True):
            account.position(leg, MarginMode.CROSS, entry)
        if rng.random() < _BOTH_MODES_SHARE:
            s = rng.choice(chosen)
            _isolated(rng, account, _leg(rng, s, markets[s].maintenance, marks[s], noise=False))
    else:
        account.add("balance", balance=_text(_D(rng.randint(0, 5_000))))
        for s in rng.sample(symbols, rng.randint(1, min(2, len(symbols)))):
            _isolated(rng, account, _leg(rng, s, markets[s].maintenance, marks[s], noise=False))
    return account.messages


def generate_book(
    markets: Mapping[str, Market], marks: Mapping[str, Decimal], *, accounts: int, seed: int
) -> list[dict[str, object]]:
    """Return a deterministic sample book: contract input messages for ``accounts`` accounts.

    Only symbols present in both ``markets`` and ``marks`` are used.
    """
    if accounts < 0:
        raise ValueError(f"accounts must be >= 0, got {accounts}")
    symbols = sorted(set(markets) & set(marks))
    if not symbols:
        raise ValueError("no symbol has both a market and a mark")
    for symbol in symbols:
        if not marks[symbol].is_finite() or marks[symbol] <= 0:
            raise ValueError(f"mark of {symbol} must be a finite Decimal > 0, got {marks[symbol]}")
    rng = random.Random(seed)
    width = len(str(max(accounts, 1)))
    book: list[Message] = []
    for i in range(1, accounts + 1):
        book.extend(_account(rng, f"demo-{i:0{width}d}", markets, marks, symbols))
    return book


def write_jsonl(messages: Iterable[Mapping[str, object]], path: Path | str) -> int:
    """Write one JSON object per line to ``path``; return how many lines were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for message in messages:
            f.write(json.dumps(message, separators=(",", ":")) + "\n")
            count += 1
    return count
