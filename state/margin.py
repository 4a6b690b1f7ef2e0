"""Exact margin math for ISOLATED positions and CROSS accounts. Pure: no I/O, no clock.

Everything is ``Decimal`` at 40 significant digits. A liquidation price is a
filter bound, so it is rounded *toward the mark*: up for a long (the mark
comes down to it), down for a short. The decision itself is always the health
sign at the current marks (:func:`isolated_health`, :func:`evaluate_cross`).

Notation (docs/margin.md): ``q`` signed qty, ``e`` entry, ``p`` mark,
``n = |q| * p``, ``MM(n)`` the market's maintenance margin. A leg's *value*
is ``g(p) = q * p - MM(|q| * p)``: rising in ``p`` for a long (while the
marginal maintenance rate is below 1), always falling for a short. Then

- ISOLATED health ``h(p) = margin - q * e + g(p)``;
- CROSS health ``H(p) = balance - sum(q_i * e_i) + sum(g_i(p_i))``;

and every price this module returns solves ``g(x) = y`` for one leg.

Trigger bands (docs/design.md): at marks ``p0`` with ``H0 = H(p0) > 0`` each cross
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
# Recovery triggers are moved toward the mark by this much (relative), well
# past the solve's tolerance, so that they are never late.
EARLY_DOWN = ONE + Decimal("1e-12")
EARLY_UP = ONE - Decimal("1e-12")


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


def isolated_maintenance(position: Position, mark: Decimal, model: MaintenanceModel) -> Decimal:
    """Return the maintenance margin of a position at ``mark``: ``MM(|qty| * mark)``."""
    check_positive("mark", mark)
    with localcontext(_CTX):
        return _mm(model, abs(position.qty) * mark)


def isolated_liq_price(position: Position, model: MaintenanceModel) -> Decimal | None:
    """Return the exact liquidation price of an ISOLATED position, rounded toward the mark.

    A long's is below the mark, a short's above. None when it can never be
    liquidated (a long whose price would be <= 0).
    """
    triggers = isolated_triggers(position, model)
    return triggers.down if position.qty > 0 else triggers.up


def isolated_triggers(position: Position, model: MaintenanceModel) -> Triggers:
    """Return the prices at which an ISOLATED position's health reaches zero."""
    margin = _isolated_margin(position)
    q = position.qty
    if q == 0:
        return Triggers(None, None)
    with localcontext(_CTX):
        return leg_triggers(q, model, q * position.entry_price - margin)


def _isolated_margin(position: Position) -> Decimal:
    if position.margin_mode is not MarginMode.ISOLATED or position.margin is None:
        raise MarginError(f"{position.symbol}: not an ISOLATED position")
    return position.margin


# --- one leg: where does its value fall to y? ----------------------------------


@dataclass(frozen=True, slots=True)
class Triggers:
    """Where a leg's value falls to a target: at or below ``down``, or at or above ``up``.

    Each bound is rounded toward the mark (``down`` up, ``up`` down), so a
    filter built on them is never late. None: no such price on that side. A
    short has only ``up``; a long has ``down`` and, under the orderly model
    only, an ``up`` far above (at hundreds of millions of notional for BTC),
    where the marginal maintenance rate passes 1 and its value turns down.
    """

    down: Decimal | None
    up: Decimal | None

    def crossed(self, mark: Decimal) -> bool:
        """Whether ``mark`` has reached either trigger."""
        return (self.down is not None and mark <= self.down) or (
            self.up is not None and mark >= self.up
        )


def leg_triggers(
    q: Decimal, model: MaintenanceModel, y: Decimal, mark: Decimal | None = None
) -> Triggers:
    """Return the prices at which a leg's value ``q*x - MM(|q|*x)`` falls to ``y``.

    ``down`` is exact; an orderly long's ``up`` is the price of its monotone
    cap (sound and early: its value only starts falling there) unless
    ``mark`` is already past the cap, when it is solved exactly.
    """
    check_decimal("qty", q)
    check_decimal("target", y)
    if q == 0:
        raise MarginError("qty must not be 0")
    with localcontext(_CTX):
        if q < 0:
            # A short's value falls from 0 without end as the price rises.
            return Triggers(None, ZERO if y >= 0 else _rising_price_root(q, model, y))
        if isinstance(model, OrderlyModel) and model.cap.is_finite():
            return _orderly_long(q, model, y, mark)
        return Triggers(None if y <= 0 else _rising_price_root(q, model, y), None)


