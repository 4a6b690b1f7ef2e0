"""``liqwatch health``: judge the daemon's heartbeat; exit 0 if fresh, 1 with the reason if not."""

from __future__ import annotations

import argparse
import json

from watcher.cli.context import Failed, settings_from, with_redis
from watcher.clock import wall_ms


def heartbeat_verdict(raw: bytes | str | None, now_ms: int, max_age: float) -> tuple[bool, str]:
    """Judge a heartbeat: (fresh, the heartbeat itself or why it is not fresh)."""
    if raw is None:
        return False, "no heartbeat: the daemon is not running or has not beaten within its TTL"
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    try:
        beat = json.loads(text)
        ts = int(beat["ts"])
    except (ValueError, TypeError, KeyError):
        return False, f"unreadable heartbeat: {text[:200]!r}"
    age = (now_ms - ts) / 1000
    if age > max_age:
        who = beat.get("instance", "?")
        return False, f"stale heartbeat: {who} last beat {age:.1f} s ago (max {max_age:g} s)"
    return True, text


def health_command(args: argparse.Namespace) -> int:
    """Print the heartbeat and return 0 if it is fresh; raise Failed otherwise."""
    settings = settings_from(args.config)
    raw: bytes | str | None = with_redis(settings, lambda r: r.get(settings.keys.health))
    fresh, text = heartbeat_verdict(raw, wall_ms(), args.max_age)
    if not fresh:
        raise Failed(text)
    print(text)
    return 0
