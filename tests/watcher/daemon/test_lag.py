"""The loop-lag meter sees a blocked loop and alerts once."""

from __future__ import annotations

import asyncio
import time

from structlog.testing import capture_logs

from watcher.daemon.lag import LagMeter


async def test_blocked_loop_is_measured_and_alerted() -> None:
    meter = LagMeter(interval=0.01, alert_after=0.05, log_every=10)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(meter.run(stop))
        await asyncio.sleep(0.05)
        meter.take()
        # Block the loop, as a slow decision would: on purpose.
        time.sleep(0.15)  # noqa: ASYNC251
        await asyncio.sleep(0.05)
        time.sleep(0.15)  # noqa: ASYNC251
        await asyncio.sleep(0.05)
        stop.set()
        await task
    assert meter.take() >= 0.1
    assert [e["event"] for e in logs].count("loop.lag") == 1
