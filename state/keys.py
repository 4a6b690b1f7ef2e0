"""Every Redis key liqwatch uses, in one place.

All keys of a shard carry its tag in braces (``liq:{0}:...``) so that an
account's keys, the index sets and the streams of one shard share a hash slot
and one Lua script may touch them all, also under Redis Cluster. The only key
outside a shard is the process heartbeat, ``<prefix>:health`` (README, "Operator state in Redis").

- ``P:{s}:acct:<account>`` hash: balance, seq, version, status, liq_id, liq_ts,
  and ``lev|<MODE>|<symbol>`` leverage settings.
- ``P:{s}:pos:<account>`` hash: ``<MODE>|<symbol>`` -> position JSON
  (qty, entry_price, margin, leverage, status, liq_id).
- ``P:{s}:mark:<symbol>`` hash: price, venue_ts, recv_ms, status (LIVE/STALE),
  source, done_ts (the venue_ts of the last mark whose decisions the shard
  has all committed).
- ``P:{s}:idx:<symbol>:down`` and ``:up`` zsets: ``C|<account>`` (a cross
  leg) or ``I|<account>`` (an isolated position) scored by trigger price; a
  member of ``down`` is looked at when the mark falls to its score or below
  (longs), of ``up`` when it rises to its score or above (shorts, and the far
  cap of an orderly long).
- ``P:{s}:liquidating`` zset: ``C|<account>`` or ``I|<account>|<symbol>`` -> claim ms.
- ``P:{s}:liqid:<id>`` string: idempotency key of a decision (SET NX).
- ``P:{s}:in``, ``P:{s}:in:dead``, ``P:{s}:events`` streams: input, dead
  letters, liquidation events.
- ``P:{s}:in:lease`` string: the instance applying input now (TTL).
- ``P:{s}:stats`` hash: counters.
- ``P:{s}:generation`` string: the data-generation marker (JSON).
- ``P:{s}:warn:<symbol>:down`` and ``:up`` zsets: near-liquidation warning
  triggers of armed members (same members and rounding as ``idx``);
  ``P:{s}:rearm:<symbol>:down`` and ``:up``: re-arm triggers of members in
  warning; ``P:{s}:warn:dirty`` set: accounts whose warning state must be
  looked at again (an input update or a claim changed them).
- ``P:{s}:warned:cross`` and ``P:{s}:warned:isolated`` zsets: what is in
  warning now (``<account>``, ``<account>|<symbol>``) -> warning ms.
- ``P:{s}:warnings`` stream: warning events; ``P:{s}:warnid:<id>`` string:
  idempotency key of one warning.
- ``P:health`` string: heartbeat JSON with a TTL (one shard: the process's;
  several: ``P:health:<instance>`` per worker).
- ``P:shards`` string: the shard count S the data is laid out for.
- ``P:workers`` zset: the workers sharing the shards, scored by the expiry
  (ms, Redis clock) of their registration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from state.models import MarginMode

Direction = Literal["down", "up"]
DIRECTIONS: tuple[Direction, Direction] = ("down", "up")

# The consumer group that applies the input stream.
INPUT_GROUP = "liqwatch"

CROSS_MEMBER = "C|"
ISOLATED_MEMBER = "I|"


def position_field(mode: MarginMode, symbol: str) -> str:
    """Name a position inside its account's positions hash."""
    return f"{mode.value}|{symbol}"


def split_position_field(name: str) -> tuple[MarginMode, str]:
    """Return (mode, symbol) of a positions-hash field."""
    mode, _, symbol = name.partition("|")
    try:
        return _MODES[mode], symbol
    except KeyError:
        return MarginMode(mode), symbol  # raises the ValueError naming it


_MODES = {m.value: m for m in MarginMode}


def leverage_field(mode: MarginMode, symbol: str) -> str:
    """Name the leverage setting of (symbol, mode) inside the account hash."""
    return f"lev|{mode.value}|{symbol}"


def index_member(mode: MarginMode, account: str) -> str:
    """Name an account's entry in a symbol's index set (the set fixes the symbol)."""
    return (CROSS_MEMBER if mode is MarginMode.CROSS else ISOLATED_MEMBER) + account


