"""Turn decisions into change sets: apply an input, claim a liquidation, re-band an account.

Pure: each function takes the account as read (with its version) and returns
the :class:`ChangeSet` that commits the result atomically if, and only if, the
account is still at that version. The caller does the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

import orjson

from state import margin
from state.account import AccountState, PositionKey, Status, StoredPosition
from state.changes import ChangeSet
from state.errors import InputError, MarginError
from state.inputs import BalanceUpdate, InputMessage, LeverageUpdate, PositionUpdate
from state.keys import (
    DIRECTIONS,
    Keys,
    index_member,
    leverage_field,
    liquidating_member,
    position_field,
)
from state.models import MaintenanceModel, MarginMode, Market, Position

# Scores that make a member a candidate on every tick of its symbol: used for
# a cross account whose bands cannot be computed yet (a leg without a LIVE
# mark, or health exactly 0), so that the next tick decides it.
ALWAYS_DOWN = math.inf


@dataclass(frozen=True, slots=True)
class Rules:
    """What the planner needs besides the account: key names, markets, the equality rule."""

    keys: Keys
    markets: Mapping[str, Market]
    at_equality: bool = False
    liq_id_ttl: int = 7 * 24 * 3600
    models: Mapping[str, MaintenanceModel] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", {s: m.maintenance for s, m in self.markets.items()})


# --- index writes --------------------------------------------------------------


def _set_triggers(
    cs: ChangeSet, rules: Rules, symbol: str, member: str, triggers: margin.Triggers
) -> None:
    for direction, price in zip(DIRECTIONS, (triggers.down, triggers.up), strict=True):
        key = rules.keys.index(symbol, direction)
        if price is None:
            cs.zrem(key, member)
        else:
            cs.zadd(key, margin.index_score(price, down=direction == "down"), member)


def _unindex(cs: ChangeSet, rules: Rules, symbol: str, member: str) -> None:
    for direction in DIRECTIONS:
        cs.zrem(rules.keys.index(symbol, direction), member)


def _index_isolated(cs: ChangeSet, rules: Rules, position: Position) -> None:
    triggers = margin.isolated_triggers(position, rules.models[position.symbol])
    _set_triggers(cs, rules, position.symbol, index_member(MarginMode.ISOLATED, position.account),
                  triggers)  # fmt: skip


def index_cross(
    cs: ChangeSet,
    rules: Rules,
    state: AccountState,
    marks: Mapping[str, Decimal],
    priced: margin.CrossState | None = None,
) -> None:
    """Write fresh trigger bands for every cross leg, or always-scores when they can't be had.

    ``priced``: the account already evaluated at ``marks``, if the caller has it.
    """
    legs = state.cross_legs
    member = index_member(MarginMode.CROSS, state.account)
    if state.status is Status.LIQUIDATING:
        for leg in legs:
            _unindex(cs, rules, leg.symbol, member)
        return
    if not legs:
        return
    if all(leg.symbol in marks for leg in legs):
        if priced is None:
            priced = margin.evaluate_cross(state.balance, legs, rules.models, marks)
        if priced.health > 0:
            bands = margin.trigger_bands(state.balance, legs, rules.models, marks, priced=priced)
            for leg, triggers in zip(legs, bands, strict=True):
                _set_triggers(cs, rules, leg.symbol, member, triggers)
            return
    for leg in legs:
        cs.zadd(rules.keys.index(leg.symbol, "down"), ALWAYS_DOWN, member)
        cs.zrem(rules.keys.index(leg.symbol, "up"), member)


# --- input -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputPlan:
    """An account's input updates planned as one atomic change.

    ``change`` holds the writes of every applied update (None if none
    applies); ``applied`` and ``duplicates`` index into the planned messages,
    ``rejected`` pairs an index with the reason it must be dead-lettered.
    """

    change: ChangeSet | None
    after: AccountState
    applied: list[int]
    duplicates: list[int]
    rejected: list[tuple[int, InputError]]


def plan_inputs(
    rules: Rules, state: AccountState, msgs: Sequence[InputMessage], marks: Mapping[str, Decimal]
) -> InputPlan:
    """Plan consecutive updates of one account, in order, as one guarded change set.

    Duplicates (seq not newer) and invalid updates are left out; the account's
    bands are computed once, from the state after the last update.
    """
    keys = rules.keys
    cs = ChangeSet(keys, state.account).expect_version(state.version)
    current = state
    reband = False
    applied: list[int] = []
    duplicates: list[int] = []
    rejected: list[tuple[int, InputError]] = []
    for i, msg in enumerate(msgs):
        if current.seq is not None and msg.seq <= current.seq:
            duplicates.append(i)
            continue
        part = ChangeSet(keys, state.account)
        try:
            current, needs_bands = _apply(rules, part, current, msg)
        except InputError as exc:
            rejected.append((i, exc))
            continue
        except (ArithmeticError, MarginError) as exc:
            # Valid on its face, but the math cannot take it: set it aside.
            rejected.append((i, InputError(f"cannot be priced: {exc!r}")))
            continue
        cs.absorb(part)
        reband = reband or needs_bands
        applied.append(i)
    if not applied:
        return InputPlan(None, state, applied, duplicates, rejected)
    if reband:
        try:
            index_cross(cs, rules, current, marks)
        except (ArithmeticError, MarginError):
            # Bands cannot be had for this state: look at it on every tick;
            # the engine sets it aside if it cannot decide it either.
            for leg in current.cross_legs:
                member = index_member(MarginMode.CROSS, state.account)
                cs.zadd(rules.keys.index(leg.symbol, "down"), ALWAYS_DOWN, member)
    cs.set_seq(current.seq or 0).bump(len(applied))
    current = replace(current, version=state.version + len(applied))
    return InputPlan(cs, current, applied, duplicates, rejected)


def _apply(
    rules: Rules, cs: ChangeSet, state: AccountState, msg: InputMessage
) -> tuple[AccountState, bool]:
    """Add one update's writes (no bands); return the account after it and whether to re-band."""
    keys = rules.keys
    acct_key = keys.account(state.account)
    positions = dict(state.positions)
    leverage = dict(state.leverage)
    balance = state.balance
    reband = False
    if isinstance(msg, BalanceUpdate):
        balance = msg.balance
        cs.hset(acct_key, "balance", str(balance))
        reband = True
    elif isinstance(msg, LeverageUpdate):
        leverage[(msg.margin_mode, msg.symbol)] = msg.leverage
        cs.hset(acct_key, leverage_field(msg.margin_mode, msg.symbol), str(msg.leverage))
    else:
        reband = _plan_position(rules, cs, state, msg, positions, leverage)
    status = (
        Status.LIQUIDATING
        if any(
            sp.status is Status.LIQUIDATING
            for (mode, _), sp in positions.items()
            if mode is MarginMode.CROSS
        )
        else Status.OPEN
    )
    if status is not state.status:
        cs.hset(acct_key, "status", status.value)
        if status is Status.OPEN:
            cs.zrem(keys.liquidating, liquidating_member(MarginMode.CROSS, state.account))
            reband = True
    after = replace(
        state, balance=balance, seq=msg.seq, status=status, positions=positions,
        leverage=leverage,
    )  # fmt: skip
    return after, reband


