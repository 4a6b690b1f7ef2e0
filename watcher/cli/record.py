"""``liqwatch record``: every accepted mark to a JSONL file, for replay and disputes.

The config's feeds run as the daemon runs them (:func:`watcher.feeds.client.run_feed`
into a :class:`~watcher.feeds.book.MarkBook` with the daemon's rules: the
same marks are accepted, held, refused); each accepted mark is appended as
one line: ``symbol``, ``price`` (text, exact), ``venue_ts``, ``recv_ms``
(wall clock at receipt; the marks of one frame share it) and ``source``
(the feed, query string dropped). With ``--input`` and ``--events`` the
input and events streams are copied too, from their first entry, each line
the entry id and the fields (``msg`` for input), as they come.

``liqwatch demo --record DIR`` records a demo run the same way (marks,
input and events in DIR): the feed waits until the daemon and the recorder
are both connected and the book is applied, and at the end falls silent
until every decision and every closing update has settled, so that replay
sees exactly what the daemon saw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import orjson
import redis.asyncio as aioredis

from state.keys import INPUT_GROUP, Keys
from state.models import MarkPrice
from state.store.streams import stream_entries
from watcher.cli.context import Failed, expected_failure, one_shot_client, settings_from
from watcher.clock import wall_ms
from watcher.daemon.config import Settings
from watcher.daemon.logs import configure_logging
from watcher.feeds import make_venue
from watcher.feeds.backoff import Backoff
from watcher.feeds.book import MarkBook, Offer
from watcher.feeds.client import run_feed
from watcher.feeds.spec import FeedSpec, public_url

# The demo executor's consumer group (watcher/demo/executor.py).
DEMO_EXECUTOR_GROUP = "demo-executor"
# Stream entries copied per read.
TAIL_COUNT = 1000


class MarkLog:
    """Append accepted marks to a JSONL file, one line each, flushed as written."""

    def __init__(
        self,
        path: Path,
        *,
        wall: Callable[[], int] = wall_ms,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")
        # A mark's receive time is monotonic; this turns it into wall ms, the
        # same for every mark of one frame.
        self._offset_ms = wall() - clock() * 1000
        self.count = 0

    def write(self, mark: MarkPrice) -> None:
        """Append ``mark``."""
        line = {
            "symbol": mark.symbol,
            "price": str(mark.price),
            "venue_ts": mark.venue_ts,
            "recv_ms": round(mark.recv_ts * 1000 + self._offset_ms),
            "source": public_url(mark.source),
        }
        self._file.write(orjson.dumps(line).decode() + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class RecordingBook(MarkBook):
    """The daemon's mark book, writing every mark it accepts to a :class:`MarkLog`."""

    def __init__(
        self,
        stale_after: Mapping[str, float],
        jump_band: Mapping[str, float] | None = None,
        *,
        log: MarkLog,
    ) -> None:
        super().__init__(stale_after, jump_band)
        self.log = log

    @classmethod
    def for_feeds(cls, feeds: tuple[FeedSpec, ...], log: MarkLog) -> RecordingBook:
        """A book with the rules :meth:`MarkBook.from_feeds` gives the daemon."""
        template = MarkBook.from_feeds(feeds)
        stale: dict[str, float] = {}
        bands: dict[str, float] = {}
        for feed in feeds:
            for symbol in feed.position_symbols:
                stale[symbol] = min(stale.get(symbol, feed.stale_after), feed.stale_after)
                if feed.jump_band:
                    bands[symbol] = min(bands.get(symbol, feed.jump_band), feed.jump_band)
        assert set(stale) == set(template.symbols)
        return cls(stale, bands, log=log)

    def offer(
        self, mark: MarkPrice, *, equal_ts_ok: bool = False, not_after: int | None = None
    ) -> Offer:
        """Offer as the daemon's book does; write the mark if it is accepted."""
        result = super().offer(mark, equal_ts_ok=equal_ts_ok, not_after=not_after)
        if result.accepted:
            self.log.write(mark)
        return result


class StreamCopy:
    """Copy a stream's entries to a JSONL file from ``start`` on, as they are appended."""

    def __init__(self, redis: aioredis.Redis, key: str, path: Path, *, input: bool) -> None:
        self.redis = redis
        self.key = key
        self.path = path
        self.input = input
        self.last = "0-0"
        self.count = 0
        self._file: IO[str] = path.open("a", encoding="utf-8")

    async def read(self, block_ms: int | None = None) -> int:
        """Copy what is there (waiting up to ``block_ms`` for something); return how many."""
        reply: Any = await self.redis.xread({self.key: self.last}, count=TAIL_COUNT, block=block_ms)
        done = 0
        for entry_id, fields in stream_entries(reply):
            eid = _text(entry_id)
            f = {_text(k): _text(v) for k, v in (fields or {}).items()}
            line = (
                {"entry_id": eid, "msg": f.get("msg", "")} if self.input else {"entry_id": eid, **f}
            )
            self._file.write(orjson.dumps(line).decode() + "\n")
            self.last = eid
            done += 1
        if done:
            self._file.flush()
        self.count += done
        return done

    async def drain(self) -> None:
        """Copy everything there is now."""
        while await self.read() == TAIL_COUNT:
            pass

    async def follow(self, stop: asyncio.Event, block_ms: int = 200) -> None:
        """Copy entries as they come until ``stop``, then what is left."""
        while not stop.is_set():
            await self.read(block_ms)
        await self.drain()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


async def _feeds(settings: Settings, book: MarkBook) -> None:
    async with asyncio.TaskGroup() as tg:
        for feed in settings.feeds:
            backoff = Backoff(
                settings.backoff_base,
                settings.backoff_cap,
                reset_after=settings.backoff_reset_after,
            )
            tg.create_task(
                run_feed(
                    feed,
                    make_venue(feed.venue),
                    book,
                    backoff=backoff,
                    max_size=settings.max_frame_bytes,
                )
            )


