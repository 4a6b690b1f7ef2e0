"""Trim a stream to what its consumer groups still need (``lua/trim_acked.lua``).

An entry goes only once every group has had it delivered and acknowledged
it: below the least, over the groups, of the oldest pending id (if any is
pending) or the id after the last-delivered one. The bound and the XTRIM
are one script, so a group reading or acknowledging meanwhile cannot slip
between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from state.store.scripts import Script

Outcome = Literal["trimmed", "no-stream", "no-groups"]
# Entries fetched per XRANGE when counting: bounded replies, no long block of Redis.
COUNT_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class GroupBound:
    """One consumer group's need: every entry from ``bound`` on, ``reason`` pending or delivered."""

    name: str
    pending: int
    oldest_pending: str | None
    last_delivered: str
    bound: str
    reason: str


@dataclass(frozen=True, slots=True)
class TrimResult:
    """What a trim removed (or, dry, would remove) from one stream, and what bounded it."""

    stream: str
    outcome: Outcome
    dry_run: bool
    keep: int
    minid: str | None
    removed: int
    length_before: int
    length_after: int
    keep_bound: str | None
    groups: tuple[GroupBound, ...]

    @property
    def bounded_by(self) -> list[str]:
        """Name what set MINID: the groups whose bound it is, and ``keep`` if it was that."""
        names = [g.name for g in self.groups if g.bound == self.minid]
        if self.keep_bound is not None and self.keep_bound == self.minid:
            names.append("keep")
        return names


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _optional(value: Any) -> str | None:
    return None if value is None or value is False else _text(value)


async def count_entries(redis: aioredis.Redis, stream: str, start: str, end: str) -> int:
    """Count the entries of ``stream`` from ``start`` to ``end`` (XRANGE bounds), page by page."""
    total = 0
    while True:
        page: Any = await redis.xrange(stream, min=start, max=end, count=COUNT_CHUNK)
        total += len(page)
        if len(page) < COUNT_CHUNK:
            return total
        start = "(" + _text(page[-1][0])


async def trim_acked(
    redis: aioredis.Redis, stream: str, *, keep: int = 0, dry_run: bool = False
) -> TrimResult:
    """Remove the entries every group has acknowledged, leaving at least ``keep`` newest."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    reply: Sequence[Any] = await Script(redis, "trim_acked").one([stream], [keep, int(dry_run)])
    status = _text(reply[0])
    if status != "OK":
        length = int(reply[1]) if status == "NOGROUPS" else 0
        outcome: Outcome = "no-groups" if status == "NOGROUPS" else "no-stream"
        return TrimResult(stream, outcome, dry_run, keep, None, 0, length, length, None, ())
    _, raw_minid, raw_removed, before, after, raw_keep, rows = reply
    minid = _text(raw_minid)
    if dry_run:
        # Counted after the script: a figure for the operator, not a promise.
        removed = await count_entries(redis, stream, "-", "(" + minid)
        after = int(before) - removed
    else:
        removed = int(raw_removed)
    groups = tuple(
        GroupBound(_text(n), int(p), _optional(oldest), _text(last), _text(b), _text(why))
        for n, p, oldest, last, b, why in rows
    )
    return TrimResult(
        stream,
        "trimmed",
        dry_run,
        keep,
        minid,
        removed,
        int(before),
        int(after),
        _optional(raw_keep),
        groups,
    )
