"""Index writes: where each position or cross leg sits in its symbol's ``down`` and ``up`` sets.

An isolated position is scored at its exact liquidation prices; a cross leg
at its trigger band (docs/design.md, "CROSS accounts: trigger bands"). Every
score is rounded toward the mark, so the index is a filter that is never late.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal

from state import margin
from state.account import AccountState, Status
from state.changes import ChangeSet
from state.keys import DIRECTIONS, Direction, index_member
from state.models import MarginMode, Position
from state.rules import Rules

# Scores that make a member a candidate on every tick of its symbol: used for
# a cross account whose bands cannot be computed yet (a leg without a LIVE
# mark, or health exactly 0), so that the next tick decides it.
ALWAYS_DOWN = math.inf


def set_triggers(
    cs: ChangeSet,
    rules: Rules,
    symbol: str,
    member: str,
    triggers: margin.Triggers,
    index: Callable[[str, Direction], str] | None = None,
) -> None:
    """Score ``member`` at ``triggers`` in both sets of ``symbol`` (absent side: removed).

    ``index``: the sets' names (default the liquidation index, ``Keys.index``).
    """
    key_of = index or rules.keys.index
    for direction, price in zip(DIRECTIONS, (triggers.down, triggers.up), strict=True):
        key = key_of(symbol, direction)
        if price is None:
            cs.zrem(key, member)
        else:
            cs.zadd(key, margin.index_score(price, down=direction == "down"), member)


def unindex(cs: ChangeSet, rules: Rules, symbol: str, member: str) -> None:
    """Remove ``member`` from both sets of ``symbol``."""
    for direction in DIRECTIONS:
        cs.zrem(rules.keys.index(symbol, direction), member)


def index_isolated(cs: ChangeSet, rules: Rules, position: Position) -> margin.Triggers:
    """Score an isolated position at its exact liquidation prices; return them."""
    triggers = margin.isolated_triggers(position, rules.models[position.symbol])
    member = index_member(MarginMode.ISOLATED, position.account)
    set_triggers(cs, rules, position.symbol, member, triggers)
    return triggers


def always(cs: ChangeSet, rules: Rules, state: AccountState) -> None:
    """Make every cross leg of the account a candidate on each tick of its symbol."""
    member = index_member(MarginMode.CROSS, state.account)
    for leg in state.cross_legs:
        cs.zadd(rules.keys.index(leg.symbol, "down"), ALWAYS_DOWN, member)
        cs.zrem(rules.keys.index(leg.symbol, "up"), member)


def index_cross(
    cs: ChangeSet,
    rules: Rules,
    state: AccountState,
    marks: Mapping[str, Decimal],
    priced: margin.CrossState | None = None,
) -> margin.CrossState | None:
    """Write fresh trigger bands for every cross leg, or always-scores when they can't be had.

    ``priced``: the account already evaluated at ``marks``, if the caller has it.
    Returns the account priced at ``marks`` (None when a leg has no mark).
    """
    legs = state.cross_legs
    member = index_member(MarginMode.CROSS, state.account)
    if state.status is Status.LIQUIDATING:
        for leg in legs:
            unindex(cs, rules, leg.symbol, member)
        return None
    if not legs:
        return None
    if all(leg.symbol in marks for leg in legs):
        if priced is None:
            priced = margin.evaluate_cross(state.balance, legs, rules.models, marks)
        if priced.health > 0:
            bands = margin.trigger_bands(state.balance, legs, rules.models, marks, priced=priced)
            for leg, triggers in zip(legs, bands, strict=True):
                set_triggers(cs, rules, leg.symbol, member, triggers)
            return priced
    always(cs, rules, state)
    return priced
