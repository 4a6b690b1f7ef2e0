"""Near-liquidation warnings: one warning per crossing of a level, re-armed with hysteresis.

A *part* is a cross account or one isolated position. It is *in warning*
when its equity falls below ``level`` x its maintenance margin, and it is
re-armed when its equity is back at ``rearm`` x maintenance or above
(``rearm`` >= ``level``: the band between them is the hysteresis). Each
crossing while armed gives one warning event; nothing more until re-armed.

Found through index triggers like liquidations, never by a scan: an armed
part sits in the ``warn`` sets at the prices where it would fall to the
level (the liquidation triggers of the maintenance scaled by ``level``), a
part in warning in the ``rearm`` sets at the prices where it would be back
at ``rearm``. Accounts changed by input or a claim are put in a ``dirty``
set and looked at again at the marks of the moment.

Pure: :func:`plan_account` takes an account as read and returns guarded
change sets, one per part: each commits only if the account is still at
its version and the part's stored state is still what was read, and a
warning's id (the part and its warning count) is written once (SET NX), so
two instances or a retried commit can never emit a warning twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

import orjson

from state import margin
from state.account import AccountState, Status
from state.bands import ALWAYS_DOWN, set_triggers
from state.changes import ChangeSet
from state.errors import MarginError
from state.events import (
    EventError,
    EventLeg,
    Fields,
    decimal_field,
    int_field,
    json_field,
    text_of,
)
from state.keys import DIRECTIONS, Keys, index_member
from state.models import (
    MarginMode,
    Position,
)
from state.rules import Rules
from state.warning_levels import WarningRules

CROSS_PART = "warn|C"
# Triggers are moved toward the mark by this much (relative): the scaled
# models agree with ``level`` x maintenance to about 1e-38, the solves to 1e-13.

Action = Literal["warn", "rearm", "band", "clear"]


def isolated_part(symbol: str) -> str:
    """The account-hash field holding an isolated position's warning state."""
    return f"warn|I|{symbol}"


@dataclass(frozen=True, slots=True)
class PartState:
    """A part's warning state: warnings issued so far, and whether it is in warning now."""

    count: int = 0
    warned: bool = False
    since_ms: int = 0

    @classmethod
    def parse(cls, text: str | None) -> PartState:
        """Read ``<count>|A`` or ``<count>|W|<ms>``; absent or unreadable is armed, count 0."""
        if not text:
            return cls()
        parts = text.split("|")
        try:
            count = int(parts[0])
            if parts[1] == "W":
                return cls(count, True, int(parts[2]))
            return cls(count, False)
        except (ValueError, IndexError):
            return cls()

    def text(self) -> str:
        """The stored form."""
        return f"{self.count}|W|{self.since_ms}" if self.warned else f"{self.count}|A"


@dataclass(frozen=True, slots=True)
class WarningEvent:
    """One warning: a part's equity fell below ``level`` x maintenance while armed."""

    id: str
    kind: MarginMode
    account: str
    symbol: str
    positions: tuple[EventLeg, ...]
    marks: Mapping[str, Decimal]
    equity: Decimal
    maintenance_margin: Decimal
    level: Decimal
    rearm: Decimal
    detected_ts: int
    seq: str
    count: int
    balance: Decimal | None = None

    @property
    def required(self) -> Decimal:
        """``level`` x maintenance: what the equity fell below."""
        return self.level * self.maintenance_margin

    def to_fields(self) -> dict[str, str]:
        """The flat string fields of the stream entry (README, "Near-liquidation warnings")."""
        fields = {
            "id": self.id,
            "kind": self.kind.value,
            "account": self.account,
            "symbol": self.symbol,
            "positions": orjson.dumps([leg.to_json() for leg in self.positions]).decode(),
            "marks": orjson.dumps({s: str(p) for s, p in self.marks.items()}).decode(),
            "equity": str(self.equity),
            "maintenance_margin": str(self.maintenance_margin),
            "required": str(self.required),
            "level": str(self.level),
            "rearm": str(self.rearm),
            "detected_ts": str(self.detected_ts),
            "seq": self.seq,
            "count": str(self.count),
        }
        if self.balance is not None:
            fields["balance"] = str(self.balance)
        return fields

    @classmethod
    def from_fields(cls, fields: Fields) -> WarningEvent:
        """Read a warnings-stream entry; EventError names what is wrong."""
        f = {text_of(k): text_of(v) for k, v in fields.items()}
        try:
            positions = json_field(f["positions"], "positions")
            marks = json_field(f["marks"], "marks")
            if not isinstance(positions, list) or not isinstance(marks, dict):
                raise EventError("positions and marks must be a JSON array and object")
            balance = f.get("balance")
            return cls(
                id=f["id"],
                kind=MarginMode(f["kind"]),
                account=f["account"],
                symbol=f["symbol"],
                positions=tuple(EventLeg.from_json(item) for item in positions),
                marks={str(s): decimal_field(p, f"marks.{s}") for s, p in marks.items()},
                equity=decimal_field(f["equity"], "equity"),
                maintenance_margin=decimal_field(f["maintenance_margin"], "maintenance_margin"),
                level=decimal_field(f["level"], "level"),
                rearm=decimal_field(f["rearm"], "rearm"),
                detected_ts=int_field(f["detected_ts"], "detected_ts"),
                seq=f["seq"],
                count=int_field(f["count"], "count"),
                balance=None if balance is None else decimal_field(balance, "balance"),
            )
        except KeyError as exc:
            raise EventError(f"{exc.args[0]}: missing") from None
        except EventError:
            raise
        except ValueError:  # MarginMode(kind)
            raise EventError(f"kind: must be CROSS or ISOLATED, got {f.get('kind')!r}") from None


