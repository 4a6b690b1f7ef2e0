"""Frozen value types shared by every layer: margin modes, positions, markets, marks.

Money is ``Decimal`` everywhere. Every constructor validates its fields and
raises :class:`state.errors.MarginError` naming the bad one, so a value that
exists is a value the margin math can trust.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum
from functools import total_ordering

from state.errors import InputError, MarginError

ZERO = Decimal(0)
ONE = Decimal(1)
# Exponent of the Orderly model: the maintenance rate grows with notional**0.8.
ORDERLY_EXPONENT = Decimal("0.8")


class MarginMode(StrEnum):
    """How a position is margined: with the account's shared balance or its own margin."""

    CROSS = "CROSS"
    ISOLATED = "ISOLATED"


def check_decimal(name: str, value: object) -> Decimal:
    """Return ``value`` if it is a finite Decimal, else raise MarginError naming it."""
    if not isinstance(value, Decimal):
        raise MarginError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise MarginError(f"{name} must be finite, got {value}")
    return value


def check_positive(name: str, value: object) -> Decimal:
    """Return ``value`` if it is a finite Decimal > 0, else raise MarginError naming it."""
    if check_decimal(name, value) <= 0:
        raise MarginError(f"{name} must be > 0, got {value}")
    return value  # type: ignore[return-value]


def check_rate(name: str, value: object) -> Decimal:
    """Return ``value`` if it is a rate in the open interval (0, 1)."""
    if not ZERO < check_decimal(name, value) < ONE:
        raise MarginError(f"{name} must be in (0, 1), got {value}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class FlatModel:
    """Maintenance margin ``notional * rate``."""

    rate: Decimal

    def __post_init__(self) -> None:
        check_rate("rate", self.rate)


@dataclass(frozen=True, slots=True)
class Bracket:
    """One tier: from ``floor`` notional up, maintenance is ``notional * rate - amount``."""

    floor: Decimal
    rate: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class BracketsModel:
    """Tiered maintenance (Binance, Bybit, Hyperliquid): the highest bracket whose floor <= n."""

    brackets: tuple[Bracket, ...]

    def __post_init__(self) -> None:
        if not self.brackets:
            raise MarginError("brackets must hold at least one bracket")
        previous: Bracket | None = None
        for i, b in enumerate(self.brackets):
            where = f"brackets[{i}]"
            check_decimal(f"{where}.floor", b.floor)
            check_rate(f"{where}.rate", b.rate)
            check_decimal(f"{where}.amount", b.amount)
            if previous is None:
                if b.floor != 0:
                    raise MarginError(f"{where}.floor must be 0 (the first bracket), got {b.floor}")
                if b.amount != 0:
                    raise MarginError(
                        f"{where}.amount must be 0 so that maintenance is 0 at notional 0,"
                        f" got {b.amount}"
                    )
            else:
                if b.floor <= previous.floor:
                    raise MarginError(
                        f"{where}.floor must be above the previous floor {previous.floor},"
                        f" got {b.floor}"
                    )
                expected = previous.amount + b.floor * (b.rate - previous.rate)
                if b.amount != expected:
                    raise MarginError(
                        f"{where}.amount must be {expected} for maintenance to be continuous"
                        f" at floor {b.floor}, got {b.amount}"
                    )
            previous = b

    @classmethod
    def from_rates(cls, tiers: Sequence[tuple[Decimal, Decimal]]) -> BracketsModel:
        """Build brackets from (floor, rate) pairs, deriving each amount by continuity."""
        brackets: list[Bracket] = []
        for floor, rate in tiers:
            if brackets:
                prev = brackets[-1]
                amount = prev.amount + check_decimal("floor", floor) * (
                    check_decimal("rate", rate) - prev.rate
                )
            else:
                amount = ZERO
            brackets.append(Bracket(floor, rate, amount))
        return cls(tuple(brackets))


@dataclass(frozen=True, slots=True)
class OrderlyModel:
    """Orderly's model: ``n * max(base_mmr, base_mmr / base_imr * imr_factor * n**0.8)``."""

    base_imr: Decimal
    base_mmr: Decimal
    imr_factor: Decimal
    # base_mmr / base_imr * imr_factor: the coefficient of n**0.8 in the rate.
    k: Decimal = field(init=False, repr=False, compare=False)
    # Below this notional the rate is surely base_mmr (kept a hair under the exact
    # threshold so that the shortcut never skips a dynamic rate that applies).
    base_below: Decimal = field(init=False, repr=False, compare=False)
    # Notional where the dynamic rate takes over: k * n**0.8 == base_mmr.
    threshold: Decimal = field(init=False, repr=False, compare=False)
    # Notional where the marginal maintenance rate 1.8 * k * n**0.8 reaches 1
    # (rounded down): past it a long's value falls as the price rises.
    cap: Decimal = field(init=False, repr=False, compare=False)
    # A long's value at the cap, cap - MM(cap): the most any long can be worth
    # per unit of notional headroom, whatever its qty.
    top_value: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_rate("base_imr", self.base_imr)
        check_rate("base_mmr", self.base_mmr)
        if check_decimal("imr_factor", self.imr_factor) < 0:
            raise MarginError(f"imr_factor must be >= 0, got {self.imr_factor}")
        if self.base_mmr > Decimal("0.5"):
            # Above 1/1.8 the marginal rate would pass 1 right at the threshold.
            raise MarginError(f"base_mmr must be <= 0.5, got {self.base_mmr}")
        if self.base_mmr > self.base_imr:
            raise MarginError(
                f"base_mmr ({self.base_mmr}) must not exceed base_imr ({self.base_imr})"
            )
        with localcontext() as ctx:
            ctx.prec = 40
            k = self.base_mmr / self.base_imr * self.imr_factor
            if k == 0:
                threshold = cap = top_value = Decimal("Infinity")
            else:
                # k * n**0.8 >= base_mmr  <=>  n >= (base_mmr / k) ** 1.25
                threshold = (self.base_mmr / k) ** Decimal("1.25")
                ctx.rounding = ROUND_FLOOR
                cap = (ONE / (Decimal("1.8") * k)) ** Decimal("1.25")
                ctx.rounding = ROUND_HALF_EVEN
                top_value = cap - cap * max(self.base_mmr, k * cap**ORDERLY_EXPONENT)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "base_below", threshold * (ONE - Decimal("1e-20")))
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "cap", cap)
        object.__setattr__(self, "top_value", top_value)


