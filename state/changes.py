"""A change set: the guarded, all-or-nothing write that ``lua/commit.lua`` applies."""

from __future__ import annotations

from typing import Any

import orjson

from state.keys import Keys
from state.models import Seq


class ChangeSet:
    """Collect the guards and writes of one atomic change to one account.

    Every write names its key; the script receives the keys in KEYS (all in
    the shard's hash slot) and the writes as one JSON argument.
    """

    def __init__(self, keys: Keys, account: str) -> None:
        self.account = account
        self._keys: list[str] = [keys.account(account)]
        self._slots: dict[str, int] = {self._keys[0]: 1}
        self._spec: dict[str, Any] = {}

    def _k(self, key: str) -> int:
        slot = self._slots.get(key)
        if slot is None:
            self._keys.append(key)
            slot = self._slots[key] = len(self._keys)
        return slot

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
        self._spec["lease"] = [self._k(key), owner]
        return self

    def still_pending(self, key: str, group: str, entry_id: str) -> ChangeSet:
        """Commit only while input entry ``entry_id`` is pending in ``group`` (else DONE)."""
        self._spec["pending"] = [self._k(key), group, entry_id]
        return self

    def once(self, key: str, ttl_s: int) -> ChangeSet:
        """Commit only if ``key`` does not exist; then write it with the event id."""
        self._spec["nx"] = [self._k(key), ttl_s]
        return self

    def xadd(self, key: str, fields: dict[str, str]) -> ChangeSet:
        """Append one entry to the stream at ``key``."""
        flat: list[str] = []
        for name, value in fields.items():
            flat += [name, value]
        self._spec["xadd"] = [self._k(key), flat]
        return self

    def ack(self, key: str, group: str, *entry_ids: str) -> ChangeSet:
        """Acknowledge input entries in the same step."""
        self._spec["ack"] = [self._k(key), group, list(entry_ids)]
        return self

    def bump(self, by: int = 1) -> ChangeSet:
        """Add ``by`` to the account version."""
        self._spec["bump"] = by
        return self

    def hset(self, key: str, field: str, value: str) -> ChangeSet:
        """Set a hash field."""
        return self._add("hset", self._k(key), field, value)

    def hdel(self, key: str, field: str) -> ChangeSet:
        """Delete a hash field."""
        return self._add("hdel", self._k(key), field)

    def zadd(self, key: str, score: float, member: str) -> ChangeSet:
        """Add or re-score a sorted-set member."""
        return self._add("zadd", self._k(key), repr(score), member)

    def zrem(self, key: str, member: str) -> ChangeSet:
        """Remove a sorted-set member."""
        return self._add("zrem", self._k(key), member)

    def absorb(self, other: ChangeSet) -> ChangeSet:
        """Append ``other``'s writes after this one's (guards and acks are not taken)."""
        for op in other._spec.get("ops", []):
            name, slot, *args = op
            self._add(name, self._k(other._keys[slot - 1]), *args)
        return self

    @property
    def keys(self) -> list[str]:
        """KEYS for the script."""
        return list(self._keys)

    def argument(self) -> bytes:
        """ARGV[1] for the script."""
        return orjson.dumps(self._spec)