@dataclass(frozen=True, slots=True)
class WarningPlan:
    """One part's guarded change: a warning (with its event), a re-arm, new triggers, a clean-up."""

    part: str
    action: Action
    change: ChangeSet
    event: WarningEvent | None = None


# What made an account a candidate: ("C", symbol) or ("I", symbol) of a fired index member.
Fired = Iterable[tuple[str, str]]


def plan_account(
    rules: Rules,
    state: AccountState,
    marks: Mapping[str, Decimal],
    now_ms: int,
    fired: Fired = (),
) -> list[WarningPlan]:
    """Look at every part of an account at ``marks``; return each part's guarded change.

    A part whose symbol (or a cross leg's) has no mark in ``marks`` is left
    as it is (its triggers stay and fire again). Members that fired on a
    symbol where the account no longer has that part are removed there.
    """
    w = rules.warnings
    if w is None:
        return []
    fired = set(fired)
    plans: list[WarningPlan] = []
    cross = _plan_cross(rules, w, state, marks, now_ms, fired)
    if cross is not None:
        plans.append(cross)
    isolated_symbols = set()
    for (mode, symbol), stored in sorted(state.positions.items()):
        if mode is not MarginMode.ISOLATED:
            continue
        isolated_symbols.add(symbol)
        plan = _plan_isolated(rules, w, state, stored.position, stored.status, marks, now_ms)
        if plan is not None:
            plans.append(plan)
    # Parts gone (a closed position) and members left on a symbol without the part.
    cleared = set()
    for name in state.warnings:
        if name.startswith("warn|I|") and name[7:] not in isolated_symbols:
            cleared.add(name[7:])
            plans.append(_clear(rules, state, name, [name[7:]]))
    stale = sorted({s for kind, s in fired if kind == "I"} - isolated_symbols - cleared)
    if stale:
        cs = _guarded(rules, state)
        member = index_member(MarginMode.ISOLATED, state.account)
        for symbol in stale:
            _unindex(cs, rules.keys, symbol, member)
        plans.append(WarningPlan(isolated_part(stale[0]), "clear", cs))
    return plans


def _guarded(rules: Rules, state: AccountState, part: str | None = None) -> ChangeSet:
    cs = ChangeSet(rules.keys, state.account).expect_version(state.version)
    if part is not None:
        cs.field_is(rules.keys.account(state.account), part, state.warnings.get(part))
    return cs