MaintenanceModel = FlatModel | BracketsModel | OrderlyModel


class Tier(StrEnum):
    """Orderly's liquidation tier of a market (docs/margin.md, "Partial liquidation").

    LOW: the account's low-tier positions are transferred together, each in
    proportion to its size; HIGH: each symbol on its own.
    """

    LOW = "low"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class PartialRule:
    """How a market on the orderly model is partially liquidated: its tier, minimum, fees.

    ``min_takeover``: below this notional (of the tier group for LOW, of the
    position for HIGH) the whole is transferred; above it, at least this much.
    ``liquidation_fee``: the rate the liquidated account pays on the notional
    transferred; ``liquidator_fee``: the part of it the liquidator receives.
    """

    tier: Tier
    min_takeover: Decimal
    liquidation_fee: Decimal
    liquidator_fee: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.tier, Tier):
            raise MarginError(f"tier must be low or high, got {self.tier!r}")
        if check_decimal("min_takeover", self.min_takeover) < 0:
            raise MarginError(f"min_takeover must be >= 0, got {self.min_takeover}")
        if not ZERO <= check_decimal("liquidation_fee", self.liquidation_fee) < ONE:
            raise MarginError(f"liquidation_fee must be in [0, 1), got {self.liquidation_fee}")
        if not ZERO <= check_decimal("liquidator_fee", self.liquidator_fee) <= self.liquidation_fee:
            raise MarginError(
                f"liquidator_fee must be in [0, liquidation_fee ({self.liquidation_fee})],"
                f" got {self.liquidator_fee}"
            )


@dataclass(frozen=True, slots=True)
class Market:
    """What liqwatch knows of one symbol: its maintenance model and default margin mode.

    ``partial``: Orderly's partial-liquidation rule, for a market on the
    orderly model only; None: events carry no transfer quantity.
    """

    symbol: str
    maintenance: MaintenanceModel
    default_margin_mode: MarginMode = MarginMode.CROSS
    partial: PartialRule | None = None

    def __post_init__(self) -> None:
        if self.partial is not None and not isinstance(self.maintenance, OrderlyModel):
            raise MarginError("a partial-liquidation rule needs the orderly model")