def split_index_member(member: str) -> tuple[MarginMode, str]:
    """Return (mode, account) of an index member."""
    mode = MarginMode.CROSS if member.startswith(CROSS_MEMBER) else MarginMode.ISOLATED
    return mode, member[2:]


def liquidating_member(mode: MarginMode, account: str, symbol: str | None = None) -> str:
    """Name an in-flight liquidation in the LIQUIDATING set."""
    if mode is MarginMode.CROSS:
        return CROSS_MEMBER + account
    return f"{ISOLATED_MEMBER}{account}|{symbol}"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one shard under one prefix."""

    prefix: str = "liq"
    shard: int = 0
    # The common start of every key of this shard (made once: every key name uses it).
    base: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", f"{self.prefix}:{{{self.shard}}}")

    def account(self, account: str) -> str:
        """Hash of one account: balance, seq, version, status, leverage settings."""
        return f"{self.base}:acct:{account}"

    def positions(self, account: str) -> str:
        """Hash of one account's positions, both modes."""
        return f"{self.base}:pos:{account}"

    def mark(self, symbol: str) -> str:
        """Hash of one symbol's last mark and its LIVE/STALE status."""
        return f"{self.base}:mark:{symbol}"

    def index(self, symbol: str, direction: Direction) -> str:
        """Sorted set of one (symbol, direction): members scored by trigger price."""
        return f"{self.base}:idx:{symbol}:{direction}"

    @property
    def liquidating(self) -> str:
        """Sorted set of in-flight liquidations scored by claim time (ms)."""
        return f"{self.base}:liquidating"

    def liq_id(self, liq_id: str) -> str:
        """Idempotency key of one liquidation decision."""
        return f"{self.base}:liqid:{liq_id}"

    def warn_index(self, symbol: str, direction: Direction) -> str:
        """Sorted set of the warning triggers of armed members on one (symbol, direction)."""
        return f"{self.base}:warn:{symbol}:{direction}"

    def rearm_index(self, symbol: str, direction: Direction) -> str:
        """Sorted set of the re-arm triggers of members in warning on one (symbol, direction)."""
        return f"{self.base}:rearm:{symbol}:{direction}"

    @property
    def warn_dirty(self) -> str:
        """Set of accounts whose warning state must be looked at again."""
        return f"{self.base}:warn:dirty"

    def warned(self, mode: MarginMode) -> str:
        """Sorted set of what is in warning now, of one kind, scored by warning ms."""
        return f"{self.base}:warned:{mode.value.lower()}"

    @property
    def warnings(self) -> str:
        """Warning events stream."""
        return f"{self.base}:warnings"

    def warn_id(self, warn_id: str) -> str:
        """Idempotency key of one warning."""
        return f"{self.base}:warnid:{warn_id}"

    @property
    def input(self) -> str:
        """Input stream: balance, position and leverage updates."""
        return f"{self.base}:in"

    @property
    def dead(self) -> str:
        """Dead-letter stream: input messages set aside, with the reason."""
        return f"{self.base}:in:dead"

    @property
    def events(self) -> str:
        """Liquidation events stream."""
        return f"{self.base}:events"

    @property
    def input_lease(self) -> str:
        """Lease naming the one instance that applies input now."""
        return f"{self.base}:in:lease"

    @property
    def generation(self) -> str:
        """Data-generation marker: tells an empty Redis from one that lost its data."""
        return f"{self.base}:generation"

    @property
    def stats(self) -> str:
        """Counters hash."""
        return f"{self.base}:stats"

    @property
    def health(self) -> str:
        """Heartbeat of the daemon process (outside any shard, as the README documents it)."""
        return f"{self.prefix}:health"

    def worker_health(self, instance: str) -> str:
        """Heartbeat of one worker when several share the shards."""
        return f"{self.prefix}:health:{instance}"

    @property
    def shard_count(self) -> str:
        """The shard count S the data is laid out for (outside any shard)."""
        return f"{self.prefix}:shards"

    @property
    def workers(self) -> str:
        """Registry of the workers sharing the shards (outside any shard)."""
        return f"{self.prefix}:workers"

    def of_shard(self, shard: int) -> Keys:
        """The keys of another shard under the same prefix."""
        return Keys(self.prefix, shard)

    def mark_pattern(self) -> str:
        """SCAN pattern matching every mark hash of this shard."""
        return f"{self.base}:mark:*"