def _plan_position(
    rules: Rules,
    cs: ChangeSet,
    state: AccountState,
    msg: PositionUpdate,
    positions: dict[PositionKey, StoredPosition],
    leverage: dict[PositionKey, Decimal],
) -> bool:
    """Add the writes of a position update; return whether cross bands must be redone."""
    keys = rules.keys
    pkey = (msg.margin_mode, msg.symbol)
    pos_key = keys.positions(state.account)
    member = index_member(msg.margin_mode, state.account)
    was = positions.get(pkey)
    if (
        msg.margin_mode is MarginMode.ISOLATED
        and was is not None
        and was.status is Status.LIQUIDATING
    ):
        cs.zrem(
            keys.liquidating, liquidating_member(MarginMode.ISOLATED, state.account, msg.symbol)
        )
    if msg.qty == 0:
        positions.pop(pkey, None)
        cs.hdel(pos_key, position_field(*pkey))
        _unindex(cs, rules, msg.symbol, member)
        return msg.margin_mode is MarginMode.CROSS
    assert msg.entry_price is not None  # parse_input guarantees it for qty != 0
    if msg.leverage is not None:
        leverage[pkey] = msg.leverage
        cs.hset(keys.account(state.account), leverage_field(*pkey), str(msg.leverage))
    isolated_margin = None
    if msg.margin_mode is MarginMode.ISOLATED:
        isolated_margin = msg.margin
        if isolated_margin is None:
            lev = leverage.get(pkey)
            if lev is None:
                raise InputError(
                    f"margin: missing, and no leverage for ({msg.symbol}, ISOLATED) to derive it"
                )
            isolated_margin = margin.isolated_margin_from_leverage(msg.qty, msg.entry_price, lev)
    try:
        position = Position(
            state.account, msg.symbol, msg.margin_mode, msg.qty, msg.entry_price,
            isolated_margin, leverage.get(pkey),
        )  # fmt: skip
    except MarginError as exc:
        raise InputError(str(exc)) from None
    stored = StoredPosition(position)
    positions[pkey] = stored
    cs.hset(pos_key, position_field(*pkey), stored.to_json())
    if msg.margin_mode is MarginMode.ISOLATED:
        _index_isolated(cs, rules, position)
        return False
    return True


