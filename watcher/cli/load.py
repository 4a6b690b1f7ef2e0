"""``liqwatch load``'s terminal side: the progress bar and the summary line.

Validation (:func:`state.inputs.validate_lines`) is all-or-nothing: one bad
line and nothing is sent; the append (:meth:`state.store.Store.append_input`)
keeps the file's order, one XADD per line with the line unchanged as ``msg``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import redis.asyncio as aioredis

from state.inputs import LoadError, parse_input, validate_lines
from state.keys import Keys
from state.shards import shard_of
from state.store import Store
from state.store.shards import ShardStore
from watcher.cli.context import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    PROG,
    Failed,
    settings_from,
    with_redis,
)
from watcher.daemon.config import Settings

# Bad lines listed before the total.
MAX_SHOWN_ERRORS = 20


class Progress:
    """Draw ``appended i/n (p%)`` as one ``\\r`` line on a terminal, at most every ``interval``."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        enabled: bool,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled
        self.interval = interval
        self.clock = clock
        self.done = 0
        self._drawn_at: float | None = None

    def __call__(self, done: int) -> None:
        """Record progress; redraw when enabled and the last drawing is old enough."""
        self.done = done
        if not self.enabled:
            return
        now = self.clock()
        recent = self._drawn_at is not None and now - self._drawn_at < self.interval
        if recent and done < self.total:
            return
        self._drawn_at = now
        self.stream.write("\r" + progress_line(done, self.total))
        self.stream.flush()

    def close(self) -> None:
        """End the progress line so that what follows starts on a line of its own."""
        if self._drawn_at is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn_at = None


def progress_line(done: int, total: int, width: int = 30) -> str:
    """Return a text progress bar: ``[#####.....]  500/1000  50%``."""
    fraction = done / total if total else 1.0
    filled = round(width * fraction)
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {done}/{total} {fraction:4.0%}"


def summary_line(count: int, seconds: float, stream_key: str) -> str:
    """Return the final report of a load: lines appended, seconds, lines per second."""
    rate = count / seconds if seconds > 0 else float(count)
    return f"appended {count} lines to {stream_key} in {seconds:.2f} s ({rate:.0f} lines/s)"


def load_error_text(error: LoadError, shown: int = MAX_SHOWN_ERRORS) -> str:
    """Return the report of a refused file: the first errors, then how many in all."""
    lines = error.errors[:shown]
    more = error.count - len(lines)
    if more > 0:
        lines.append(f"... and {more} more bad line(s)")
    lines.append(f"{PROG}: {error.count} bad line(s); nothing was appended")
    return "\n".join(lines)


def _read_lines(name: str) -> list[bytes]:
    if name == "-":
        return sys.stdin.buffer.read().split(b"\n")
    try:
        return Path(name).read_bytes().split(b"\n")
    except OSError as exc:
        raise Failed(f"{name}: cannot read: {exc.strerror}") from None


def load_command(args: argparse.Namespace) -> int:
    """Validate every line of ``args.input``, then append them all to the input stream."""
    settings = settings_from(args.config)
    source = "<stdin>" if args.input == "-" else args.input
    try:
        messages = validate_lines(
            _read_lines(args.input), settings.markets, source=source, max_errors=MAX_SHOWN_ERRORS
        )
    except LoadError as exc:
        print(load_error_text(exc), file=sys.stderr)
        return EXIT_FAILED
    streams = _routes(messages, settings) if settings.shards > 1 else None
    progress = Progress(len(messages), sys.stderr, enabled=sys.stderr.isatty())
    started = time.monotonic()
    try:

        async def append(redis: aioredis.Redis) -> int:
            await _check_shard_count(redis, settings)
            return await Store(redis, settings.keys).append_input(
                messages, batch=args.batch, progress=progress, streams=streams
            )

        count = with_redis(settings, append, timeout=None)
    except (Failed, KeyboardInterrupt) as exc:
        progress.close()
        # A batch in flight may have landed in part; replaying is safe (seqs dedupe).
        what = exc.reason if isinstance(exc, Failed) else "interrupted"
        raise Failed(
            f"{what} (after {progress.done} of {len(messages)} lines appended, maybe a batch more)",
            EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_FAILED,
        ) from None
    progress.close()
    where = settings.keys.input
    if streams is not None:
        where = (
            f"{settings.prefix}:{{0..{settings.shards - 1}}}:in (each line to its account's shard)"
        )
    print(summary_line(count, time.monotonic() - started, where))
    return 0


async def _check_shard_count(redis: aioredis.Redis, settings: Settings) -> None:
    """Refuse another shard count than the data's; record it if none is, as a worker does."""
    await ShardStore(redis, settings.keys, settings.shards).record_count()


def _routes(messages: list[bytes], settings: Settings) -> list[str]:
    """The input stream of each (validated) message: its account's shard's."""
    count, markets = settings.shards, settings.markets
    return [
        Keys(settings.prefix, shard_of(parse_input(m, markets).account, count)).input
        for m in messages
    ]
