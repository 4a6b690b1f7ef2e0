"""Load input updates: validate every line of a JSONL file first, then append them to the stream.

Validation is all-or-nothing (CONTRACT.md, ``liqwatch load``): one bad line
and nothing is sent. The append keeps the file's order, one XADD per line
with the line unchanged as ``msg``, pipelined in batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TextIO

import redis.asyncio as aioredis

from state.errors import InputError, LiqwatchError
from state.inputs import parse_input
from state.keys import Keys
from state.models import Market

MAX_ERRORS = 20


class LoadError(LiqwatchError):
    """Some lines are not valid input; ``errors`` lists the first ones, ``count`` all of them."""

    def __init__(self, errors: list[str], count: int | None = None) -> None:
        self.errors = errors
        self.count = len(errors) if count is None else count
        super().__init__(f"{self.count} bad line(s); first: {errors[0] if errors else '-'}")


def validate_lines(
    lines: Iterable[bytes | str],
    markets: Mapping[str, Market],
    *,
    source: str = "<input>",
    max_errors: int = MAX_ERRORS,
) -> list[bytes]:
    """Return every non-blank line as a message, or raise LoadError naming the bad ones.

    Lines are numbered from 1, blank ones included; their line terminator is
    dropped and nothing else is changed.
    """
    messages: list[bytes] = []
    errors: list[str] = []
    count = 0
    for number, line in enumerate(lines, start=1):
        raw = line.encode() if isinstance(line, str) else line
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        if not raw.strip():
            continue
        try:
            parse_input(raw, markets)
        except InputError as exc:
            reason = exc.reason
        except RecursionError:
            # json.loads gives up on deep nesting; the line is bad, not the loader.
            reason = "not JSON: nested too deeply"
        else:
            messages.append(raw)
            continue
        count += 1
        if len(errors) < max_errors:
            errors.append(f"{source}:{number}: {reason}")
    if count:
        raise LoadError(errors, count)
    return messages


async def append_messages(
    redis: aioredis.Redis,
    keys: Keys,
    messages: Sequence[bytes],
    *,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Append each message as ``msg`` to the input stream, in order; return how many.

    ``progress`` is called after each batch with the number appended so far.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    done = 0
    for start in range(0, len(messages), batch):
        pipe = redis.pipeline(transaction=False)
        for message in messages[start : start + batch]:
            pipe.xadd(keys.input, {"msg": message})
        await pipe.execute()
        done = min(start + batch, len(messages))
        if progress is not None:
            progress(done)
    return done


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
