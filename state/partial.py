"""Orderly's partial liquidation: what to transfer so the margin ratio is back at the IMR.

Pure: values in, values out (docs/margin.md, "Partial liquidation"). For an
account (its cross legs) or an isolated position on markets of the orderly
model, at the marks it was liquidated at:

- Positions are grouped by tier: every LOW-tier leg in one group (they are
  transferred together, each reduced by the same fraction, so in proportion
  to its size), every HIGH-tier leg in a group of its own. Each group is a
  claim of its own: transferring that group's quantities alone, the
  liquidation fee paid out of the equity, brings the account's margin ratio
  back to its initial margin ratio.
- The fraction ``x`` of a group solves ``C - x*F = IM(x)``: ``C`` the equity,
  ``F`` the liquidation fee on the whole group, ``IM(x)`` the initial margin
  of what is left (the group's legs at ``(1-x)`` of their notional, the
  others as they are). Below the dynamic threshold ``IM`` is linear in ``x``
  and the root is one division; above it the root is bisected exactly.
- A group whose notional is below its minimum takeover goes whole; above
  it, at least the minimum is transferred. A group that cannot bring the
  ratio back even whole (the fee eats the equity) goes whole too.
- Quantities keep the position's sign and are rounded away from zero to
  :data:`QTY_QUANTUM` (the ratio lands at or just above the IMR, never
  below), and never exceed the position.

Money is ``Decimal`` at 40 significant digits, as in :mod:`state.margin`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import (
    ROUND_CEILING,
    ROUND_HALF_EVEN,
    ROUND_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)

from state import margin
from state.models import (
    ONE,
    ORDERLY_EXPONENT,
    ZERO,
    MaintenanceModel,
    Market,
    OrderlyModel,
    PartialRule,
    Position,
    Tier,
)

# Transfer quantities are rounded away from zero to this many units.
QTY_QUANTUM = Decimal("1e-8")
# Orderly's numbers (its liquidation documentation), the defaults of a market
# on the orderly model: low tier BTC and ETH; fees 0.6% / 0.3% for BTC, ETH
# and SOL, 1.2% / 0.6% for every other market; minimum takeover 10,000 USDC
# in the low tier, 5,000 USDC in the high tier.
LOW_TIER_ASSETS = frozenset({"BTC", "ETH"})
MAJOR_FEE_ASSETS = frozenset({"BTC", "ETH", "SOL"})
MIN_TAKEOVER = {Tier.LOW: Decimal(10_000), Tier.HIGH: Decimal(5_000)}
MAJOR_FEES = (Decimal("0.006"), Decimal("0.003"))
OTHER_FEES = (Decimal("0.012"), Decimal("0.006"))
_QUOTES = ("USDT", "USDC", "USD", "PERP", "SWAP")
# Bisection steps of the fraction where the initial margin rate is dynamic (2**-64 of the range).
_BISECT_STEPS = 64
# The first raise of a fraction whose rounded quantities fall a hair short of the IMR.
_NUDGE = Decimal("1e-15")
# Half-width of the bracket around the float root that two exact values confirm.
_BRACKET = Decimal("1e-12")

_TRAPS = [InvalidOperation, DivisionByZero, Overflow]
_CTX = Context(prec=margin.PRECISION, rounding=ROUND_HALF_EVEN, traps=_TRAPS)
_UP = Context(prec=margin.PRECISION, rounding=ROUND_CEILING, traps=_TRAPS)

# How a group's quantity was set.
RATIO = "ratio"  # the fraction that brings the ratio back to the IMR
MINIMUM = "minimum"  # raised to the minimum takeover
BELOW_MINIMUM = "below_minimum"  # the group's notional is below the minimum: whole
INSUFFICIENT = "insufficient"  # even the whole group does not bring it back: whole
NONE = "none"  # the ratio is at or above the IMR already: nothing


def base_asset(symbol: str) -> str:
    """The base asset a market symbol names: PERP_BTC_USDC, BTCUSDT, BTC-USD-SWAP -> BTC."""
    parts = [p for p in symbol.replace("-", "_").split("_") if p]
    if len(parts) >= 2 and parts[0] == "PERP":
        return parts[1]
    head = parts[0] if parts else symbol
    for quote in _QUOTES:
        if head.endswith(quote) and len(head) > len(quote):
            return head[: -len(quote)]
    return head


def default_rule(symbol: str) -> PartialRule:
    """Orderly's tier, minimum takeover and fees for ``symbol`` (its documentation's numbers)."""
    asset = base_asset(symbol)
    tier = Tier.LOW if asset in LOW_TIER_ASSETS else Tier.HIGH
    fee, liquidator = MAJOR_FEES if asset in MAJOR_FEE_ASSETS else OTHER_FEES
    return PartialRule(tier, MIN_TAKEOVER[tier], fee, liquidator)


# --- initial margin --------------------------------------------------------------


def initial_margin_rate(model: OrderlyModel, notional: Decimal) -> Decimal:
    """Orderly's initial margin rate ``max(base_imr, imr_factor * n**0.8)`` at a notional."""
    with localcontext(_CTX):
        return _imr(model, notional)


