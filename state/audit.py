"""The self-audit's checks: does an account's index entry say what its state says? Pure.

The engine trusts the index to hand it every account a mark may have made
liquidatable; the audit re-derives, account by account, what the index must
hold and compares it with what it holds:

- an OPEN isolated position: scored at exactly its liquidation prices (the
  scores :mod:`state.bands` writes), nothing else;
- an OPEN cross account: a member on every leg's symbol, and bands that are
  sound at the LIVE marks: with every leg at its own trigger at once (the
  worst case while no trigger has fired), health is still positive;
- anything LIQUIDATING, and any member whose position is gone: not indexed.

A disagreement is a mismatch, repaired by a guarded change set (the same
writes the input path makes). An account the verdict finds liquidatable at
the LIVE marks is a *miss*, decided by the engine at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from state import margin
from state.account import AccountState, Status
from state.bands import index_cross, index_isolated, unindex
from state.changes import ChangeSet
from state.decisions import liquidatable_state
from state.keys import DIRECTIONS, Direction, index_member
from state.models import MarginMode, Position
from state.rules import Rules

# (symbol, direction, member) -> the member's score in that set, None if absent.
Slot = tuple[str, Direction, str]
Scores = Mapping[Slot, float | None]


@dataclass(frozen=True, slots=True)
class Finding:
    """What the audit found in one account: misses, mismatches, and the repair."""

    account: str
    missed: frozenset[str] = frozenset()
    mismatches: tuple[str, ...] = ()
    repair: ChangeSet | None = field(default=None, compare=False)


def slots_of(state: AccountState) -> list[Slot]:
    """Every index slot the audit reads for ``state``: both sets, per position held."""
    out: list[Slot] = []
    for mode, symbol in sorted(state.positions):
        member = index_member(mode, state.account)
        out += [(symbol, d, member) for d in DIRECTIONS]
    return out


def audit_account(
    rules: Rules, state: AccountState, scores: Scores, marks: Mapping[str, Decimal]
) -> Finding:
    """Check one account's index entries and verdict at ``marks`` (the LIVE ones)."""
    mismatches: list[str] = []
    cs = ChangeSet(rules.keys, state.account).expect_version(state.version)
    repaired = False
    for (mode, symbol), stored in sorted(state.positions.items()):
        if mode is not MarginMode.ISOLATED:
            continue
        member = index_member(mode, state.account)
        want: dict[Direction, float | None] = {"down": None, "up": None}
        if stored.status is Status.OPEN:
            triggers = margin.isolated_triggers(stored.position, rules.models[symbol])
            for d, price in zip(DIRECTIONS, (triggers.down, triggers.up), strict=True):
                want[d] = None if price is None else margin.index_score(price, down=d == "down")
        have = {d: scores.get((symbol, d, member)) for d in DIRECTIONS}
        if have != want:
            mismatches.append(f"{member} on {symbol}: indexed {have}, should be {want}")
            if stored.status is Status.OPEN:
                index_isolated(cs, rules, stored.position)
            else:
                unindex(cs, rules, symbol, member)
            repaired = True
    cross = _cross_mismatch(rules, state, scores)
    if cross is not None:
        mismatches.append(cross)
        index_cross(cs, rules, state, marks)
        repaired = True
    missed = frozenset(liquidatable_state(rules, state, marks))
    return Finding(state.account, missed, tuple(mismatches), cs if repaired else None)


def _cross_mismatch(rules: Rules, state: AccountState, scores: Scores) -> str | None:
    """Describe what is wrong with the account's cross entries, or None.

    Sound bands keep health positive with every leg at its trigger at once
    (the worst the marks can do before one fires): health there is at least
    ``H0`` less the slack handed out, and scores rounded toward the mark only
    make it larger. A long with no trigger is one that cannot lose its share
    whatever its price: its worst is a price of 0, where its value is 0.
    """
    legs = state.cross_legs
    if not legs:
        return None
    member = index_member(MarginMode.CROSS, state.account)
    have = {
        (leg.symbol, d): scores.get((leg.symbol, d, member)) for leg in legs for d in DIRECTIONS
    }
    if state.status is not Status.OPEN:
        indexed = sorted(f"{s}:{d}" for (s, d), v in have.items() if v is not None)
        return f"{member} is LIQUIDATING yet indexed on {indexed}" if indexed else None
    always = [leg.symbol for leg in legs if have[leg.symbol, "down"] == math.inf]
    if always:
        # Looked at on every tick: sound if every leg is, else partly banded.
        if len(always) == len(legs):
            return None
        return f"{member}: looked at on every tick of {always} only"
    balance = state.balance
    priced: list[Position] = []
    corner: dict[str, Decimal] = {}
    for leg in legs:
        down, up = have[leg.symbol, "down"], have[leg.symbol, "up"]
        if leg.qty < 0:
            if up is None:
                return f"{member} on {leg.symbol}: a short leg without an up trigger"
            worst = Decimal(up)
        else:
            worst = Decimal(down) if down is not None else Decimal(0)
        if worst <= 0:
            # At a price of 0 a leg is worth 0: only what it paid remains.
            balance -= leg.qty * leg.entry_price
            continue
        priced.append(leg)
        corner[leg.symbol] = worst
    health = margin.evaluate_cross(balance, priced, rules.models, corner).health
    if health <= 0:
        return f"{member}: bands unsound, health {health} with every leg at its trigger"
    return None
