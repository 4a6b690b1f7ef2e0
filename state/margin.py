"""Exact margin math for ISOLATED positions and CROSS accounts. Pure: no I/O, no clock.

Everything is ``Decimal`` at 40 significant digits. A liquidation price is a
filter bound, so it is rounded *toward the mark*: up for a long (the mark
comes down to it), down for a short. The decision itself is always the health
sign at the current marks (:func:`isolated_health`, :func:`evaluate_cross`).

Notation (MARGIN.md): ``q`` signed qty, ``e`` entry, ``p`` mark,
``n = |q| * p``, ``MM(n)`` the market's maintenance margin. A leg's *value*
is ``g(p) = q * p - MM(|q| * p)``: rising in ``p`` for a long (while the
marginal maintenance rate is below 1), always falling for a short. Then

- ISOLATED health ``h(p) = margin - q * e + g(p)``;
- CROSS health ``H(p) = balance - sum(q_i * e_i) + sum(g_i(p_i))``;

and every price this module returns solves ``g(x) = y`` for one leg.

Trigger bands (DESIGN.md): at marks ``p0`` with ``H0 = H(p0) > 0`` each cross
leg gets a share ``s_i`` of the slack, ``sum(s_i) <= H0``, and its trigger
``t_i`` solves ``g_i(t_i) = g_i(p0_i) - s_i``. While no mark has crossed its
trigger, ``H(p) > H0 - sum(s_i) >= 0``. The slack is shared in proportion to
each leg's notional at ``p0``, which puts every trigger at about the same
relative distance from its mark (exactly the same under one flat rate); a
one-leg account gets all of it, so its trigger is its exact liquidation price.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)

from state.errors import MarginError
from state.models import (
    ONE,
    ORDERLY_EXPONENT,
    ZERO,
    Bracket,
    BracketsModel,
    FlatModel,
    MaintenanceModel,
    MarginMode,
    OrderlyModel,
    Position,
    check_decimal,
    check_positive,
)

PRECISION = 40
_TRAPS = [InvalidOperation, DivisionByZero, Overflow]
_CTX = Context(prec=PRECISION, rounding=ROUND_HALF_EVEN, traps=_TRAPS)
_UP = Context(prec=PRECISION, rounding=ROUND_CEILING, traps=_TRAPS)
_DOWN = Context(prec=PRECISION, rounding=ROUND_FLOOR, traps=_TRAPS)
# The slack handed out as bands is a hair under H0, so that rounding in the
# 40th digit of H0 can never hand out more than the account really has.
_BAND_SAFETY = ONE - Decimal("1e-24")
# Relative half-width of the bracket the numeric solve must verify exactly.
_SOLVE_TOLERANCE = Decimal("1e-13")


@dataclass(frozen=True, slots=True)
class CrossState:
    """An account's cross legs priced at given marks."""

    equity: Decimal
    maintenance: Decimal
    health: Decimal
    notional: Decimal

    @property
    def margin_ratio(self) -> Decimal | None:
        """Equity over total notional (Orderly's margin ratio); None with no open notional."""
        if self.notional == 0:
            return None
        return _CTX.divide(self.equity, self.notional)


def is_liquidatable(health: Decimal, *, at_equality: bool = False) -> bool:
    """Apply the rule: health below zero liquidates; zero only when ``at_equality``."""
    return health < 0 or (at_equality and health == 0)


# --- maintenance -------------------------------------------------------------


def maintenance(model: MaintenanceModel, notional: Decimal) -> Decimal:
    """Return the maintenance margin required at ``notional`` (>= 0)."""
    if check_decimal("notional", notional) < 0:
        raise MarginError(f"notional must be >= 0, got {notional}")
    with localcontext(_CTX):
        return _mm(model, notional)


def maintenance_rate(model: MaintenanceModel, notional: Decimal) -> Decimal:
    """Return the effective maintenance rate ``MM(n) / n`` at a notional > 0."""
    check_positive("notional", notional)
    with localcontext(_CTX):
        return _mm(model, notional) / notional