def initial_margin(model: OrderlyModel, notional: Decimal) -> Decimal:
    """The initial margin ``n * IMR(n)`` of a position of notional ``n``."""
    with localcontext(_CTX):
        return notional * _imr(model, notional)


def _imr(model: OrderlyModel, n: Decimal) -> Decimal:
    # imr_factor * n**0.8 >= base_imr exactly where the maintenance rate turns
    # dynamic (base_mmr / base_imr cancels out): the model's own threshold.
    if n < model.base_below or n == 0:
        return model.base_imr
    return max(model.base_imr, model.imr_factor * n**ORDERLY_EXPONENT)


# --- the plan --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One position of the liquidated account, its market's model and rule, and its mark."""

    position: Position
    model: OrderlyModel
    rule: PartialRule
    mark: Decimal

    @property
    def symbol(self) -> str:
        """The position's symbol."""
        return self.position.symbol

    @property
    def notional(self) -> Decimal:
        """``|qty| * mark``."""
        return _CTX.multiply(abs(self.position.qty), self.mark)


@dataclass(frozen=True, slots=True)
class LegTransfer:
    """What to transfer of one position: the signed quantity and the fees on it."""

    symbol: str
    tier: Tier
    qty: Decimal
    notional: Decimal
    liquidation_fee: Decimal
    liquidator_fee: Decimal


@dataclass(frozen=True, slots=True)
class GroupTransfer:
    """One claim: a tier group's quantities, the fraction they stand for, and why."""

    tier: Tier
    rule: str
    fraction: Decimal
    legs: tuple[LegTransfer, ...]

    @property
    def liquidation_fee(self) -> Decimal:
        """The account's liquidation fee on this claim (the sum over its legs)."""
        return sum((leg.liquidation_fee for leg in self.legs), ZERO)

    @property
    def liquidator_fee(self) -> Decimal:
        """The liquidator's fee on this claim."""
        return sum((leg.liquidator_fee for leg in self.legs), ZERO)

    @property
    def notional(self) -> Decimal:
        """The notional transferred."""
        return sum((leg.notional for leg in self.legs), ZERO)

    @property
    def qty(self) -> dict[str, Decimal]:
        """Symbol -> signed quantity of this claim."""
        return {leg.symbol: leg.qty for leg in self.legs}


@dataclass(frozen=True, slots=True)
class PartialPlan:
    """The claims of one liquidation and the account they were computed on."""

    equity: Decimal
    initial_margin: Decimal
    notional: Decimal
    groups: tuple[GroupTransfer, ...]

    @property
    def legs(self) -> dict[str, LegTransfer]:
        """Symbol -> the transfer of that position (each symbol is in exactly one group)."""
        return {leg.symbol: leg for group in self.groups for leg in group.legs}


def plan(equity: Decimal, legs: Sequence[Leg]) -> PartialPlan:
    """Compute each tier group's transfer for an account of ``legs`` with ``equity``."""
    with localcontext(_CTX):
        ims = [initial_margin(leg.model, leg.notional) for leg in legs]
        total_im = sum(ims, ZERO)
        groups: list[list[int]] = []
        low = [i for i, leg in enumerate(legs) if leg.rule.tier is Tier.LOW]
        if low:
            groups.append(low)
        groups += [[i] for i, leg in enumerate(legs) if leg.rule.tier is Tier.HIGH]
        out = []
        for group in groups:
            members = [legs[i] for i in group]
            rest = total_im - sum((ims[i] for i in group), ZERO)
            out.append(_group(equity, members, rest))
        notional = sum((leg.notional for leg in legs), ZERO)
        return PartialPlan(equity, total_im, notional, tuple(out))