def _plan_cross(
    rules: Rules,
    w: WarningRules,
    state: AccountState,
    marks: Mapping[str, Decimal],
    now_ms: int,
    fired: set[tuple[str, str]],
) -> WarningPlan | None:
    legs = state.cross_legs if state.status is Status.OPEN else []
    leg_symbols = {leg.symbol for leg in legs}
    stale = sorted({s for kind, s in fired if kind == "C" and s not in leg_symbols})
    if not legs:
        if CROSS_PART in state.warnings or stale:
            symbols = sorted({leg.symbol for leg in state.cross_legs} | set(stale))
            return _clear(rules, state, CROSS_PART, symbols)
        return None
    if any(leg.symbol not in marks for leg in legs):
        return None  # held: its triggers stay and fire again
    used = {leg.symbol: marks[leg.symbol] for leg in legs}
    priced = margin.evaluate_cross(state.balance, legs, rules.models, used)
    st = PartState.parse(state.warnings.get(CROSS_PART))
    cs = _guarded(rules, state, CROSS_PART)
    member = index_member(MarginMode.CROSS, state.account)
    for symbol in stale:
        _unindex(cs, rules.keys, symbol, member)
    acct_key = rules.keys.account(state.account)
    warned_key = rules.keys.warned(MarginMode.CROSS)
    if not st.warned:
        if priced.equity - w.level * priced.maintenance < 0:
            fired_on = next((s for kind, s in sorted(fired) if kind == "C" and s in used), "")
            event = WarningEvent(
                id=f"{state.account}:WARNING:CROSS:{st.count + 1}",
                kind=MarginMode.CROSS,
                account=state.account,
                symbol=fired_on,
                positions=tuple(EventLeg.of(leg, used[leg.symbol]) for leg in legs),
                marks=used,
                equity=priced.equity,
                maintenance_margin=priced.maintenance,
                level=w.level,
                rearm=w.rearm,
                detected_ts=now_ms,
                seq="" if state.seq is None else str(state.seq),
                count=st.count + 1,
                balance=state.balance,
            )
            now = PartState(st.count + 1, True, now_ms)
            cs.hset(acct_key, CROSS_PART, now.text())
            cs.zadd(warned_key, now_ms, state.account)
            _cross_bands(cs, rules, w, state, legs, used, member, rearm=True)
            _emit(cs, rules, event)
            return WarningPlan(CROSS_PART, "warn", cs, event)
        _cross_bands(cs, rules, w, state, legs, used, member, rearm=False)
        return WarningPlan(CROSS_PART, "band", cs)
    if priced.equity - w.rearm * priced.maintenance >= 0:
        cs.hset(acct_key, CROSS_PART, replace(st, warned=False).text())
        cs.zrem(warned_key, state.account)
        _cross_bands(cs, rules, w, state, legs, used, member, rearm=False)
        return WarningPlan(CROSS_PART, "rearm", cs)
    _cross_bands(cs, rules, w, state, legs, used, member, rearm=True)
    return WarningPlan(CROSS_PART, "band", cs)


def _cross_bands(
    cs: ChangeSet,
    rules: Rules,
    w: WarningRules,
    state: AccountState,
    legs: list[Position],
    marks: Mapping[str, Decimal],
    member: str,
    *,
    rearm: bool,
) -> None:
    """Index a cross account's legs at its warning bands (armed) or re-arm bands (in warning)."""
    try:
        if rearm:
            bands = margin.recovery_bands(state.balance, legs, w.rearm_models, marks)
        else:
            bands = [
                _early(t) for t in margin.trigger_bands(state.balance, legs, w.warn_models, marks)
            ]
    except (ArithmeticError, MarginError):
        bands = []  # on the level itself: looked at on every tick
    for i, leg in enumerate(legs):
        _index(cs, rules, leg.symbol, member, bands[i] if bands else None, rearm=rearm)


def _plan_isolated(
    rules: Rules,
    w: WarningRules,
    state: AccountState,
    position: Position,
    status: Status,
    marks: Mapping[str, Decimal],
    now_ms: int,
) -> WarningPlan | None:
    symbol = position.symbol
    part = isolated_part(symbol)
    if status is not Status.OPEN:
        return _clear(rules, state, part, [symbol]) if part in state.warnings else None
    mark = marks.get(symbol)
    if mark is None:
        return None
    keys = rules.keys
    model = rules.models[symbol]
    equity = margin.isolated_equity(position, mark)
    mm = margin.isolated_maintenance(position, mark, model)
    st = PartState.parse(state.warnings.get(part))
    cs = _guarded(rules, state, part)
    member = index_member(MarginMode.ISOLATED, state.account)
    acct_key = keys.account(state.account)
    warned_key = keys.warned(MarginMode.ISOLATED)
    warned_member = f"{state.account}|{symbol}"
    if not st.warned:
        if equity - w.level * mm < 0:
            event = WarningEvent(
                id=f"{state.account}:WARNING:ISOLATED:{symbol}:{st.count + 1}",
                kind=MarginMode.ISOLATED,
                account=state.account,
                symbol=symbol,
                positions=(EventLeg.of(position, mark),),
                marks={symbol: mark},
                equity=equity,
                maintenance_margin=mm,
                level=w.level,
                rearm=w.rearm,
                detected_ts=now_ms,
                seq="" if state.seq is None else str(state.seq),
                count=st.count + 1,
            )
            now = PartState(st.count + 1, True, now_ms)
            cs.hset(acct_key, part, now.text())
            cs.zadd(warned_key, now_ms, warned_member)
            _index(
                cs,
                rules,
                symbol,
                member,
                _isolated_triggers(w, position, mark, rearm=True),
                rearm=True,
            )
            _emit(cs, rules, event)
            return WarningPlan(part, "warn", cs, event)
        _index(
            cs,
            rules,
            symbol,
            member,
            _isolated_triggers(w, position, mark, rearm=False),
            rearm=False,
        )
        return WarningPlan(part, "band", cs)
    if equity - w.rearm * mm >= 0:
        cs.hset(acct_key, part, replace(st, warned=False).text())
        cs.zrem(warned_key, warned_member)
        _index(
            cs,
            rules,
            symbol,
            member,
            _isolated_triggers(w, position, mark, rearm=False),
            rearm=False,
        )
        return WarningPlan(part, "rearm", cs)
    _index(cs, rules, symbol, member, _isolated_triggers(w, position, mark, rearm=True), rearm=True)
    return WarningPlan(part, "band", cs)