# --- liqwatch record ----------------------------------------------------------------


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``liqwatch record`` (after ``--config``)."""
    parser.add_argument("marks", metavar="MARKS.jsonl", type=Path, help="file to append marks to")
    parser.add_argument("--input", type=Path, metavar="FILE", help="also copy the input stream")
    parser.add_argument("--events", type=Path, metavar="FILE", help="also copy the events stream")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")


def record_command(args: argparse.Namespace) -> int:
    """Record until SIGTERM/SIGINT or ``--duration``; print what was recorded."""
    settings = settings_from(args.config)
    if args.duration is not None and not args.duration > 0:
        raise Failed(f"--duration must be > 0, got {args.duration}", 2)
    configure_logging("console", logging.WARNING)
    try:
        summary = asyncio.run(_record(settings, args))
    except OSError as exc:
        raise Failed(f"cannot write: {exc}") from None
    except Exception as exc:
        reason = expected_failure(exc, settings)
        if reason is None:
            raise
        raise Failed(reason) from None
    print(summary)
    return 0


async def _record(settings: Settings, args: argparse.Namespace) -> str:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    log = MarkLog(args.marks)
    book = RecordingBook.for_feeds(settings.feeds, log=log)
    redis = one_shot_client(settings) if args.input or args.events else None
    copies: list[StreamCopy] = []
    try:
        if redis is not None:
            keys = settings.keys
            if args.input:
                copies.append(StreamCopy(redis, keys.input, args.input, input=True))
            if args.events:
                copies.append(StreamCopy(redis, keys.events, args.events, input=False))
        async with asyncio.TaskGroup() as tg:
            feeds = tg.create_task(_feeds(settings, book))
            for copy in copies:
                tg.create_task(copy.follow(stop))
            if args.duration is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(args.duration):
                        await stop.wait()
                stop.set()
            await stop.wait()
            feeds.cancel()
    finally:
        log.close()
        for copy in copies:
            copy.close()
        if redis is not None:
            await redis.aclose()
    parts = [f"recorded {log.count} marks to {args.marks}"]
    parts += [f"{c.count} entries of {c.key} to {c.path}" for c in copies]
    return "; ".join(parts)


# --- liqwatch demo --record DIR -------------------------------------------------------------


class DemoRecording:
    """Record a demo run in a directory: marks.jsonl, input.jsonl, events.jsonl.

    A :data:`watcher.demo.runner.Companion`: the feed starts paused; it is
    resumed once the daemon and the recorder both listen and the book is
    applied; at the end (``duration``) the feed falls silent, everything
    settles (decisions, the executor's updates, their decisions), and only
    then does the demo stop.
    """

    def __init__(self, directory: Path, *, settle: float = 1.0, poll: float = 0.05) -> None:
        self.directory = directory
        self.settle = settle
        self.poll = poll

    @property
    def marks(self) -> Path:
        """The recorded marks."""
        return self.directory / "marks.jsonl"

    @property
    def input(self) -> Path:
        """The recorded input stream."""
        return self.directory / "input.jsonl"

    @property
    def events(self) -> Path:
        """The recorded events stream: the demo's decisions."""
        return self.directory / "events.jsonl"

    async def __call__(
        self, settings: Settings, feed: Any, stop: asyncio.Event, duration: float | None
    ) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in (self.marks, self.input, self.events):
            path.write_text("")
        log = MarkLog(self.marks)
        book = RecordingBook.for_feeds(settings.feeds, log=log)
        redis = one_shot_client(settings)
        keys = settings.keys
        inputs = StreamCopy(redis, keys.input, self.input, input=True)
        events = StreamCopy(redis, keys.events, self.events, input=False)
        done = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                feeds = tg.create_task(_feeds(settings, book))
                tg.create_task(inputs.follow(done))
                tg.create_task(events.follow(done))
                while not stop.is_set():
                    if _listening(feed) >= 2 and await _settled(redis, keys):
                        break
                    await asyncio.sleep(self.poll)
                feed.resume()
                if duration is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(duration):
                            await stop.wait()
                    feed.pause()
                    await self._quiet(redis, keys, stop)
                    stop.set()
                await stop.wait()
                feeds.cancel()
                done.set()
        finally:
            log.close()
            inputs.close()
            events.close()
            await redis.aclose()

    async def _quiet(self, redis: aioredis.Redis, keys: Keys, stop: asyncio.Event) -> None:
        """Wait until decisions and updates have stopped coming: settled twice, ``settle`` apart."""
        streak = 0
        while not stop.is_set() and streak < 2:
            await asyncio.sleep(self.settle)
            streak = streak + 1 if await _settled(redis, keys, executor=True) else 0


def _listening(feed: Any) -> int:
    """How many clients of the sim have subscribed to something."""
    return sum(1 for client in feed.clients if client.topics)


async def _settled(redis: aioredis.Redis, keys: Keys, *, executor: bool = False) -> bool:
    """Whether the input (and the executor's events) group has taken and acked everything."""
    checks = [(keys.input, INPUT_GROUP)]
    if executor:
        checks.append((keys.events, DEMO_EXECUTOR_GROUP))
    for stream, group in checks:
        if not await redis.exists(stream):
            return False
        groups: Any = await redis.xinfo_groups(stream)
        info = next((g for g in groups if _text(g["name"]) == group), None)
        if info is None or int(info["pending"]):
            return False
        last: Any = await redis.xrevrange(stream, count=1)
        if last and _text(info["last-delivered-id"]) != _text(last[0][0]):
            return False
    return True