def _rising_price_root(q: Decimal, model: MaintenanceModel, y: Decimal) -> Decimal:
    """Root of g = y on the monotone branch that starts at price 0 (rising for a long)."""
    if isinstance(model, FlatModel):
        return _linear_root(q, model.rate, ZERO, y)
    if isinstance(model, BracketsModel):
        return _brackets_root(q, model, y)
    flat_root = _linear_root(q, model.base_mmr, ZERO, y)
    if abs(q) * flat_root < model.base_below:
        # Below the dynamic threshold the model is exactly flat at base_mmr.
        return flat_root
    # Past the threshold MM >= the flat rate, so the root lies beyond the flat
    # root: above it for a long (up to the top of g), below it for a short.
    threshold_x = model.threshold / abs(q)
    if q > 0:
        return _numeric_root(q, model, y, flat_root, model.cap / q, rising=True)
    return _numeric_root(q, model, y, min(threshold_x, flat_root), flat_root, rising=False)


def _orderly_long(q: Decimal, model: OrderlyModel, y: Decimal, mark: Decimal | None) -> Triggers:
    cap_up, cap_down = _UP.divide(model.cap, q), _DOWN.divide(model.cap, q)
    if model.top_value < y:
        # Even at its best price the leg is below y: every price triggers.
        return Triggers(cap_up, cap_down)
    down = None if y <= 0 else _rising_price_root(q, model, y)
    if mark is None or mark < cap_down:
        return Triggers(down, cap_down)
    hi = mark * 2
    while _g(q, hi, model) >= y:
        hi *= 2
    return Triggers(down, _numeric_root(q, model, y, mark, hi, rising=False))


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


def _numeric_root(
    q: Decimal, model: OrderlyModel, y: Decimal, lo: Decimal, hi: Decimal, *, rising: bool
) -> Decimal:
    """Solve g(x) = y on [lo, hi] where g is monotone: a float bisection, then an exact check.

    Returns the bound on the safe side (above the root where g rises, below it
    where g falls), verified in Decimal to lie within 1e-13 of the root.
    """
    x = Decimal(repr(_float_bisect(q, model, y, lo, hi, rising)))
    width = x * _SOLVE_TOLERANCE
    above, below = _UP.add(x, width), _DOWN.subtract(x, width)
    safe, past = (above, below) if rising else (below, above)
    if _g(q, safe, model) >= y and (past <= 0 or _g(q, past, model) < y):
        return safe
    return _decimal_bisect(q, model, y, lo, hi, rising)


def _float_bisect(
    q: Decimal, model: OrderlyModel, y: Decimal, lo: Decimal, hi: Decimal, rising: bool
) -> float:
    qf, aq, yf = float(q), abs(float(q)), float(y)
    b, k = float(model.base_mmr), float(model.k)
    a, z = float(lo), float(hi)
    for _ in range(200):
        mid = (a + z) / 2
        if mid in (a, z):
            break
        n = aq * mid
        reached = qf * mid - n * max(b, k * n**0.8) >= yf
        if reached == rising:
            z = mid
        else:
            a = mid
    return (a + z) / 2


def _decimal_bisect(
    q: Decimal, model: MaintenanceModel, y: Decimal, lo: Decimal, hi: Decimal, rising: bool
) -> Decimal:
    # Slow path, exact: keep [lo, hi] around the root until it is 1e-13 wide.
    while hi - lo > hi * _SOLVE_TOLERANCE:
        mid = (lo + hi) / 2
        if (_g(q, mid, model) >= y) == rising:
            hi = mid
        else:
            lo = mid
    return hi if rising else lo


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
    *,
    priced: CrossState | None = None,
) -> Decimal | None:
    """Return the price of ``symbol``'s leg at which H = 0, every other leg at its mark.

    ``priced``: the account already evaluated at ``marks``, if the caller has it.
    """
    state = priced if priced is not None else evaluate_cross(balance, legs, models, marks)
    for leg in legs:
        if leg.symbol == symbol:
            model, p = _leg_inputs(leg, models, marks)
            with localcontext(_CTX):
                y = _g(leg.qty, p, model) - state.health
            triggers = leg_triggers(leg.qty, model, y, p)
            return triggers.down if leg.qty > 0 else triggers.up
    raise MarginError(f"the account has no cross leg on {symbol}")