def _isolated_triggers(
    w: WarningRules, position: Position, mark: Decimal, *, rearm: bool
) -> margin.Triggers:
    """An isolated position's warning triggers (armed) or re-arm triggers (in warning)."""
    if not rearm:
        return _early(margin.isolated_triggers(position, w.warn_models[position.symbol]))
    assert position.margin is not None  # an ISOLATED position has one
    target = position.qty * position.entry_price - position.margin
    try:
        return margin.recovery_triggers(position.qty, w.rearm_models[position.symbol], target, mark)
    except (ArithmeticError, MarginError):
        return margin.Triggers(mark, mark)


def _clear(rules: Rules, state: AccountState, part: str, symbols: list[str]) -> WarningPlan:
    """Forget a part that is gone or being liquidated: its state, its triggers, its warning."""
    keys = rules.keys
    cs = _guarded(rules, state, part)
    cs.hdel(keys.account(state.account), part)
    if part == CROSS_PART:
        cs.zrem(keys.warned(MarginMode.CROSS), state.account)
        member = index_member(MarginMode.CROSS, state.account)
    else:
        cs.zrem(keys.warned(MarginMode.ISOLATED), f"{state.account}|{part[7:]}")
        member = index_member(MarginMode.ISOLATED, state.account)
    for symbol in symbols:
        _unindex(cs, keys, symbol, member)
    return WarningPlan(part, "clear", cs)


def _emit(cs: ChangeSet, rules: Rules, event: WarningEvent) -> None:
    assert rules.warnings is not None
    cs.once(rules.keys.warn_id(event.id), rules.liq_id_ttl)
    cs.xadd(rules.keys.warnings, event.to_fields(), rules.warnings.max_len)


def _early(triggers: margin.Triggers) -> margin.Triggers:
    """Move warning triggers a hair toward the mark (re-arm triggers come so already)."""
    down, up = triggers.down, triggers.up
    return margin.Triggers(
        None if down is None else down * margin.EARLY_DOWN,
        None if up is None else up * margin.EARLY_UP,
    )


def _index(
    cs: ChangeSet,
    rules: Rules,
    symbol: str,
    member: str,
    triggers: margin.Triggers | None,
    *,
    rearm: bool,
) -> None:
    """Put ``member`` in one kind of set (warn or rearm) of ``symbol``, out of the other.

    ``triggers`` None: a candidate on every tick of the symbol.
    """
    keys = rules.keys
    _unindex(cs, keys, symbol, member, warn=rearm, rearm=not rearm)
    index = keys.rearm_index if rearm else keys.warn_index
    if triggers is None:
        cs.zadd(index(symbol, "down"), ALWAYS_DOWN, member)
        cs.zrem(index(symbol, "up"), member)
    else:
        set_triggers(cs, rules, symbol, member, triggers, index)


def _unindex(
    cs: ChangeSet, keys: Keys, symbol: str, member: str, *, warn: bool = True, rearm: bool = True
) -> None:
    for direction in DIRECTIONS:
        if warn:
            cs.zrem(keys.warn_index(symbol, direction), member)
        if rearm:
            cs.zrem(keys.rearm_index(symbol, direction), member)
