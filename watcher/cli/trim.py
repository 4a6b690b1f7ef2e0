"""``liqwatch trim``: remove the stream entries every consumer group has acknowledged.

The safety is :func:`state.store.retention.trim_acked`'s: one script bounds
and trims, so a pending or undelivered entry of any group is never removed.
"""

from __future__ import annotations

import argparse

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
    keys = settings.keys
    stream = keys.events if args.stream == "events" else keys.input
    result = with_redis(
        settings, lambda r: trim_acked(r, stream, keep=args.keep, dry_run=args.dry_run)
    )
    print(trim_text(result))
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
