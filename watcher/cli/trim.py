"""``liqwatch trim``: remove the stream entries every consumer group has acknowledged.

The safety is :func:`state.store.retention.trim_acked`'s: one script bounds
and trims, so a pending or undelivered entry of any group is never removed.
"""

from __future__ import annotations

import argparse

import redis.asyncio as aioredis

from state.store.retention import GroupBound, TrimResult, trim_acked
from watcher.cli.context import settings_from, with_redis
from watcher.cli.tables import num, table

STREAMS = ("events", "in")


def non_negative_int(text: str) -> int:
    """Parse a command-line integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_trim_arguments(parser: argparse.ArgumentParser) -> None:
    """Add trim's own options (``--config`` is added by the caller)."""
    parser.add_argument(
        "--stream", choices=STREAMS, default="events", help="the stream to trim (default events)"
    )
    parser.add_argument(
        "--keep",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="leave at least the N newest entries (default 0)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")


def trim_command(args: argparse.Namespace) -> int:
    """Trim ``args.stream`` and print what went (or would), the MINID and each group's bound."""
    settings = settings_from(args.config)
    # Every shard's stream, each trimmed by its own groups (one shard: just the one).
    streams = [k.events if args.stream == "events" else k.input for k in settings.shard_keys()]

    async def trim(redis: aioredis.Redis) -> list[TrimResult]:
        return [await trim_acked(redis, s, keep=args.keep, dry_run=args.dry_run) for s in streams]

    results = with_redis(settings, trim)
    print("\n\n".join(trim_text(result) for result in results))
    return 0


def trim_text(result: TrimResult) -> str:
    """Render a trim's outcome: the count, the MINID, what bounded it."""
    if result.outcome == "no-stream":
        return f"nothing trimmed: there is no stream {result.stream}"
    if result.outcome == "no-groups":
        return (
            f"nothing trimmed: {result.stream} ({result.length_before} entries) has no consumer"
            " group, so no entry is known to be acknowledged"
        )
    verb = "would remove" if result.dry_run else "removed"
    left = "would be left" if result.dry_run else "left"
    parts = [
        f"{verb} {result.removed} entries from {result.stream} below MINID {result.minid};"
        f" {result.length_after} {left}",
        "",
        table(
            ["GROUP", "PENDING", "OLDEST PENDING", "LAST DELIVERED", "NEEDS FROM", "BECAUSE"],
            [
                [
                    g.name,
                    str(g.pending),
                    num(g.oldest_pending),
                    g.last_delivered,
                    g.bound,
                    _because(g),
                ]
                for g in result.groups
            ],
        ),
    ]
    if result.keep:
        kept = "the stream is empty"
        if result.keep_bound is not None:
            kept = f"the {result.keep} newest entries start at {result.keep_bound}"
        parts.append(f"keep {result.keep}: {kept}")
    parts.append(f"MINID set by: {', '.join(result.bounded_by)}")
    return "\n".join(parts)


def _because(group: GroupBound) -> str:
    if group.reason == "pending":
        return "its oldest pending entry"
    return "the entry after its last delivered"
