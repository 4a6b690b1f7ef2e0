"""The ``liqwatch`` command line: run, demo, load, inspect, health (CONTRACT.md, "Commands").

Exit codes: 0 done; 1 the work failed (bad input lines, Redis unreachable or
refusing, a stale or missing heartbeat, an unknown account); 2 a bad command
line or config; 130 interrupted. Expected errors are one line on stderr;
anything else is a bug and surfaces with its traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
import structlog
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from state.errors import LiqwatchError
from watcher import loader, tables, views
from watcher.config import ConfigError, Settings, load_settings

PROG = "liqwatch"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
CONNECT_TIMEOUT = 5.0
MAX_SHOWN_ERRORS = 20

T = TypeVar("T")


class Failed(Exception):
    """An expected failure of a command: print ``reason`` on one line and exit with ``code``."""

    def __init__(self, reason: str, code: int = EXIT_FAILED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of liqwatch.
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command and option."""
    parser = _Parser(prog=PROG, description="Watch perpetual-futures positions for liquidation.")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, required=True
    )

    def config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, type=Path, metavar="FILE", help="TOML config")

    run = commands.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    config(run)
    demo = commands.add_parser("demo", help="run the self-contained demo")
    demo.add_argument("--accounts", type=_positive_int, metavar="N", help="accounts in the book")
    demo.add_argument("--seed", type=int, metavar="S", help="random seed")
    demo.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    load = commands.add_parser("load", help="validate a JSONL file, then append it to the input")
    config(load)
    load.add_argument("input", metavar="INPUT.jsonl", help="one update per line; - for stdin")
    load.add_argument("--batch", type=_positive_int, default=1000, help=argparse.SUPPRESS)
    health = commands.add_parser("health", help="exit 0 if the daemon's heartbeat is fresh")
    config(health)
    health.add_argument("--max-age", type=float, default=10.0, metavar="SECONDS",
                        help="oldest heartbeat that counts as fresh (default 10)")  # fmt: skip

    inspect = commands.add_parser("inspect", help="operator views of the state in Redis")
    config(inspect)
    view_parsers = inspect.add_subparsers(
        dest="view", metavar="VIEW", parser_class=_Parser, required=True
    )
    views_help = {
        "account": "one account: positions, health, liquidation prices",
        "symbol": "one symbol's members nearest to their trigger",
        "marks": "every symbol's mark and its status",
        "events": "the last liquidation events",
        "liquidating": "in-flight liquidations and their age",
        "dead": "the last dead letters",
        "stats": "counters, stream lengths, the input group's backlog",
    }
    for name, text in views_help.items():
        p = view_parsers.add_parser(name, help=text)
        p.add_argument("--json", action="store_true", help="print one JSON document")
        if name == "account":
            p.add_argument("account", metavar="ACCOUNT")
        elif name == "symbol":
            p.add_argument("symbol", metavar="SYMBOL")
            p.add_argument("--limit", type=_positive_int, default=10, metavar="N")
        elif name in ("events", "dead"):
            p.add_argument("--count", type=_positive_int, default=20, metavar="N")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _COMMANDS[args.command](args)
    except Failed as exc:
        print(f"{PROG}: {exc.reason}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config)
    except ConfigError as exc:
        raise Failed(str(exc), EXIT_USAGE) from None


def _client(settings: Settings) -> aioredis.Redis:
    # No retries: a one-shot command reports the failure instead of resending a
    # pipeline that may have been applied already.
    return aioredis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=CONNECT_TIMEOUT, retry=Retry(NoBackoff(), 0)
    )


def expected_failure(
    exc: BaseException, settings: Settings, *, refusals: bool = True
) -> str | None:
    """Return the one-line reason of an expected error (in a group: if all are), else None.

    Expected: Redis unreachable, liqwatch's own errors and, with ``refusals``,
    a command Redis refused (WRONGTYPE, READONLY: state or server trouble, for
    a read-only view; in the daemon it may be a bug, so there it surfaces).
    """
    if isinstance(exc, BaseExceptionGroup):
        reasons = [expected_failure(e, settings, refusals=refusals) for e in exc.exceptions]
        return None if None in reasons else reasons[0]
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        reason = f"cannot reach Redis at {settings.redacted_redis_url}: {exc}"
    elif refusals and isinstance(exc, ResponseError):
        reason = f"Redis at {settings.redacted_redis_url} refused: {exc}"
    elif isinstance(exc, LiqwatchError):
        reason = str(exc)
    else:
        return None
    return _scrub(reason, settings)


def _scrub(text: str, settings: Settings) -> str:
    """Drop the Redis password from a message, should a library have put it there."""
    text = " ".join(text.split())
    password = urlsplit(settings.redis_url).password
    if password:
        for secret in (password, unquote(password)):
            text = text.replace(secret, "***")
    return text


