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
    their own before every pipeline; this keeps a call one round trip.
    """

    def __init__(self, redis: aioredis.Redis, name: str) -> None:
        self.redis = redis
        self.name = name
        self.source = lua_source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def one(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script once (one round trip; two after Redis lost it: NOSCRIPT).

        Its keys are one shard's, so on a Redis Cluster the call goes to the
        node holding that slot (redirections are followed by the client).
        """
        try:
            return await self.redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or promoted Redis: nothing ran; load the script and run it.
            await self.redis.script_load(self.source)
            return await self.redis.evalsha(self.sha, len(keys), *keys, *args)