def orderly_dynamic_term(model: OrderlyModel, notional: Decimal) -> Decimal:
    """Return Orderly's size-dependent rate ``base_mmr / base_imr * imr_factor * n**0.8``."""
    if check_decimal("notional", notional) < 0:
        raise MarginError(f"notional must be >= 0, got {notional}")
    with localcontext(_CTX):
        return model.k * notional**ORDERLY_EXPONENT if notional else ZERO


def _mm(model: MaintenanceModel, n: Decimal) -> Decimal:
    if isinstance(model, FlatModel):
        return n * model.rate
    if isinstance(model, BracketsModel):
        b = _bracket_at(model, n)
        return n * b.rate - b.amount
    if n < model.base_below:
        return n * model.base_mmr
    return n * max(model.base_mmr, model.k * n**ORDERLY_EXPONENT)


def _bracket_at(model: BracketsModel, n: Decimal) -> Bracket:
    chosen = model.brackets[0]
    for b in model.brackets:
        if b.floor > n:
            break
        chosen = b
    return chosen


def _g(q: Decimal, x: Decimal, model: MaintenanceModel) -> Decimal:
    """Value of one leg at price x: q*x - MM(|q|*x). Caller holds a 40-digit context."""
    return q * x - _mm(model, abs(q) * x)


# --- ISOLATED ---------------------------------------------------------------


def isolated_margin_from_leverage(qty: Decimal, entry_price: Decimal, leverage: Decimal) -> Decimal:
    """Return the isolated margin implied by leverage: ``|qty| * entry / leverage``."""
    check_decimal("qty", qty)
    check_positive("entry_price", entry_price)
    check_positive("leverage", leverage)
    with localcontext(_CTX):
        return abs(qty) * entry_price / leverage


def isolated_health(position: Position, mark: Decimal, model: MaintenanceModel) -> Decimal:
    """Return ``margin + qty * (mark - entry) - MM(|qty| * mark)`` for an ISOLATED position."""
    margin = _isolated_margin(position)
    check_positive("mark", mark)
    with localcontext(_CTX):
        q = position.qty
        return margin + q * (mark - position.entry_price) - _mm(model, abs(q) * mark)


def isolated_equity(position: Position, mark: Decimal) -> Decimal:
    """Return margin plus unrealized PnL of an ISOLATED position at ``mark``."""
    margin = _isolated_margin(position)
    check_positive("mark", mark)
    with localcontext(_CTX):
        return margin + position.qty * (mark - position.entry_price)


def isolated_liq_price(position: Position, model: MaintenanceModel) -> Decimal | None:
    """Return the exact liquidation price of an ISOLATED position, rounded toward the mark.

    None when it can never be liquidated (a long whose price would be <= 0).
    """
    margin = _isolated_margin(position)
    q = position.qty
    if q == 0:
        return None
    with localcontext(_CTX):
        return solve_leg(q, model, q * position.entry_price - margin)


def _isolated_margin(position: Position) -> Decimal:
    if position.margin_mode is not MarginMode.ISOLATED or position.margin is None:
        raise MarginError(f"{position.symbol}: not an ISOLATED position")
    return position.margin


# --- one leg: solve g(x) = y --------------------------------------------------


def solve_leg(q: Decimal, model: MaintenanceModel, y: Decimal) -> Decimal | None:
    """Return the price x > 0 where the leg's value ``q*x - MM(|q|*x)`` equals ``y``.

    Rounded toward the side the mark sits on (up for a long, down for a short).
    None for a long that never falls to ``y``; 0 for a short already below it
    at every price.
    """
    check_decimal("qty", q)
    check_decimal("target", y)
    if q == 0:
        raise MarginError("qty must not be 0")
    long = q > 0
    if long and y <= 0:
        return None
    if not long and y >= 0:
        return ZERO
    with localcontext(_CTX):
        if isinstance(model, FlatModel):
            return _linear_root(q, model.rate, ZERO, y)
        if isinstance(model, BracketsModel):
            return _brackets_root(q, model, y)
        return _orderly_root(q, model, y)


