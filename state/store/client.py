"""Open a redis-py asyncio client the way every part of liqwatch needs it.

No socket timeout in the client: redis-py implements it with
``asyncio.wait_for``, which on Python 3.11 swallows a task's cancellation
when the send completes in the same loop iteration (CPython gh-86296; measured
here: 2 of 3 cancellations of a task looping on SET were lost). A lost
cancellation leaves a task running after its TaskGroup gave up on it, so a
clean stop or a crash can hang. Callers bound their waits with
``asyncio.timeout`` instead, which propagates cancellation correctly.

No retries in the client either: the daemon's link (watcher/daemon/link.py)
decides what is retried, how often and with what backoff, and a one-shot
command reports a failure rather than resending what may have been applied.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry


def open_client(url: str, *, connect_timeout: float = 5.0, **options: Any) -> aioredis.Redis:
    """Return a client for ``url``: a connect timeout, no socket timeout, no retries."""
    options.setdefault("retry", Retry(NoBackoff(), 0))
    return aioredis.Redis.from_url(
        url, socket_timeout=None, socket_connect_timeout=connect_timeout, **options
    )
