"""Which shard an account lives in: a stable hash of its name, the same in every language.

``shard_of(account, S)`` is the first 8 hex digits of SHA-1 of the account's
UTF-8 bytes, read as an unsigned 32-bit integer, modulo S. Producers route
with the same rule (README, "Shards"); in Redis it is
``tonumber(string.sub(redis.sha1hex(account), 1, 8), 16) % S``. It never
changes for a given S, which Redis records: a daemon configured with another
S refuses to start rather than re-hash silently.
"""

from __future__ import annotations

import hashlib

MAX_SHARDS = 1024


def shard_of(account: str, count: int) -> int:
    """The shard (0 .. count-1) of ``account`` among ``count`` shards."""
    if count == 1:
        return 0
    digest = hashlib.sha1(account.encode(), usedforsecurity=False).hexdigest()
    return int(digest[:8], 16) % count