def _linear_root(q: Decimal, rate: Decimal, amount: Decimal, y: Decimal) -> Decimal:
    # Within one bracket g(x) = x * (q - |q| * rate) + amount.
    slope = q - abs(q) * rate
    ctx = _UP if q > 0 else _DOWN
    return ctx.divide(y - amount, slope)


def _brackets_root(q: Decimal, model: BracketsModel, y: Decimal) -> Decimal:
    aq = abs(q)
    long = q > 0
    chosen = model.brackets[0]
    for b in model.brackets[1:]:
        # g at this bracket's floor; g is continuous and monotone, so the root
        # lies in the highest bracket whose floor value is not past y.
        x_floor = b.floor / aq
        g_floor = x_floor * (q - aq * b.rate) + b.amount
        if (g_floor <= y) if long else (g_floor >= y):
            chosen = b
        else:
            break
    return _linear_root(q, chosen.rate, chosen.amount, y)


def _orderly_root(q: Decimal, model: OrderlyModel, y: Decimal) -> Decimal:
    candidate = _linear_root(q, model.base_mmr, ZERO, y)
    if abs(q) * candidate < model.base_below:
        # Below the dynamic threshold the model is exactly flat at base_mmr.
        return candidate
    return _numeric_root(q, model, y, candidate)


def _numeric_root(q: Decimal, model: OrderlyModel, y: Decimal, flat_root: Decimal) -> Decimal:
    """Solve g(x) = y above Orderly's threshold: a float bisection, then an exact bracket check."""
    aq = abs(q)
    long = q > 0
    threshold_x = (model.base_mmr / model.k) ** Decimal("1.25") / aq
    if long:
        # MM >= base rate, so g lies under its flat-rate line: the root is above
        # the flat root and below the top of g, where the marginal rate hits 1.
        cap_x = (ONE / (Decimal("1.8") * model.k)) ** Decimal("1.25") / aq
        if _g(q, cap_x, model) < y:
            raise MarginError(
                f"long of {q} never recovers to {y}: beyond the orderly model's monotone range"
                f" (notional above {cap_x * aq:.0f}, where the marginal maintenance rate is 1)"
            )
        lo, hi = flat_root, cap_x
    else:
        lo, hi = min(threshold_x, flat_root), flat_root
    x = Decimal(repr(_float_bisect(q, model, y, lo, hi)))
    width = x * _SOLVE_TOLERANCE
    safe, past = (
        (_UP.add(x, width), _DOWN.subtract(x, width))
        if long
        else (
            _DOWN.subtract(x, width),
            _UP.add(x, width),
        )
    )
    if _on_safe_side(q, model, y, safe) and not _on_safe_side(q, model, y, past):
        return safe
    return _decimal_bisect(q, model, y, lo, hi)


def _on_safe_side(q: Decimal, model: MaintenanceModel, y: Decimal, x: Decimal) -> bool:
    return x > 0 and _g(q, x, model) >= y


def _float_bisect(q: Decimal, model: OrderlyModel, y: Decimal, lo: Decimal, hi: Decimal) -> float:
    qf, aq, yf = float(q), abs(float(q)), float(y)
    b, k = float(model.base_mmr), float(model.k)
    a, z = float(lo), float(hi)
    rising = qf > 0
    for _ in range(200):
        mid = (a + z) / 2
        if mid in (a, z):
            break
        n = aq * mid
        above = qf * mid - n * max(b, k * n**0.8) >= yf
        if above == rising:
            z = mid
        else:
            a = mid
    return (a + z) / 2


def _decimal_bisect(
    q: Decimal, model: MaintenanceModel, y: Decimal, lo: Decimal, hi: Decimal
) -> Decimal:
    # Slow path, exact: keep [lo, hi] around the root until it is 1e-13 wide.
    long = q > 0
    lo, hi = min(lo, hi), max(lo, hi)
    while hi - lo > hi * _SOLVE_TOLERANCE:
        mid = (lo + hi) / 2
        if _on_safe_side(q, model, y, mid) == long:
            hi = mid
        else:
            lo = mid
    return hi if long else lo


