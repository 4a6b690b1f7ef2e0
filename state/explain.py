"""Re-derive a liquidation decision from its stored event: every figure, the rule, the verdict.

Pure. From the event's legs, marks and balance (CROSS) or margin (ISOLATED),
and the markets' models as configured now, each leg's unrealized PnL and
maintenance margin (with the model and the bracket or rate used) are
computed again, then the equity against the requirement, the rule and the
verdict, through the daemon's own functions (:func:`state.decisions.judge_cross`,
:func:`state.decisions.judge_isolated`, :mod:`state.margin`,
:mod:`state.partial`). Every figure the event states is compared exactly;
each one that differs is a difference. An event re-derives when there is none.

An event written before ``balance`` was recorded has its cross balance
taken as ``equity - sum(pnl)``: its equity then agrees by construction, and
its liquidation price is compared to 30 significant digits (the balance is
only known to the event's 40).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation

from state import margin, partial
from state.decisions import judge_cross, judge_isolated, transfers
from state.errors import MarginError
from state.events import LiquidationEvent, Transfer
from state.models import (
    ZERO,
    BracketsModel,
    FlatModel,
    MaintenanceModel,
    MarginMode,
    Market,
    Position,
)

_CTX = Context(prec=margin.PRECISION)
_LOOSE = Context(prec=30)


@dataclass(frozen=True, slots=True)
class LegFigures:
    """One leg priced again: notional, PnL, maintenance margin and how it was computed."""

    symbol: str
    margin_mode: MarginMode
    qty: Decimal
    entry_price: Decimal
    margin: Decimal | None
    mark: Decimal
    notional: Decimal
    pnl: Decimal
    maintenance: Decimal
    model: str


@dataclass(frozen=True, slots=True)
class Derivation:
    """An event re-derived: the figures, the verdict, and what differs from the event."""

    event: LiquidationEvent
    legs: tuple[LegFigures, ...]
    balance: Decimal | None
    balance_derived: bool
    equity: Decimal | None
    maintenance: Decimal | None
    health: Decimal | None
    liquidatable: bool | None
    at_equality: bool
    liq_price: Decimal | None
    transfer: partial.PartialPlan | None
    differences: tuple[str, ...]

    @property
    def exact(self) -> bool:
        """Whether every figure of the event re-derives exactly and the verdict is to liquidate."""
        return not self.differences


def describe_model(model: MaintenanceModel, notional: Decimal) -> str:
    """How the maintenance margin of a notional is computed under ``model``, with its numbers."""
    if isinstance(model, FlatModel):
        return f"flat: n * {model.rate}"
    if isinstance(model, BracketsModel):
        index, chosen = 0, model.brackets[0]
        for i, b in enumerate(model.brackets):
            if b.floor > notional:
                break
            index, chosen = i, b
        return (
            f"brackets: bracket {index} (floor {chosen.floor}, rate {chosen.rate},"
            f" amount {chosen.amount}): n * {chosen.rate} - {chosen.amount}"
        )
    dynamic = margin.orderly_dynamic_term(model, notional)
    rate = margin.maintenance_rate(model, notional) if notional else model.base_mmr
    which = "base_mmr" if dynamic <= model.base_mmr else "dynamic"
    return (
        f"orderly: rate max(base_mmr {model.base_mmr}, base_mmr/base_imr*imr_factor*n^0.8"
        f" {_short(dynamic)}) = {_short(rate)} ({which})"
    )


def _short(value: Decimal) -> str:
    return format(_LOOSE.plus(value), "f") if value else "0"


def derive(
    event: LiquidationEvent, markets: Mapping[str, Market], *, at_equality: bool
) -> Derivation:
    """Re-derive ``event`` under ``markets`` and the equality rule (see the module docstring)."""
    diffs: list[str] = []
    marks = dict(event.marks)
    for leg in event.positions:
        stated = marks.get(leg.symbol)
        if stated is None:
            diffs.append(
                f"marks: no mark for {leg.symbol}, whose leg is priced at {leg.mark_price}"
            )
            marks[leg.symbol] = leg.mark_price
        elif stated != leg.mark_price:
            diffs.append(
                f"positions.{leg.symbol}.mark_price: {leg.mark_price}, but marks.{leg.symbol}"
                f" is {stated}"
            )
    if marks.get(event.symbol) != event.mark_price:
        diffs.append(
            f"mark_price: {event.mark_price}, but marks.{event.symbol} is {marks.get(event.symbol)}"
        )
    missing = sorted({leg.symbol for leg in event.positions} - set(markets))
    if missing:
        diffs.append(f"no market in the config for {', '.join(missing)}")
        return _failed(event, at_equality, diffs)
    models = {s: m.maintenance for s, m in markets.items()}
    try:
        if event.kind is MarginMode.CROSS:
            return _cross(event, markets, models, marks, at_equality, diffs)
        return _isolated(event, markets, models, marks, at_equality, diffs)
    except (MarginError, ArithmeticError, InvalidOperation) as exc:
        diffs.append(f"cannot be priced: {exc}")
        return _failed(event, at_equality, diffs)


def _failed(event: LiquidationEvent, at_equality: bool, diffs: list[str]) -> Derivation:
    return Derivation(
        event, (), None, False, None, None, None, None, at_equality, None, None, tuple(diffs)
    )


def _figures(position: Position, model: MaintenanceModel, mark: Decimal) -> LegFigures:
    notional = _CTX.multiply(abs(position.qty), mark)
    return LegFigures(
        position.symbol,
        position.margin_mode,
        position.qty,
        position.entry_price,
        position.margin,
        mark,
        notional,
        _CTX.multiply(position.qty, _CTX.subtract(mark, position.entry_price)),
        margin.maintenance(model, notional),
        describe_model(model, notional),
    )


def _cross(
    event: LiquidationEvent,
    markets: Mapping[str, Market],
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, Decimal],
    at_equality: bool,
    diffs: list[str],
) -> Derivation:
    legs = []
    for leg in event.positions:
        if leg.margin_mode is not MarginMode.CROSS:
            diffs.append(f"positions.{leg.symbol}: a CROSS event lists an ISOLATED position")
            continue
        legs.append(Position(event.account, leg.symbol, MarginMode.CROSS, leg.qty, leg.entry_price))
    figures = tuple(_figures(p, models[p.symbol], marks[p.symbol]) for p in legs)
    derived = event.balance is None
    if derived:
        balance = _CTX.subtract(event.equity, sum((f.pnl for f in figures), ZERO))
    else:
        assert event.balance is not None
        balance = event.balance
    used = {p.symbol: marks[p.symbol] for p in legs}
    verdict, priced = judge_cross(balance, legs, models, used, at_equality=at_equality)
    liq = None
    if event.symbol in used:
        liq = margin.cross_leg_liq_price(balance, legs, models, used, event.symbol, priced=priced)
    else:
        diffs.append(f"symbol: {event.symbol} is not one of the account's cross legs")
    _compare(diffs, "equity", event.equity, verdict.equity)
    _compare(diffs, "maintenance_margin", event.maintenance_margin, verdict.maintenance)
    _compare_price(diffs, event.liq_price, liq, loose=derived)
    plan = partial.plan_cross(balance, legs, markets, used, equity=verdict.equity)
    _compare_transfer(diffs, event.transfer, transfers(plan))
    if not verdict.liquidatable:
        diffs.append(f"verdict: health {verdict.health} does not liquidate under the rule")
    return Derivation(
        event,
        figures,
        balance,
        derived,
        verdict.equity,
        verdict.maintenance,
        verdict.health,
        verdict.liquidatable,
        at_equality,
        liq,
        plan,
        tuple(diffs),
    )


def _isolated(
    event: LiquidationEvent,
    markets: Mapping[str, Market],
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, Decimal],
    at_equality: bool,
    diffs: list[str],
) -> Derivation:
    if len(event.positions) != 1:
        diffs.append(f"positions: an ISOLATED event lists one position, got {len(event.positions)}")
        return _failed(event, at_equality, diffs)
    leg = event.positions[0]
    if leg.margin_mode is not MarginMode.ISOLATED or leg.margin is None:
        diffs.append(f"positions.{leg.symbol}: not an ISOLATED position with its margin")
        return _failed(event, at_equality, diffs)
    if leg.symbol != event.symbol:
        diffs.append(f"symbol: {event.symbol}, but the position is on {leg.symbol}")
    position = Position(
        event.account, leg.symbol, MarginMode.ISOLATED, leg.qty, leg.entry_price, leg.margin
    )
    model = models[leg.symbol]
    price = marks[leg.symbol]
    figures = (_figures(position, model, price),)
    verdict = judge_isolated(position, model, price, at_equality=at_equality)
    liq = margin.isolated_liq_price(position, model)
    _compare(diffs, "equity", event.equity, verdict.equity)
    _compare(diffs, "maintenance_margin", event.maintenance_margin, verdict.maintenance)
    _compare_price(diffs, event.liq_price, liq, loose=False)
    plan = partial.plan_isolated(position, markets[leg.symbol], price)
    _compare_transfer(diffs, event.transfer, transfers(plan))
    if not verdict.liquidatable:
        diffs.append(f"verdict: health {verdict.health} does not liquidate under the rule")
    return Derivation(
        event,
        figures,
        None,
        False,
        verdict.equity,
        verdict.maintenance,
        verdict.health,
        verdict.liquidatable,
        at_equality,
        liq,
        plan,
        tuple(diffs),
    )


def _compare(diffs: list[str], name: str, stated: Decimal, derived: Decimal) -> None:
    if stated != derived:
        diffs.append(
            f"{name}: event {stated}, re-derived {derived} (difference"
            f" {_CTX.subtract(stated, derived)})"
        )


def _compare_price(
    diffs: list[str], stated: Decimal | None, derived: Decimal | None, *, loose: bool
) -> None:
    if stated is None or derived is None:
        if stated is not derived:
            diffs.append(f"liq_price: event {stated}, re-derived {derived}")
        return
    same = _LOOSE.plus(stated) == _LOOSE.plus(derived) if loose else stated == derived
    if not same:
        _compare(diffs, "liq_price", stated, derived)


def _compare_transfer(
    diffs: list[str], stated: Mapping[str, Transfer] | None, derived: Mapping[str, Transfer] | None
) -> None:
    if stated == derived:
        return
    if stated is None or derived is None:
        diffs.append(
            "transfer: the event carries none, re-derived one"
            if stated is None
            else "transfer: the event carries one, but the market has no partial rule now"
        )
        return
    for symbol in sorted(set(stated) | set(derived)):
        a, b = stated.get(symbol), derived.get(symbol)
        if a != b:
            diffs.append(
                f"transfer.{symbol}: event {_transfer_text(a)}, re-derived {_transfer_text(b)}"
            )


def _transfer_text(t: Transfer | None) -> str:
    if t is None:
        return "none"
    return f"{t.tier} qty {t.qty} fee {t.liquidation_fee} liquidator {t.liquidator_fee}"
