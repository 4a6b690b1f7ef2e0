"""Decisions: is an account or a position liquidatable at these marks, and the claim if so.

Pure: each ``decide_*`` takes the account as read (with its version) and
returns the :class:`ChangeSet` that claims the liquidation and appends its
event atomically if, and only if, the account is still at that version; or
fresh bands when a cross account survives. The caller does the I/O.

Every verdict goes through :func:`judge_cross` or :func:`judge_isolated`
and the equality rule of :func:`state.margin.is_liquidatable`; nothing else
in liqwatch decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from state import margin, partial
from state.account import AccountState, Status, StoredPosition
from state.bands import index_cross, unindex
from state.changes import ChangeSet
from state.events import EventLeg, LiquidationEvent, Transfer
from state.keys import index_member, liquidating_member, position_field
from state.models import MaintenanceModel, MarginMode, Position
from state.rules import Rules

# The key of a cross account in a Liquidatable: isolated positions are keyed by symbol.
CROSS = "CROSS"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The rule applied at given marks: the figures and whether they liquidate."""

    equity: Decimal
    maintenance: Decimal
    health: Decimal
    liquidatable: bool


def judge_cross(
    balance: Decimal,
    legs: Sequence[Position],
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, Decimal],
    *,
    at_equality: bool,
) -> tuple[Verdict, margin.CrossState]:
    """Apply the CROSS rule to an account's cross legs at ``marks`` (every leg needs one)."""
    priced = margin.evaluate_cross(balance, legs, models, marks)
    liquidatable = margin.is_liquidatable(priced.health, at_equality=at_equality)
    return Verdict(priced.equity, priced.maintenance, priced.health, liquidatable), priced


def judge_isolated(
    position: Position, model: MaintenanceModel, mark: Decimal, *, at_equality: bool
) -> Verdict:
    """Apply the ISOLATED rule to one position at ``mark``."""
    health = margin.isolated_health(position, mark, model)
    return Verdict(
        margin.isolated_equity(position, mark),
        margin.isolated_maintenance(position, mark, model),
        health,
        margin.is_liquidatable(health, at_equality=at_equality),
    )


def liquidatable(
    balance: Decimal,
    cross_legs: Sequence[Position],
    isolated: Iterable[Position],
    models: Mapping[str, MaintenanceModel],
    marks: Mapping[str, Decimal],
    *,
    at_equality: bool,
) -> set[str]:
    """Return what of an account is liquidatable at ``marks``: :data:`CROSS` and symbols.

    The cross account is judged only when every leg has a mark (a leg
    without one holds it), an isolated position only when its symbol has one.
    """
    out: set[str] = set()
    if cross_legs and all(leg.symbol in marks for leg in cross_legs):
        verdict, _ = judge_cross(balance, cross_legs, models, marks, at_equality=at_equality)
        if verdict.liquidatable:
            out.add(CROSS)
    for position in isolated:
        mark = marks.get(position.symbol)
        if (
            mark is not None
            and judge_isolated(
                position, models[position.symbol], mark, at_equality=at_equality
            ).liquidatable
        ):
            out.add(position.symbol)
    return out


def liquidatable_state(rules: Rules, state: AccountState, marks: Mapping[str, Decimal]) -> set[str]:
    """Return what of a stored account, OPEN parts only, is liquidatable at ``marks``."""
    return liquidatable(
        state.balance,
        state.cross_legs if state.status is Status.OPEN else [],
        state.open_isolated,
        rules.models,
        marks,
        at_equality=rules.at_equality,
    )


def decide_isolated(
    rules: Rules,
    state: AccountState,
    symbol: str,
    prices: list[Decimal],
    mark_ts: int,
    now_ms: int,
) -> tuple[ChangeSet | None, LiquidationEvent | None]:
    """Decide an isolated position at the marks its symbol has shown since the last tick.

    Returns (change set, event): a claim with its event when one of ``prices``
    liquidates it, a clean-up of a stale index member, or (None, None).
    """
    member = index_member(MarginMode.ISOLATED, state.account)
    stored = state.positions.get((MarginMode.ISOLATED, symbol))
    if stored is None or stored.status is not Status.OPEN:
        cs = ChangeSet(rules.keys, state.account).expect_version(state.version)
        unindex(cs, rules, symbol, member)
        return cs, None
    position = stored.position
    model = rules.models[symbol]
    for price in prices:
        verdict = judge_isolated(position, model, price, at_equality=rules.at_equality)
        if verdict.liquidatable:
            break
    else:
        return None, None
    liq_id = f"{state.account}:ISOLATED:{symbol}:{state.version}"
    event = LiquidationEvent(
        id=liq_id,
        kind=MarginMode.ISOLATED,
        account=state.account,
        symbol=symbol,
        positions=(EventLeg.of(position, price),),
        mark_price=price,
        marks={symbol: price},
        liq_price=margin.isolated_liq_price(position, model),
        equity=verdict.equity,
        maintenance_margin=verdict.maintenance,
        mark_ts=mark_ts,
        detected_ts=now_ms,
        seq=state.seq,
        transfer=transfers(partial.plan_isolated(position, rules.markets[symbol], price)),
    )
    claimed = replace(stored, status=Status.LIQUIDATING, liq_id=liq_id)
    keys = rules.keys
    cs = ChangeSet(keys, state.account).expect_version(state.version).bump()
    cs.once(keys.liq_id(liq_id), rules.liq_id_ttl)
    cs.hset(
        keys.positions(state.account),
        position_field(MarginMode.ISOLATED, symbol),
        claimed.to_json(),
    )
    unindex(cs, rules, symbol, member)
    cs.zadd(
        keys.liquidating, now_ms, liquidating_member(MarginMode.ISOLATED, state.account, symbol)
    )
    cs.xadd(keys.events, event.to_fields())
    if rules.warnings is not None:
        cs.sadd(keys.warn_dirty, state.account)
    return cs, event


