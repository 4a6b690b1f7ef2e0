"""The data-generation marker: how a daemon tells an empty Redis from a Redis that lost its data.

``<prefix>:{0}:generation`` holds JSON ``{"id", "created_ms", "acknowledged",
"lost", "acknowledged_ms"}``. The first daemon to find no marker and no
record of one writes a new, acknowledged generation. A daemon that has seen
generation X and then finds no marker, or another generation it has not
acknowledged, knows Redis lost its data (restarted without persistence, a
replica promoted empty, a FLUSHALL): it writes a marker that says so
(``acknowledged: false``, ``lost: X``) and decides nothing until an operator,
after reloading the book, runs ``liqwatch ack-data-loss``, which sets
``acknowledged``. Every write is one script (``lua/generation.lua``), so two
daemons and an operator racing each other agree on one marker.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from state.errors import StoreError
from state.keys import Keys
from state.store.scripts import Script


@dataclass(frozen=True, slots=True)
class Generation:
    """One data generation: its id, whether it is acknowledged, and what it replaced."""

    id: str
    created_ms: int
    acknowledged: bool
    lost: str | None = None
    acknowledged_ms: int | None = None

    def to_json(self) -> bytes:
        """Serialize for the marker key."""
        return orjson.dumps(
            {
                "id": self.id,
                "created_ms": self.created_ms,
                "acknowledged": self.acknowledged,
                "lost": self.lost,
                "acknowledged_ms": self.acknowledged_ms,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Generation:
        """Read a marker; StoreError if it is not one."""
        try:
            d = orjson.loads(raw)
            return cls(
                str(d["id"]),
                int(d["created_ms"]),
                bool(d["acknowledged"]),
                None if d.get("lost") is None else str(d["lost"]),
                None if d.get("acknowledged_ms") is None else int(d["acknowledged_ms"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"the generation marker is unreadable: {exc}") from None


def new_id() -> str:
    """Return a fresh generation id."""
    return uuid.uuid4().hex


class GenerationStore:
    """Read and write the marker of one shard, each write one atomic script call."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.generation
        self._script = Script(redis, "generation")

    async def read(self) -> Generation | None:
        """Return the marker, or None if Redis holds none."""
        raw = await self.redis.get(self.key)
        return None if raw is None else Generation.from_json(raw)

    async def _run(self, op: str, expect: str, new: Generation) -> Generation:
        raw = await self._script.one([self.key], [op, expect, new.to_json()])
        return Generation.from_json(raw)

    async def create(self, now_ms: int) -> tuple[Generation, bool]:
        """Write a new acknowledged generation unless a marker exists; (the marker, made now)."""
        fresh = Generation(new_id(), now_ms, True)
        marker = await self._run("create", "", fresh)
        return marker, marker.id == fresh.id

    async def mark_lost(self, seen: str, now_ms: int) -> Generation:
        """Record that generation ``seen`` was lost, unless the marker already says so.

        Replaces a missing marker, or one of another generation that is still
        acknowledged (a daemon that started on the emptied Redis could not
        know); returns the marker as it stands.
        """
        return await self._run("lost", seen, Generation(new_id(), now_ms, False, seen))

    async def acknowledge(self, now_ms: int) -> tuple[Generation | None, Generation]:
        """Acknowledge the marker (making one if Redis holds none); return (before, after)."""
        before = await self.read()
        expect = "" if before is None else before.id
        fresh = Generation(new_id(), now_ms, True, "unknown", now_ms)
        after = await self._run("ack", expect, fresh)
        return before, after