@dataclass(frozen=True, slots=True)
class Position:
    """One open position; (account, symbol, margin_mode) identifies it.

    ``qty`` is signed (long > 0). ``margin`` is the isolated margin and is only
    set for ISOLATED positions; ``leverage`` is kept for the record.
    """

    account: str
    symbol: str
    margin_mode: MarginMode
    qty: Decimal
    entry_price: Decimal
    margin: Decimal | None = None
    leverage: Decimal | None = None

    def __post_init__(self) -> None:
        check_decimal("qty", self.qty)
        check_positive("entry_price", self.entry_price)
        if self.margin_mode is MarginMode.ISOLATED:
            if self.margin is None:
                raise MarginError("an ISOLATED position needs a margin")
            if check_decimal("margin", self.margin) < 0:
                raise MarginError(f"margin must be >= 0, got {self.margin}")
        elif self.margin is not None:
            raise MarginError("a CROSS position has no margin of its own")
        if self.leverage is not None:
            check_positive("leverage", self.leverage)

    @classmethod
    def trusted(
        cls,
        account: str,
        symbol: str,
        margin_mode: MarginMode,
        qty: Decimal,
        entry_price: Decimal,
        margin: Decimal | None,
        leverage: Decimal | None,
    ) -> Position:
        """Build a position whose fields the caller has already checked (no validation)."""
        self = object.__new__(cls)
        # The slots' own descriptors: what a frozen dataclass's __init__ ends up doing.
        _SET_ACCOUNT(self, account)
        _SET_SYMBOL(self, symbol)
        _SET_MODE(self, margin_mode)
        _SET_QTY(self, qty)
        _SET_ENTRY(self, entry_price)
        _SET_MARGIN(self, margin)
        _SET_LEVERAGE(self, leverage)
        return self

    @property
    def is_long(self) -> bool:
        """Whether the position gains when the price rises."""
        return self.qty > 0


_SET_ACCOUNT = Position.__dict__["account"].__set__
_SET_SYMBOL = Position.__dict__["symbol"].__set__
_SET_MODE = Position.__dict__["margin_mode"].__set__
_SET_QTY = Position.__dict__["qty"].__set__
_SET_ENTRY = Position.__dict__["entry_price"].__set__
_SET_MARGIN = Position.__dict__["margin"].__set__
_SET_LEVERAGE = Position.__dict__["leverage"].__set__


@total_ordering
@dataclass(frozen=True, slots=True)
class Seq:
    """A per-account input sequence number of any size, held as its canonical decimal digits.

    Ordered by length, then digit by digit: never converted to ``int``, so a
    seq of thousands of digits costs what its text costs (Python refuses
    ``int()`` past 4,300 digits, and the conversion grows with the square of
    the length). Redis and the commit script compare it the same way.
    """

    digits: str

    def __post_init__(self) -> None:
        d = self.digits
        if not (d.isascii() and d.isdigit()) or (len(d) > 1 and d[0] == "0"):
            raise InputError(f"seq: must be canonical decimal digits, got {d[:40]!r}")

    @classmethod
    def of(cls, value: int | str) -> Seq:
        """Return the seq of a non-negative int or a string of ASCII digits (leading zeros ok)."""
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not (text.isascii() and text.isdigit()):
            raise InputError(f"seq: must be a non-negative integer, got {str(value)[:40]!r}")
        return cls(text.lstrip("0") or "0")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Seq):
            return NotImplemented
        return (len(self.digits), self.digits) < (len(other.digits), other.digits)

    def __str__(self) -> str:
        return self.digits


@dataclass(frozen=True, slots=True)
class MarkPrice:
    """A validated mark: venue timestamp orders ticks, receive time measures freshness.

    ``source`` names the feed it came from: venue timestamps are only
    comparable between marks of one source.
    """

    symbol: str
    price: Decimal
    venue_ts: int
    recv_ts: float
    source: str = ""
