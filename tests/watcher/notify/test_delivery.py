"""One message to one sink: retries, backoff with full jitter, timeouts, what is not retried."""

from __future__ import annotations

from dataclasses import replace

import aiohttp
import pytest

from tests.helpers.notify import FAST, HMAC_KEY, KEYS, event, slack, webhook
from tests.helpers.sinks import Hang
from watcher.demo.redis_server import free_port
from watcher.notify.config import Delivery
from watcher.notify.delivery import Deliverer, _retry_after
from watcher.notify.messages import Entry, EventMessage
from watcher.notify.metrics import NotifyMetrics


def message(n: int = 1) -> EventMessage:
    e = event(n)
    return EventMessage(Entry(KEYS, f"{n}-0", e.to_fields(), e))


class Sleeps:
    """Record the backoff waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def deliverer(spec, session, **options) -> Deliverer:
    return Deliverer(spec, session, NotifyMetrics([spec.name]), **options)


def test_full_jitter_backoff_stays_within_its_ceiling():
    spec = slack("s", "http://h/", Delivery(backoff_base=0.5, backoff_cap=4.0))
    top = Deliverer(spec, None, NotifyMetrics(["s"]), rng=lambda: 1.0)  # type: ignore[arg-type]
    assert [top.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    low = Deliverer(spec, None, NotifyMetrics(["s"]), rng=lambda: 0.0)  # type: ignore[arg-type]
    assert low.delay(5) == 0.0
    # A server's Retry-After is a floor, within the cap.
    assert low.delay(1, retry_after=3.0) == 3.0
    assert low.delay(1, retry_after=60.0) == 4.0


@pytest.mark.parametrize(
    ("header", "seconds"), [(None, 0.0), ("7", 7.0), (" 2 ", 2.0), ("Wed, 21 Oct 2015", 0.0)]
)
def test_retry_after_in_seconds(header, seconds):
    assert _retry_after(header) == seconds


async def test_server_errors_are_retried_until_taken(sink, session):
    server = await sink(plan=[500, 503, 429], secret=HMAC_KEY)
    sleeps = Sleeps()
    d = deliverer(webhook("w", server.url), session, sleep=sleeps, rng=lambda: 1.0)
    outcome = await d.deliver(message())
    assert (outcome.delivered, outcome.tries) == (True, 4)
    assert sleeps.waits == [0.01, 0.02, 0.04]
    assert len(server.received) == 4
    # Every attempt is signed afresh; all of them verified.
    assert server.bad_signatures == 0
    assert d.metrics.registry.get_sample_value("liqwatch_notify_failures_total", {"sink": "w"}) == 3


async def test_a_hanging_sink_times_out_and_is_retried(sink, session):
    server = await sink(plan=[Hang(2.0)])
    d = deliverer(slack("s", server.url, replace(FAST, timeout=0.2)), session, sleep=Sleeps())
    outcome = await d.deliver(message())
    assert (outcome.delivered, outcome.tries) == (True, 2)
    assert len(server.received) == 2


async def test_out_of_tries_gives_the_last_reason(sink, session):
    server = await sink(default=502)
    d = deliverer(slack("s", server.url, replace(FAST, max_tries=3)), session, sleep=Sleeps())
    outcome = await d.deliver(message())
    assert (outcome.delivered, outcome.tries, outcome.reason) == (False, 3, "HTTP 502")
    assert len(server.received) == 3


@pytest.mark.parametrize("status", [400, 403, 404, 410, 301])
async def test_an_answer_that_will_not_change_is_not_retried(sink, session, status):
    server = await sink(default=status)
    d = deliverer(slack("s", server.url), session, sleep=Sleeps())
    outcome = await d.deliver(message())
    assert (outcome.delivered, outcome.tries) == (False, 1)
    assert outcome.reason == f"HTTP {status} (not retried)"


async def test_no_reason_quotes_the_url(session):
    url = f"http://127.0.0.1:{free_port()}/services/SECRET-TOKEN"
    d = deliverer(slack("s", url, replace(FAST, max_tries=2)), session, sleep=Sleeps())
    outcome = await d.deliver(message())
    assert not outcome.delivered
    assert outcome.reason == "cannot connect: ConnectionRefusedError"
    assert "SECRET-TOKEN" not in outcome.reason
