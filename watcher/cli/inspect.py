"""``liqwatch inspect VIEW``: read one operator view from Redis and print it as a table or JSON."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from state.keys import Keys
from watcher.cli import sharded, tables, views
from watcher.cli.context import Failed, settings_from, with_redis
from watcher.clock import wall_ms
from watcher.daemon.config import Settings

# Each view: its help line and its renderer (views.read_* is chosen in inspect_command).
VIEWS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "account": ("one account: positions, health, liquidation prices", tables.account_text),
    "symbol": ("one symbol's members nearest to their trigger", tables.symbol_text),
    "marks": ("every symbol's mark and its status", tables.marks_text),
    "events": ("the last liquidation events", tables.events_text),
    "liquidating": ("in-flight liquidations and their age", tables.liquidating_text),
    "dead": ("the last dead letters", tables.dead_text),
    "warnings": (
        "what is in near-liquidation warning now, and the last warnings",
        tables.warnings_text,
    ),
    "stats": ("counters, stream lengths, the input group's backlog", tables.stats_text),
    "executors": (
        "the events stream's consumer groups: pending entries, their age, lag",
        tables.executors_text,
    ),
}


def add_view_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the options of one view to its parser."""
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    if name == "account":
        parser.add_argument("account", metavar="ACCOUNT")
    elif name == "symbol":
        parser.add_argument("symbol", metavar="SYMBOL")
        parser.add_argument("--limit", type=positive_int, default=10, metavar="N")
    elif name in ("events", "dead", "warnings"):
        parser.add_argument("--count", type=positive_int, default=20, metavar="N")
    elif name == "executors":
        parser.add_argument(
            "--warn-after",
            type=positive_float,
            metavar="SECONDS",
            help="warn when the oldest pending entry is older (default: the config's, else 60)",
        )


def positive_int(text: str) -> int:
    """Parse a command-line integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """Parse a finite command-line number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def inspect_command(args: argparse.Namespace) -> int:
    """Read and print the view ``args.view``."""
    settings = settings_from(args.config)
    keys, markets, now = settings.keys, settings.markets, wall_ms()
    warn_after = getattr(args, "warn_after", None)
    if warn_after is None:
        warn_after = settings.executors_warn_after
    readers: dict[str, Callable[[aioredis.Redis], Awaitable[Any]]] = {
        "account": lambda r: views.read_account(
            r, keys, markets, args.account, at_equality=settings.at_equality
        ),
        "symbol": lambda r: views.read_symbol(r, keys, args.symbol, args.limit, now),
        "marks": lambda r: views.read_marks(r, keys, now),
        "events": lambda r: views.read_events(r, keys, args.count),
        "liquidating": lambda r: views.read_liquidating(r, keys, now),
        "dead": lambda r: views.read_dead(r, keys, args.count),
        "warnings": lambda r: views.read_warnings(r, keys, args.count, now),
        "stats": lambda r: views.read_stats(r, keys),
        "executors": lambda r: views.read_executors(r, keys.events, now, warn_after),
    }
    if settings.shards > 1:
        readers.update(_sharded_readers(args, settings.shard_keys(), settings, now, warn_after))
    result = with_redis(settings, readers[args.view])
    if result is None:
        raise Failed(f"no account {args.account!r} in Redis at {settings.redacted_redis_url}")
    _, render = VIEWS[args.view]
    if args.view == "executors" and settings.shards > 1:
        render = _executors_of_shards
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


def _sharded_readers(
    args: argparse.Namespace,
    shards: list[Keys],
    settings: Settings,
    now: int,
    warn_after: float,
) -> dict[str, Callable[[aioredis.Redis], Awaitable[Any]]]:
    """The views over several shards (see :mod:`watcher.cli.sharded`)."""
    markets = settings.markets
    symbols = sorted({s for feed in settings.feeds for s in feed.position_symbols} | set(markets))
    return {
        "account": lambda r: sharded.read_account(
            r, shards, markets, args.account, at_equality=settings.at_equality
        ),
        "symbol": lambda r: sharded.read_symbol(r, shards, args.symbol, args.limit, now),
        "marks": lambda r: sharded.read_marks(r, shards, symbols, now),
        "events": lambda r: sharded.read_stream(r, shards, args.count, views.read_events),
        "liquidating": lambda r: sharded.read_liquidating(r, shards, now),
        "dead": lambda r: sharded.read_stream(r, shards, args.count, views.read_dead),
        "warnings": lambda r: sharded.read_warnings(r, shards, args.count, now),
        "stats": lambda r: sharded.read_stats(r, shards),
        "executors": lambda r: sharded.read_executors(r, shards, now, warn_after),
    }


def _executors_of_shards(view: Any) -> str:
    return "\n\n".join(tables.executors_text(part) for part in view["streams"])