# --- decisions --------------------------------------------------------------------


def _event(
    state: AccountState,
    liq_id: str,
    kind: MarginMode,
    symbol: str,
    positions: list[dict[str, str]],
    marks: Mapping[str, Decimal],
    mark: Decimal,
    liq_price: Decimal | None,
    equity: Decimal,
    maintenance: Decimal,
    mark_ts: int,
    now_ms: int,
) -> dict[str, str]:
    return {
        "id": liq_id,
        "kind": kind.value,
        "account": state.account,
        "symbol": symbol,
        "positions": orjson.dumps(positions).decode(),
        "mark_price": str(mark),
        "marks": orjson.dumps({s: str(p) for s, p in marks.items()}).decode(),
        "liq_price": "" if liq_price is None else str(liq_price),
        "equity": str(equity),
        "maintenance_margin": str(maintenance),
        "mark_ts": str(mark_ts),
        "detected_ts": str(now_ms),
        "seq": "" if state.seq is None else str(state.seq),
    }


def _leg_json(p: Position, mark: Decimal) -> dict[str, str]:
    d = {
        "symbol": p.symbol,
        "margin_mode": p.margin_mode.value,
        "qty": str(p.qty),
        "entry_price": str(p.entry_price),
    }
    if p.margin is not None:
        d["margin"] = str(p.margin)
    d["mark_price"] = str(mark)
    return d


