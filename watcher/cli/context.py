"""What every command shares: exit codes, one-line failures, settings, a one-shot Redis client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from state.errors import LiqwatchError
from state.store.client import open_client
from watcher.daemon.config import ConfigError, Settings, load_settings

PROG = "liqwatch"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
CONNECT_TIMEOUT = 5.0
# A read-only command against a Redis that does not answer fails after this long.
ANSWER_TIMEOUT = 10.0

T = TypeVar("T")


class Failed(Exception):
    """An expected failure of a command: print ``reason`` on one line and exit with ``code``."""

    def __init__(self, reason: str, code: int = EXIT_FAILED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def settings_from(path: Path) -> Settings:
    """Load the config file of ``--config``; a bad one is a usage failure (exit 2)."""
    try:
        return load_settings(path)
    except ConfigError as exc:
        raise Failed(str(exc), EXIT_USAGE) from None


def one_shot_client(settings: Settings) -> aioredis.Redis:
    """Return a client that never retries and gives up on a read after ``ANSWER_TIMEOUT``.

    A one-shot command reports a failure instead of resending a pipeline
    that may have been applied already; a Redis that takes the connection
    and never answers fails each call, also in a long load.
    """
    return open_client(
        settings.redis_url,
        cluster=settings.redis_cluster,
        connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=ANSWER_TIMEOUT,
    )


class NoAnswer(LiqwatchError):
    """Redis took the connection but did not answer in time (frozen, or overloaded)."""


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
    return scrub(reason, settings)


def scrub(text: str, settings: Settings) -> str:
    """Drop the Redis password from a message, should a library have put it there."""
    text = " ".join(text.split())
    password = urlsplit(settings.redis_url).password
    if password:
        for secret in (password, unquote(password)):
            text = text.replace(secret, "***")
    return text


def with_redis(
    settings: Settings,
    work: Callable[[aioredis.Redis], Awaitable[T]],
    *,
    timeout: float | None = ANSWER_TIMEOUT,
) -> T:
    """Run ``work`` on a fresh client in a fresh event loop; expected errors become Failed.

    ``timeout`` bounds the whole of ``work`` (None: unbounded, for a long load).
    """

    async def go() -> T:
        client = one_shot_client(settings)
        try:
            async with asyncio.timeout(timeout):
                return await work(client)
        except TimeoutError:
            raise NoAnswer(
                f"Redis at {settings.redacted_redis_url} did not answer within {timeout:g} s"
            ) from None
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except Exception as exc:
        reason = expected_failure(exc, settings)
        if reason is None:
            raise
        raise Failed(reason) from None