@dataclass(frozen=True, slots=True)
class Survivor:
    """A cross account whose trigger fired and whose health says no: it needs fresh bands."""

    state: AccountState
    marks: Mapping[str, Decimal]
    priced: margin.CrossState

    def rebands(self, rules: Rules) -> ChangeSet:
        """The guarded write of its fresh bands."""
        cs = ChangeSet(rules.keys, self.state.account).expect_version(self.state.version)
        index_cross(cs, rules, self.state, self.marks, self.priced)
        return cs


def decide_cross(
    rules: Rules,
    state: AccountState,
    symbol: str,
    marks: Mapping[str, Decimal],
    mark_ts: int,
    now_ms: int,
) -> tuple[ChangeSet | None, LiquidationEvent | None]:
    """Decide a cross account whose trigger on ``symbol`` fired, at the LIVE ``marks``.

    A claim with its event when its health says so; else fresh bands; nothing
    while a leg has no LIVE mark (held: its crossed trigger stays indexed and
    fires again on the next tick).
    """
    cs, event, survivor = claim_cross(rules, state, symbol, marks, mark_ts, now_ms)
    if survivor is not None:
        return survivor.rebands(rules), None
    return cs, event


def claim_cross(
    rules: Rules,
    state: AccountState,
    symbol: str,
    marks: Mapping[str, Decimal],
    mark_ts: int,
    now_ms: int,
) -> tuple[ChangeSet | None, LiquidationEvent | None, Survivor | None]:
    """Decide a cross account as :func:`decide_cross` does, leaving a survivor's bands for later.

    Returns (claim or clean-up, its event, None), or (None, None, the survivor)
    when the account is not liquidatable: its bands (the costly part) can be
    written once every claim of a batch is on its way.
    """
    legs = state.cross_legs
    keys = rules.keys
    member = index_member(MarginMode.CROSS, state.account)
    if state.status is not Status.OPEN or all(leg.symbol != symbol for leg in legs):
        cs = ChangeSet(keys, state.account).expect_version(state.version)
        unindex(cs, rules, symbol, member)
        return cs, None, None
    if any(leg.symbol not in marks for leg in legs):
        return None, None, None
    used = {leg.symbol: marks[leg.symbol] for leg in legs}
    verdict, priced = judge_cross(
        state.balance, legs, rules.models, used, at_equality=rules.at_equality
    )
    if not verdict.liquidatable:
        return None, None, Survivor(state, used, priced)
    liq_id = f"{state.account}:CROSS:{state.version}"
    event = LiquidationEvent(
        id=liq_id,
        kind=MarginMode.CROSS,
        account=state.account,
        symbol=symbol,
        positions=tuple(EventLeg.of(leg, used[leg.symbol]) for leg in legs),
        mark_price=used[symbol],
        marks=used,
        liq_price=margin.cross_leg_liq_price(
            state.balance, legs, rules.models, used, symbol, priced=priced
        ),
        equity=verdict.equity,
        maintenance_margin=verdict.maintenance,
        mark_ts=mark_ts,
        detected_ts=now_ms,
        seq=state.seq,
        balance=state.balance,
        transfer=transfers(
            partial.plan_cross(state.balance, legs, rules.markets, used, equity=verdict.equity)
        ),
    )
    cs = ChangeSet(keys, state.account).expect_version(state.version).bump()
    cs.once(keys.liq_id(liq_id), rules.liq_id_ttl)
    acct_key = keys.account(state.account)
    cs.hset(acct_key, "status", Status.LIQUIDATING.value)
    cs.hset(acct_key, "liq_id", liq_id)
    cs.hset(acct_key, "liq_ts", str(now_ms))
    for leg in legs:
        claimed = StoredPosition(leg, Status.LIQUIDATING, liq_id)
        cs.hset(
            keys.positions(state.account),
            position_field(MarginMode.CROSS, leg.symbol),
            claimed.to_json(),
        )
        unindex(cs, rules, leg.symbol, member)
    cs.zadd(keys.liquidating, now_ms, liquidating_member(MarginMode.CROSS, state.account))
    cs.xadd(keys.events, event.to_fields())
    if rules.warnings is not None:
        cs.sadd(keys.warn_dirty, state.account)
    return cs, event, None


def transfers(plan: partial.PartialPlan | None) -> dict[str, Transfer] | None:
    """The event's per-symbol partial-liquidation fields of a plan (None without one)."""
    if plan is None:
        return None
    return {
        symbol: Transfer(leg.tier.value, leg.qty, leg.liquidation_fee, leg.liquidator_fee)
        for symbol, leg in plan.legs.items()
    }