def decide_isolated(
    rules: Rules,
    state: AccountState,
    symbol: str,
    prices: list[Decimal],
    mark_ts: int,
    now_ms: int,
) -> tuple[ChangeSet | None, dict[str, str] | None]:
    """Decide an isolated position at the marks its symbol has shown since the last tick.

    Returns (change set, event): a claim with its event when one of ``prices``
    liquidates it, a clean-up of a stale index member, or (None, None).
    """
    member = index_member(MarginMode.ISOLATED, state.account)
    stored = state.positions.get((MarginMode.ISOLATED, symbol))
    if stored is None or stored.status is not Status.OPEN:
        cs = ChangeSet(rules.keys, state.account).expect_version(state.version)
        _unindex(cs, rules, symbol, member)
        return cs, None
    position = stored.position
    model = rules.models[symbol]
    for price in prices:
        health = margin.isolated_health(position, price, model)
        if margin.is_liquidatable(health, at_equality=rules.at_equality):
            break
    else:
        return None, None
    liq_id = f"{state.account}:ISOLATED:{symbol}:{state.version}"
    event = _event(
        state, liq_id, MarginMode.ISOLATED, symbol, [_leg_json(position, price)],
        {symbol: price}, price, margin.isolated_liq_price(position, model),
        margin.isolated_equity(position, price),
        margin.maintenance(model, abs(position.qty) * price), mark_ts, now_ms,
    )  # fmt: skip
    claimed = replace(stored, status=Status.LIQUIDATING, liq_id=liq_id)
    keys = rules.keys
    cs = ChangeSet(keys, state.account).expect_version(state.version).bump()
    cs.once(keys.liq_id(liq_id), rules.liq_id_ttl)
    cs.hset(keys.positions(state.account), position_field(MarginMode.ISOLATED, symbol),
            claimed.to_json())  # fmt: skip
    _unindex(cs, rules, symbol, member)
    cs.zadd(
        keys.liquidating, now_ms, liquidating_member(MarginMode.ISOLATED, state.account, symbol)
    )
    cs.xadd(keys.events, event)
    return cs, event


def decide_cross(
    rules: Rules,
    state: AccountState,
    symbol: str,
    marks: Mapping[str, Decimal],
    mark_ts: int,
    now_ms: int,
) -> tuple[ChangeSet | None, dict[str, str] | None]:
    """Decide a cross account whose trigger on ``symbol`` fired, at the LIVE ``marks``.

    A claim with its event when its health says so; else fresh bands; nothing
    while a leg has no LIVE mark (held: its crossed trigger stays indexed and
    fires again on the next tick).
    """
    legs = state.cross_legs
    keys = rules.keys
    member = index_member(MarginMode.CROSS, state.account)
    if state.status is not Status.OPEN or all(leg.symbol != symbol for leg in legs):
        cs = ChangeSet(keys, state.account).expect_version(state.version)
        _unindex(cs, rules, symbol, member)
        return cs, None
    if any(leg.symbol not in marks for leg in legs):
        return None, None
    used = {leg.symbol: marks[leg.symbol] for leg in legs}
    account = margin.evaluate_cross(state.balance, legs, rules.models, used)
    if not margin.is_liquidatable(account.health, at_equality=rules.at_equality):
        cs = ChangeSet(keys, state.account).expect_version(state.version)
        index_cross(cs, rules, state, used, account)
        return cs, None
    liq_id = f"{state.account}:CROSS:{state.version}"
    liq_price = margin.cross_leg_liq_price(state.balance, legs, rules.models, used, symbol)
    event = _event(
        state, liq_id, MarginMode.CROSS, symbol,
        [_leg_json(leg, used[leg.symbol]) for leg in legs], used, used[symbol], liq_price,
        account.equity, account.maintenance, mark_ts, now_ms,
    )  # fmt: skip
    cs = ChangeSet(keys, state.account).expect_version(state.version).bump()
    cs.once(keys.liq_id(liq_id), rules.liq_id_ttl)
    acct_key = keys.account(state.account)
    cs.hset(acct_key, "status", Status.LIQUIDATING.value)
    cs.hset(acct_key, "liq_id", liq_id)
    cs.hset(acct_key, "liq_ts", str(now_ms))
    for leg in legs:
        claimed = StoredPosition(leg, Status.LIQUIDATING, liq_id)
        cs.hset(keys.positions(state.account), position_field(MarginMode.CROSS, leg.symbol),
                claimed.to_json())  # fmt: skip
        _unindex(cs, rules, leg.symbol, member)
    cs.zadd(keys.liquidating, now_ms, liquidating_member(MarginMode.CROSS, state.account))
    cs.xadd(keys.events, event)
    return cs, event