# --- CROSS -------------------------------------------------------------------


def evaluate_cross(
    balance: Decimal,
    legs: Sequence[Position],
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, Decimal],
) -> CrossState:
    """Price an account's cross legs at ``marks``: equity, maintenance, health, notional."""
    check_decimal("balance", balance)
    with localcontext(_CTX):
        equity = balance
        mm = ZERO
        notional = ZERO
        for leg in legs:
            model, p = _leg_inputs(leg, models, marks)
            n = abs(leg.qty) * p
            equity += leg.qty * (p - leg.entry_price)
            mm += _mm(model, n)
            notional += n
        return CrossState(equity, mm, equity - mm, notional)


def cross_leg_liq_price(
    balance: Decimal,
    legs: Sequence[Position],
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, Decimal],
    symbol: str,
) -> Decimal | None:
    """Return the price of ``symbol``'s leg at which H = 0, every other leg at its mark."""
    state = evaluate_cross(balance, legs, models, marks)
    for leg in legs:
        if leg.symbol == symbol:
            model, p = _leg_inputs(leg, models, marks)
            with localcontext(_CTX):
                return solve_leg(leg.qty, model, _g(leg.qty, p, model) - state.health)
    raise MarginError(f"the account has no cross leg on {symbol}")


def trigger_bands(
    balance: Decimal,
    legs: Sequence[Position],
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, Decimal],
) -> list[Decimal | None]:
    """Return one trigger price per leg, such that H > 0 while no mark has crossed its trigger.

    A long leg is crossed when its mark is <= its trigger, a short leg when it
    is >= its trigger; None means the leg alone cannot lose its share. Needs
    H > 0 at ``marks``.
    """
    state = evaluate_cross(balance, legs, models, marks)
    if state.health <= 0:
        raise MarginError(f"trigger bands need health > 0, got {state.health}")
    with localcontext(_CTX):
        slack = state.health * _BAND_SAFETY
        bands: list[Decimal | None] = []
        for leg in legs:
            model, p = _leg_inputs(leg, models, marks)
            share = _DOWN.divide(_DOWN.multiply(slack, abs(leg.qty) * p), state.notional)
            bands.append(solve_leg(leg.qty, model, _g(leg.qty, p, model) - share))
        return bands


def _leg_inputs(
    leg: Position, models: Mapping[str, MaintenanceModel], marks: Mapping[str, Decimal]
) -> tuple[MaintenanceModel, Decimal]:
    if leg.margin_mode is not MarginMode.CROSS:
        raise MarginError(f"{leg.symbol}: an ISOLATED position is not a cross leg")
    if leg.qty == 0:
        raise MarginError(f"{leg.symbol}: a cross leg needs qty != 0")
    model = models.get(leg.symbol)
    if model is None:
        raise MarginError(f"no maintenance model for {leg.symbol}")
    mark = marks.get(leg.symbol)
    if mark is None:
        raise MarginError(f"no mark for {leg.symbol}")
    return model, check_positive(f"mark of {leg.symbol}", mark)


# --- index scores --------------------------------------------------------------


def index_score(price: Decimal, *, long: bool) -> float:
    """Return the index score of a trigger price: the nearest double on the mark's side.

    Longs are looked at when ``mark <= score``, so their score rounds up;
    shorts when ``mark >= score``, so theirs rounds down. The filter is never late.
    """
    check_decimal("price", price)
    f = float(price)
    exact = Decimal(f)
    if long and exact < price:
        return math.nextafter(f, math.inf)
    if not long and exact > price:
        return math.nextafter(f, -math.inf)
    return f


def mark_bound(mark: Decimal, *, long: bool) -> float:
    """Return the score bound to query a side's index with, so no crossed member is missed.

    Longs whose score >= mark are crossed: query from the double just at or
    below the mark. Shorts whose score <= mark: up to the double at or above it.
    """
    return index_score(mark, long=not long)
