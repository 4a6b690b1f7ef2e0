"""One message to one sink: a timeout per request, retries with full-jitter exponential backoff.

A 2xx answer delivers. A timeout, a connection failure, 408, 425, 429 or a
5xx is retried, up to the sink's ``max_tries`` attempts in all, waiting a
uniform delay in [0, min(backoff_cap, backoff_base * 2**n)] after failure n
(at least the server's ``Retry-After`` seconds, when it sends one, capped
at ``backoff_cap``). Any other answer (400, 403, 404, a redirect) will not
change by asking again: the message fails at once. Failure reasons are made
here, from the status or the kind of error, never from a library's text:
that could quote the URL, which is a secret.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import structlog

from watcher.clock import wall_ms
from watcher.notify.config import SinkSpec
from watcher.notify.formats import build_request
from watcher.notify.messages import Message
from watcher.notify.metrics import NotifyMetrics

RETRYABLE = frozenset({408, 425, 429})
# What is read of an answer: enough for an error text, never a whole page.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a message fared: delivered, or the last reason after ``tries`` attempts."""

    delivered: bool
    tries: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Attempt:
    ok: bool
    retry: bool
    reason: str = ""
    retry_after: float = 0.0


class Deliverer:
    """Send messages to one sink over a shared aiohttp session."""

    def __init__(
        self,
        spec: SinkSpec,
        session: aiohttp.ClientSession,
        metrics: NotifyMetrics,
        *,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall: Callable[[], int] = wall_ms,
    ) -> None:
        self.spec = spec
        self.session = session
        self.metrics = metrics
        self._rng = rng
        self._sleep = sleep
        self._wall = wall
        self._log = structlog.get_logger().bind(component="notify", sink=spec.name)

    def delay(self, failures: int, retry_after: float = 0.0) -> float:
        """The wait after ``failures`` failed attempts (1 for the first): full jitter."""
        d = self.spec.delivery
        ceiling = min(d.backoff_cap, d.backoff_base * 2.0 ** min(failures - 1, 60))
        return max(ceiling * self._rng(), min(retry_after, d.backoff_cap))

    async def deliver(self, message: Message) -> Outcome:
        """Send ``message`` until it is taken, refused for good, or out of tries."""
        tries = self.spec.delivery.max_tries
        reason = ""
        for attempt in range(1, tries + 1):
            result = await self._attempt(message)
            if result.ok:
                return Outcome(True, attempt)
            reason = result.reason
            self.metrics.failures.labels(sink=self.spec.name).inc()
            last = attempt == tries or not result.retry
            self._log.warning(
                "notify.attempt_failed",
                message=message.kind,
                key=message.key,
                attempt=attempt,
                reason=reason,
                retrying=not last,
            )
            if last:
                if not result.retry:
                    reason += " (not retried)"
                return Outcome(False, attempt, reason)
            await self._sleep(self.delay(attempt, result.retry_after))
        raise AssertionError("unreachable: max_tries is at least 1")

    async def _attempt(self, message: Message) -> _Attempt:
        request = build_request(self.spec, message, self._wall())
        timeout = self.spec.delivery.timeout
        try:
            async with (
                asyncio.timeout(timeout),
                self.session.post(
                    request.url,
                    data=request.body,
                    headers=request.headers,
                    allow_redirects=False,
                ) as answer,
            ):
                status = answer.status
                retry_after = _retry_after(answer.headers.get("Retry-After"))
                await answer.content.read(MAX_ANSWER_BYTES)
        except TimeoutError:
            return _Attempt(False, True, f"no answer within {timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            return _Attempt(False, True, f"cannot connect: {type(exc.os_error).__name__}")
        except (aiohttp.ClientError, OSError) as exc:
            return _Attempt(False, True, f"request failed: {type(exc).__name__}")
        if 200 <= status < 300:
            return _Attempt(True, False)
        retry = status in RETRYABLE or 500 <= status <= 599
        return _Attempt(False, retry, f"HTTP {status}", retry_after)


def _retry_after(value: str | None) -> float:
    """Seconds of a ``Retry-After`` header in its delay form (a date is ignored)."""
    if value is None or not value.strip().isdigit():
        return 0.0
    return float(value.strip())
