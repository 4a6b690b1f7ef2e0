"""The self-audit: a background pass over every account and every index set, paced.

Each step takes one batch (``audit.batch`` accounts or index members) and
then sleeps ``audit.interval``, so the audit costs a bounded share of Redis
and never sits between a tick and its decision. Accounts: re-read, checked
by :func:`state.audit.audit_account`; an account liquidatable at the LIVE
marks that nobody decided raises ``audit.missed`` and is handed to the
engine at once; an index entry that disagrees with its account raises
``audit.index_mismatch`` and is repaired by a guarded commit (a conflict
just means the account changed meanwhile: the next pass looks again).
Index sets: every member whose position is gone or not OPEN is removed.
Nothing is audited while the engine is held (Redis lost its data).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal

import structlog

from state.account import AccountState, Status
from state.audit import audit_account, slots_of
from state.changes import ChangeSet
from state.errors import MarginError, StoreError
from state.keys import DIRECTIONS, Direction, split_index_member
from state.models import MarginMode
from state.rules import Rules
from state.store import Store
from watcher.daemon.link import RedisLink


class Auditor:
    """Walk the accounts, then each index set, one paced batch at a time, forever."""

    def __init__(
        self,
        store: Store,
        rules: Rules,
        link: RedisLink,
        *,
        live_marks: Callable[[], dict[str, Decimal]],
        nudge: Callable[[list[str]], None],
        held: Callable[[], bool],
        interval: float = 1.0,
        batch: int = 200,
    ) -> None:
        self.store = store
        self.rules = rules
        self.link = link
        self.live_marks = live_marks
        self.nudge = nudge
        self.held = held
        self.interval = interval
        self.batch = batch
        self.counters: Counter[str] = Counter()
        self._log = structlog.get_logger().bind(component="audit")

    async def run(self, stop: asyncio.Event) -> None:
        """Audit, pass after pass, until ``stop`` is set."""
        while await self.audit_pass(stop):
            self.counters["audit_passes"] += 1
            self._log.info("audit.pass_done", **self._totals())

    async def audit_pass(self, stop: asyncio.Event) -> bool:
        """Walk every account, then every index set, once; False if stopped before the end."""
        cursor = 0
        while await self._paced(stop):
            cursor = await self._account_step(cursor)
            if cursor == 0:
                break
        for symbol in sorted(self.rules.markets):
            for direction in DIRECTIONS:
                cursor = 0
                while await self._paced(stop):
                    cursor = await self._index_step(symbol, direction, cursor)
                    if cursor == 0:
                        break
        return not stop.is_set()

    async def _paced(self, stop: asyncio.Event) -> bool:
        """Wait ``interval`` (and while the engine is held); False once ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await stop.wait()
            if not self.held():
                break
        return not stop.is_set()

    def _totals(self) -> dict[str, int]:
        return {k: v for k, v in self.counters.items() if k.startswith("audit_")}

    async def _account_step(self, cursor: int) -> int:
        nxt, names = await self.link.call(
            "audit.scan", lambda: self.store.scan_accounts(cursor, self.batch)
        )
        if names:
            await self.audit_accounts(names)
        return nxt

    async def audit_accounts(self, names: Iterable[str]) -> None:
        """Check these accounts now: verdicts at the LIVE marks, index entries; repair."""
        broken: dict[str, StoreError] = {}
        states = await self.link.call("audit.read", lambda: self.store.load_many(names, broken))
        slots = [slot for state in states.values() for slot in slots_of(state)]
        scores = (
            await self.link.call("audit.index", lambda: self.store.index_scores(slots))
            if slots
            else {}
        )
        marks = self.live_marks()
        repairs: list[ChangeSet] = []
        missed: list[str] = []
        for account, state in states.items():
            self.counters["audit_accounts_checked"] += 1
            try:
                finding = audit_account(self.rules, state, scores, marks)
            except (ArithmeticError, MarginError) as exc:
                self._log.error("audit.undecidable", account=account, error=repr(exc))
                continue
            if finding.missed:
                self.counters["audit_missed"] += 1
                missed.append(account)
                self._log.error(
                    "audit.missed", account=account, liquidatable=sorted(finding.missed)
                )
            if finding.repair is not None:
                self.counters["audit_index_mismatches"] += 1
                repairs.append(finding.repair)
                self._log.error(
                    "audit.index_mismatch", account=account, found=list(finding.mismatches)
                )
        if missed:
            self.nudge(missed)
        await self._repair(repairs)

    async def _index_step(self, symbol: str, direction: Direction, cursor: int) -> int:
        nxt, members = await self.link.call(
            "audit.scan_index",
            lambda: self.store.scan_index(symbol, direction, cursor, self.batch),
        )
        if members:
            await self._drop_stale(symbol, direction, members)
        return nxt

    async def _drop_stale(
        self, symbol: str, direction: Direction, members: list[tuple[str, float]]
    ) -> None:
        """Remove the members of one index set whose position is gone or not OPEN."""
        owners = {split_index_member(m)[1]: m for m, _ in members}
        broken: dict[str, StoreError] = {}
        states = await self.link.call("audit.read", lambda: self.store.load_many(owners, broken))
        repairs = []
        for member, _ in members:
            mode, account = split_index_member(member)
            state = states.get(account)
            if state is None or _watched(state, mode, symbol):
                continue
            self.counters["audit_index_mismatches"] += 1
            self._log.error(
                "audit.index_mismatch",
                account=account,
                found=[f"{member} in {symbol}:{direction} without an OPEN position"],
            )
            cs = ChangeSet(self.rules.keys, account).expect_version(state.version)
            repairs.append(cs.zrem(self.rules.keys.index(symbol, direction), member))
        await self._repair(repairs)

    async def _repair(self, repairs: list[ChangeSet]) -> None:
        if not repairs:
            return
        results = await self.link.call("audit.repair", lambda: self.store.commit_many(repairs))
        self.counters["audit_repairs"] += sum(1 for r in results if r.ok)


def _watched(state: AccountState, mode: MarginMode, symbol: str) -> bool:
    """Whether ``state`` has an OPEN position that an index member (mode, symbol) stands for."""
    if mode is MarginMode.CROSS:
        return state.status is Status.OPEN and any(leg.symbol == symbol for leg in state.cross_legs)
    stored = state.positions.get((MarginMode.ISOLATED, symbol))
    return stored is not None and stored.status is Status.OPEN
