"""A change set: the guarded, all-or-nothing write that ``lua/commit.lua`` applies."""

from __future__ import annotations

from typing import Any

import orjson

from state.keys import Keys
from state.models import Seq


class ChangeSet:
    """Collect the guards and writes of one atomic change to one account.

    Every write names its key, and the whole change travels as one JSON
    argument: every key of it is in the shard's hash slot (the account's
    key, :attr:`key`, routes the call), and one argument per change set
    keeps a chunk of hundreds of them cheap to send.
    """

    def __init__(self, keys: Keys, account: str) -> None:
        self.account = account
        self.key = keys.account(account)
        self._spec: dict[str, Any] = {"acct": self.key}

    def _add(self, op: str, *args: Any) -> ChangeSet:
        self._spec.setdefault("ops", []).append([op, *args])
        return self

    def expect_version(self, version: int) -> ChangeSet:
        """Commit only if the account's version is still ``version``."""
        self._spec["version"] = str(version)
        return self

    def seq(self, seq: Seq) -> ChangeSet:
        """Commit only if ``seq`` is newer than the account's (else acknowledge: DUP)."""
        self._spec["seq"] = str(seq)
        return self

    def set_seq(self, seq: Seq) -> ChangeSet:
        """Store ``seq`` as the account's last applied seq."""
        self._spec["set_seq"] = str(seq)
        return self

    def lease(self, key: str, owner: str) -> ChangeSet:
        """Commit only while ``owner`` holds the lease at ``key``."""
        self._spec["lease"] = [key, owner]
        return self

    def still_pending(self, key: str, group: str, entry_id: str) -> ChangeSet:
        """Commit only while input entry ``entry_id`` is pending in ``group`` (else DONE)."""
        self._spec["pending"] = [key, group, entry_id]
        return self

    def once(self, key: str, ttl_s: int) -> ChangeSet:
        """Commit only if ``key`` does not exist; then write it with the event id."""
        self._spec["nx"] = [key, ttl_s]
        return self

    def field_is(self, key: str, field: str, value: str | None) -> ChangeSet:
        """Commit only if hash field ``field`` of ``key`` holds ``value`` (None: absent)."""
        self._spec["field"] = [key, field, "" if value is None else value]
        return self

    def xadd(self, key: str, fields: dict[str, str], max_len: int | None = None) -> ChangeSet:
        """Append one entry to the stream at ``key`` (trimmed to about ``max_len``)."""
        flat: list[str] = []
        for name, value in fields.items():
            flat += [name, value]
        self._spec["xadd"] = [key, flat] if max_len is None else [key, flat, max_len]
        return self

    def ack(self, key: str, group: str, *entry_ids: str) -> ChangeSet:
        """Acknowledge input entries in the same step."""
        self._spec["ack"] = [key, group, list(entry_ids)]
        return self

    def bump(self, by: int = 1) -> ChangeSet:
        """Add ``by`` to the account version."""
        self._spec["bump"] = by
        return self

    def hset(self, key: str, field: str, value: str) -> ChangeSet:
        """Set a hash field."""
        return self._add("hset", key, field, value)

    def hdel(self, key: str, field: str) -> ChangeSet:
        """Delete a hash field."""
        return self._add("hdel", key, field)

    def zadd(self, key: str, score: float, member: str) -> ChangeSet:
        """Add or re-score a sorted-set member."""
        return self._add("zadd", key, repr(score), member)

    def zrem(self, key: str, member: str) -> ChangeSet:
        """Remove a sorted-set member."""
        return self._add("zrem", key, member)

    def sadd(self, key: str, member: str) -> ChangeSet:
        """Add a set member."""
        return self._add("sadd", key, member)

    def srem(self, key: str, member: str) -> ChangeSet:
        """Remove a set member."""
        return self._add("srem", key, member)

    def absorb(self, other: ChangeSet) -> ChangeSet:
        """Append ``other``'s writes after this one's (guards and acks are not taken)."""
        ops = other._spec.get("ops")
        if ops:
            self._spec.setdefault("ops", []).extend(ops)
        return self

    def argument(self) -> bytes:
        """The change set as the commit script takes it."""
        return orjson.dumps(self._spec)
