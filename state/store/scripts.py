"""Lua scripts, each a file under ``lua/``, called by EVALSHA and reloaded after NOSCRIPT."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError


def lua_source(name: str) -> str:
    """Return the text of ``lua/<name>.lua``."""
    return resources.files("state.store").joinpath(f"lua/{name}.lua").read_text()


class Script:
    """A Lua script called by EVALSHA, loaded again when Redis has lost it (NOSCRIPT).

    redis-py's own Script objects check SCRIPT EXISTS in a round trip of
    their own before every pipeline; this keeps a pipeline one round trip.
    """

    def __init__(self, redis: aioredis.Redis, name: str) -> None:
        self.redis = redis
        self.name = name
        self.source = lua_source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def many(self, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run the script once per (keys, args), pipelined, in order."""
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for i in todo:
                keys, args = calls[i]
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[i] = reply
            if not missing:
                break
            # A restarted Redis: nothing of these ran; load the script and rerun them.
            await self.redis.script_load(self.source)
            todo = missing
        return results

    async def one(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script once."""
        return (await self.many([(keys, args)]))[0]