def trigger_bands(
    balance: Decimal,
    legs: Sequence[Position],
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, Decimal],
    *,
    priced: CrossState | None = None,
) -> list[Triggers]:
    """Return triggers per leg, such that H > 0 while no leg's mark has crossed its triggers.

    Needs H > 0 at ``marks``. A side without a trigger is one on which the leg
    alone cannot lose its share of the slack. ``priced`` is the account
    already evaluated at ``marks``, if the caller has it.
    """
    state = priced if priced is not None else evaluate_cross(balance, legs, models, marks)
    if state.health <= 0:
        raise MarginError(f"trigger bands need health > 0, got {state.health}")
    with localcontext(_CTX):
        slack = state.health * _BAND_SAFETY
        bands: list[Triggers] = []
        for leg in legs:
            model, p = _leg_inputs(leg, models, marks)
            share = _DOWN.divide(_DOWN.multiply(slack, abs(leg.qty) * p), state.notional)
            bands.append(leg_triggers(leg.qty, model, _g(leg.qty, p, model) - share, p))
        return bands


def recovery_triggers(q: Decimal, model: MaintenanceModel, y: Decimal, mark: Decimal) -> Triggers:
    """Return where a leg's value ``q*x - MM(|q|*x)``, below ``y`` at ``mark``, rises to ``y``.

    The mirror of :func:`leg_triggers`, for a filter that must never be late
    to see a value come back (near-liquidation warnings re-arm on it). Each
    bound is moved toward the mark by a relative 1e-12, past the rounding of
    any solve. A long's value rises with the price (``up``), a short's as the
    price falls (``down``); an orderly long past its cap rises as the price
    falls back to the cap, so its ``down`` is the mark itself (any fall).
    """
    check_decimal("qty", q)
    check_decimal("target", y)
    check_positive("mark", mark)
    if q == 0:
        raise MarginError("qty must not be 0")
    with localcontext(_CTX):
        if q < 0:
            if y >= 0:
                # A short is worth less than 0 at every price above 0.
                return Triggers(None, None)
            return Triggers(_UP.multiply(_rising_price_root(q, model, y), EARLY_DOWN), None)
        if isinstance(model, OrderlyModel) and model.cap.is_finite():
            if model.top_value < y:
                return Triggers(None, None)
            if mark >= _DOWN.divide(model.cap, q):
                return Triggers(mark, None)
        return Triggers(None, _DOWN.multiply(_rising_price_root(q, model, y), EARLY_UP))


def recovery_bands(
    balance: Decimal,
    legs: Sequence[Position],
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, Decimal],
    *,
    priced: CrossState | None = None,
) -> list[Triggers]:
    """Return triggers per leg such that H < 0 while no leg's mark has crossed its triggers.

    The mirror of :func:`trigger_bands` for an account below zero (under
    whatever ``models`` say: a warning's re-arm level): the deficit ``-H0``
    is shared by notional, and each leg's trigger is where its value has made
    up its share. Needs H < 0 at ``marks``.
    """
    state = priced if priced is not None else evaluate_cross(balance, legs, models, marks)
    if state.health >= 0:
        raise MarginError(f"recovery bands need health < 0, got {state.health}")
    with localcontext(_CTX):
        deficit = -state.health * _BAND_SAFETY
        bands: list[Triggers] = []
        for leg in legs:
            model, p = _leg_inputs(leg, models, marks)
            share = _DOWN.divide(_DOWN.multiply(deficit, abs(leg.qty) * p), state.notional)
            bands.append(recovery_triggers(leg.qty, model, _g(leg.qty, p, model) + share, p))
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


def index_score(price: Decimal, *, down: bool) -> float:
    """Return the index score of a trigger price: the nearest double on the mark's side.

    A ``down`` trigger fires when ``mark <= score``, so its score rounds up; an
    ``up`` trigger when ``mark >= score``, so its score rounds down. Never late.
    """
    check_decimal("price", price)
    f = float(price)
    exact = Decimal(f)
    if down and exact < price:
        return math.nextafter(f, math.inf)
    if not down and exact > price:
        return math.nextafter(f, -math.inf)
    return f


def mark_bound(mark: Decimal, *, down: bool) -> float:
    """Return the bound to query a direction's index with, so no crossed member is missed.

    Down triggers with score >= mark have fired: query from the double at or
    below the mark. Up triggers with score <= mark: up to the double at or above it.
    """
    return index_score(mark, down=not down)