def plan_cross(
    balance: Decimal,
    legs: Sequence[Position],
    markets: Mapping[str, Market],
    marks: Mapping[str, Decimal],
    *,
    equity: Decimal | None = None,
) -> PartialPlan | None:
    """The transfers of a liquidated cross account; None unless every leg has a partial rule.

    The account's initial margin ratio needs every leg's initial margin, which
    only the orderly model defines: an account with a leg on another model
    gets no plan. ``equity``: the account's equity at ``marks``, if the caller has it.
    """
    built = _legs(legs, markets, marks)
    if built is None:
        return None
    if equity is None:
        models: dict[str, MaintenanceModel] = {leg.symbol: leg.model for leg in built}
        equity = margin.evaluate_cross(balance, legs, models, marks).equity
    return plan(equity, built)


def plan_isolated(position: Position, market: Market, mark: Decimal) -> PartialPlan | None:
    """The transfer of a liquidated isolated position; None without a partial rule."""
    built = _legs([position], {market.symbol: market}, {position.symbol: mark})
    if built is None:
        return None
    return plan(margin.isolated_equity(position, mark), built)


def _legs(
    positions: Sequence[Position], markets: Mapping[str, Market], marks: Mapping[str, Decimal]
) -> list[Leg] | None:
    out = []
    for p in positions:
        market = markets.get(p.symbol)
        mark = marks.get(p.symbol)
        if market is None or market.partial is None or mark is None or p.qty == 0:
            return None
        model = market.maintenance
        if not isinstance(model, OrderlyModel):
            return None
        out.append(Leg(p, model, market.partial, mark))
    return out or None


def _group(equity: Decimal, legs: Sequence[Leg], rest: Decimal) -> GroupTransfer:
    """One group's fraction and quantities; ``rest``: the initial margin of the other legs."""
    tier = legs[0].rule.tier
    notional = sum((leg.notional for leg in legs), ZERO)
    minimum = max(leg.rule.min_takeover for leg in legs)
    fraction, rule = _fraction(equity, legs, rest)
    if rule == NONE:
        pass
    elif rule == INSUFFICIENT:
        fraction = ONE
    elif notional < minimum:
        fraction, rule = ONE, BELOW_MINIMUM
    elif fraction * notional < minimum:
        fraction, rule = min(ONE, _UP.divide(minimum, notional)), MINIMUM
    transfers = _transfers(legs, tier, fraction)
    step = _NUDGE
    while rule == RATIO and fraction < ONE and _left(equity, legs, rest, transfers) < 0:
        # Rounding each leg's quantity up can cost where a leg's fee rate is above
        # its marginal initial margin rate; the group as a whole still gains with
        # x: raise x by a hair until the rounded quantities land on the safe side.
        fraction = min(ONE, fraction + step)
        step *= 10
        transfers = _transfers(legs, tier, fraction)
    return GroupTransfer(tier, rule, fraction, transfers)


def _transfers(legs: Sequence[Leg], tier: Tier, fraction: Decimal) -> tuple[LegTransfer, ...]:
    out = []
    for leg in legs:
        qty = _qty(leg.position.qty, fraction)
        moved = abs(qty) * leg.mark
        out.append(
            LegTransfer(
                leg.symbol,
                tier,
                qty,
                moved,
                moved * leg.rule.liquidation_fee,
                moved * leg.rule.liquidator_fee,
            )
        )
    return tuple(out)


def _left(
    equity: Decimal, legs: Sequence[Leg], rest: Decimal, transfers: Sequence[LegTransfer]
) -> Decimal:
    """Equity less initial margin once ``transfers`` are made and their fees paid."""
    left = equity - rest
    for leg, t in zip(legs, transfers, strict=True):
        remaining = abs(leg.position.qty - t.qty) * leg.mark
        left -= t.liquidation_fee + initial_margin(leg.model, remaining)
    return left


def _fraction(equity: Decimal, legs: Sequence[Leg], rest: Decimal) -> tuple[Decimal, str]:
    """Solve ``h(x) = C - x*F - rest - IM_group(x) = 0`` for the smallest safe ``x``."""
    fee = sum((leg.notional * leg.rule.liquidation_fee for leg in legs), ZERO)
    if equity - fee - rest < 0:
        # h(1): even the whole group leaves the account below its IMR.
        return ONE, INSUFFICIENT

    def h(x: Decimal) -> Decimal:
        left = ONE - x
        im = sum((initial_margin(leg.model, leg.notional * left) for leg in legs), ZERO)
        return equity - x * fee - rest - im

    if h(ZERO) >= 0:
        return ZERO, NONE
    if all(leg.notional < leg.model.base_below for leg in legs):
        # Every leg stays at its base rate as it shrinks: h is linear, h(1) >= 0 > h(0).
        base = sum((leg.notional * leg.model.base_imr for leg in legs), ZERO)
        return min(ONE, _UP.divide(rest + base - equity, base - fee)), RATIO
    # h is concave (the initial margin is convex in the notional), h(0) < 0 <= h(1):
    # one root in (0, 1]. A float bisection finds it; two exact values of h confirm
    # a bracket 2e-12 wide around it, whose upper end is the safe side.
    guess = Decimal(repr(_float_root(equity, legs, rest, fee)))
    lo, hi = max(ZERO, guess - _BRACKET), min(ONE, guess + _BRACKET)
    if h(hi) >= 0 and (lo == 0 or h(lo) < 0):
        return hi, RATIO
    lo, hi = ZERO, ONE
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2
        if h(mid) >= 0:
            hi = mid
        else:
            lo = mid
    return hi, RATIO


