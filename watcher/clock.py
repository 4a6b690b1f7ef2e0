"""The wall clock, read in one place: what venues stamp frames with and events carry.

Freshness and timeouts use the monotonic clock (``time.monotonic``); this is
only for timestamps that leave the process (mark hashes, events, the
heartbeat) or that are compared with a venue's.
"""

from __future__ import annotations

import time


def wall_ms() -> int:
    """Return the Unix time in whole milliseconds."""
    return time.time_ns() // 1_000_000