def _with_redis(settings: Settings, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh client in a fresh event loop; expected errors become Failed."""

    async def go() -> T:
        client = _client(settings)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except Exception as exc:
        reason = expected_failure(exc, settings)
        if reason is None:
            raise
        raise Failed(reason) from None


# --- run, demo ----------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from watcher.app import run_daemon  # lazily: the CLI works without the daemon's imports
    from watcher.logs import configure_logging

    configure_logging(settings.log_format)
    try:
        asyncio.run(run_daemon(settings))
    except Exception as exc:
        reason = expected_failure(exc, settings, refusals=False)
        if reason is None:
            # A bug or a state nobody foresaw: the whole traceback goes to the
            # log for the post-mortem, one line to the operator, and the
            # supervisor restarts us.
            structlog.get_logger().exception("daemon.crashed")
            reason = _scrub(f"fatal: {_innermost(exc)!r}", settings)
        raise Failed(reason) from None
    return 0


def _innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _demo(args: argparse.Namespace) -> int:
    from watcher.demo.runner import run_demo  # lazily, as for run

    options = {
        name: value
        for name in ("accounts", "seed", "duration")
        if (value := getattr(args, name)) is not None
    }
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the demo ends
        asyncio.run(run_demo(**options))
    return 0


# --- load --------------------------------------------------------------------------


def _read_lines(name: str) -> list[bytes]:
    if name == "-":
        return sys.stdin.buffer.read().split(b"\n")
    try:
        return Path(name).read_bytes().split(b"\n")
    except OSError as exc:
        raise Failed(f"{name}: cannot read: {exc.strerror}") from None


def load_error_text(error: loader.LoadError, shown: int = MAX_SHOWN_ERRORS) -> str:
    """Return the report of a refused file: the first errors, then how many in all."""
    lines = error.errors[:shown]
    more = error.count - len(lines)
    if more > 0:
        lines.append(f"... and {more} more bad line(s)")
    lines.append(f"{PROG}: {error.count} bad line(s); nothing was appended")
    return "\n".join(lines)


def _load(args: argparse.Namespace) -> int:
    settings = _settings(args)
    source = "<stdin>" if args.input == "-" else args.input
    try:
        messages = loader.validate_lines(
            _read_lines(args.input), settings.markets, source=source, max_errors=MAX_SHOWN_ERRORS
        )
    except loader.LoadError as exc:
        print(load_error_text(exc), file=sys.stderr)
        return EXIT_FAILED
    progress = loader.Progress(len(messages), sys.stderr, enabled=sys.stderr.isatty())
    started = time.monotonic()
    try:
        count = _with_redis(
            settings,
            lambda r: loader.append_messages(
                r, settings.keys, messages, batch=args.batch, progress=progress
            ),
        )
    except (Failed, KeyboardInterrupt) as exc:
        progress.close()
        # A batch in flight may have landed in part; replaying is safe (seqs dedupe).
        what = exc.reason if isinstance(exc, Failed) else "interrupted"
        raise Failed(
            f"{what} (after {progress.done} of {len(messages)} lines appended, maybe a batch more)",
            EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_FAILED,
        ) from None
    progress.close()
    print(loader.summary_line(count, time.monotonic() - started, settings.keys.input))
    return 0


# --- inspect, health ------------------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _inspect(args: argparse.Namespace) -> int:
    settings = _settings(args)
    keys, markets, now = settings.keys, settings.markets, _now_ms()
    readers: dict[str, Callable[[aioredis.Redis], Awaitable[Any]]] = {
        "account": lambda r: views.read_account(
            r, keys, markets, args.account, at_equality=settings.at_equality
        ),
        "symbol": lambda r: views.read_symbol(r, keys, args.symbol, args.limit, now),
        "marks": lambda r: views.read_marks(r, keys, now),
        "events": lambda r: views.read_events(r, keys, args.count),
        "liquidating": lambda r: views.read_liquidating(r, keys, now),
        "dead": lambda r: views.read_dead(r, keys, args.count),
        "stats": lambda r: views.read_stats(r, keys),
    }
    renderers: dict[str, Callable[[Any], str]] = {
        "account": tables.account_text,
        "symbol": tables.symbol_text,
        "marks": tables.marks_text,
        "events": tables.events_text,
        "liquidating": tables.liquidating_text,
        "dead": tables.dead_text,
        "stats": tables.stats_text,
    }
    result = _with_redis(settings, readers[args.view])
    if result is None:
        raise Failed(f"no account {args.account!r} in Redis at {settings.redacted_redis_url}")
    print(json.dumps(result, indent=2) if args.json else renderers[args.view](result))
    return 0


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


def _health(args: argparse.Namespace) -> int:
    settings = _settings(args)
    raw: bytes | str | None = _with_redis(settings, lambda r: r.get(settings.keys.health))
    fresh, text = heartbeat_verdict(raw, _now_ms(), args.max_age)
    if not fresh:
        raise Failed(text)
    print(text)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "demo": _demo,
    "load": _load,
    "inspect": _inspect,
    "health": _health,
}


if __name__ == "__main__":
    sys.exit(main())