def _float_root(equity: Decimal, legs: Sequence[Leg], rest: Decimal, fee: Decimal) -> float:
    """The root of h in floats: a guess that :func:`_fraction` confirms exactly."""
    c, r, f = float(equity), float(rest), float(fee)
    params = [
        (float(leg.notional), float(leg.model.base_imr), float(leg.model.imr_factor))
        for leg in legs
    ]
    a, z = 0.0, 1.0
    for _ in range(200):
        mid = (a + z) / 2
        if mid in (a, z):
            break
        left = 1 - mid
        im = sum(n * left * max(b, k * (n * left) ** 0.8) for n, b, k in params)
        if c - mid * f - r - im >= 0:
            z = mid
        else:
            a = mid
    return z


def _qty(qty: Decimal, fraction: Decimal) -> Decimal:
    """``fraction`` of ``qty``, rounded away from zero to the quantum, at most ``qty``."""
    if fraction >= ONE:
        return qty
    if fraction <= 0:
        return ZERO
    part = (qty * fraction).quantize(QTY_QUANTUM, rounding=ROUND_UP)
    if abs(part) >= abs(qty):
        return qty
    return _plain(part)


def _plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros, written without an exponent."""
    return Decimal(format(value.normalize(), "f"))


# --- after the transfer ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class After:
    """An account once a claim is transferred and its fee paid."""

    equity: Decimal
    initial_margin: Decimal
    notional: Decimal

    @property
    def margin_ratio(self) -> Decimal | None:
        """Equity over notional; None when nothing is left."""
        return None if self.notional == 0 else _CTX.divide(self.equity, self.notional)

    @property
    def initial_margin_ratio(self) -> Decimal | None:
        """Initial margin over notional; None when nothing is left."""
        return None if self.notional == 0 else _CTX.divide(self.initial_margin, self.notional)


def after_transfer(equity: Decimal, legs: Sequence[Leg], group: GroupTransfer) -> After:
    """The account of ``legs`` once ``group`` is transferred at the marks and its fee paid."""
    moved = group.qty
    with localcontext(_CTX):
        im = notional = ZERO
        for leg in legs:
            left = abs(leg.position.qty - moved.get(leg.symbol, ZERO)) * leg.mark
            im += initial_margin(leg.model, left)
            notional += left
        return After(equity - group.liquidation_fee, im, notional)


# --- who gets the fee ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeeSplit:
    """Where a claim's liquidation fee goes.

    ``insurance_takeover``: the account cannot even pay the liquidator's fee;
    its balance and positions go to the insurance fund, which pays the
    liquidator (``to_insurance_fund`` is then what the fund nets: the
    account's equity less that fee, negative when the fund pays out).
    """

    to_liquidator: Decimal
    to_insurance_fund: Decimal
    insurance_takeover: bool


def fee_split(equity: Decimal, liquidation_fee: Decimal, liquidator_fee: Decimal) -> FeeSplit:
    """Split a claim's fee by what the account's equity covers.

    Covers the whole fee: the liquidator gets its fee, the insurance fund the
    rest. Covers only the liquidator's fee: the liquidator gets it and the
    insurance fund what is left of the equity. Not even that: the insurance
    fund takes the account over and pays the liquidator.
    """
    with localcontext(_CTX):
        if equity >= liquidation_fee:
            return FeeSplit(liquidator_fee, liquidation_fee - liquidator_fee, False)
        if equity >= liquidator_fee:
            return FeeSplit(liquidator_fee, equity - liquidator_fee, False)
        return FeeSplit(liquidator_fee, equity - liquidator_fee, True)


def legs_of(
    positions: Sequence[Position], markets: Mapping[str, Market], marks: Mapping[str, Decimal]
) -> list[Leg] | None:
    """The :class:`Leg` of each position (None unless every one has a partial rule)."""
    return _legs(positions, markets, marks)
