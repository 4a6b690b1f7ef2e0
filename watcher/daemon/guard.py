"""Notice that Redis lost its data, refuse to decide on what is left, resume when told.

The daemon adopts the data generation at start (creating it on a Redis that
has none) and checks it on every heartbeat. A missing or foreign generation
means the state it was deciding on is gone: one critical ``redis.data_lost``
event, the engine held (nothing decided on the empty state), ``liqwatch
health`` failing with the reason, until an operator reloads the book and runs
``liqwatch ack-data-loss``; then ``redis.data_loss_acknowledged`` and the
engine reconciles as at a start. See :mod:`state.store.generation`.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import structlog

from state.store.generation import Generation, GenerationStore
from watcher.clock import wall_ms
from watcher.daemon.link import RedisLink


class DataState(StrEnum):
    """OK while the generation is the one adopted; DATA_LOST until acknowledged."""

    OK = "OK"
    DATA_LOST = "DATA_LOST"


class DataGuard:
    """Watch the data-generation marker for one shard and hold the engine while it says lost."""

    def __init__(
        self,
        generations: GenerationStore,
        link: RedisLink,
        *,
        hold: Callable[[bool], None],
        wall_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.generations = generations
        self.link = link
        self.hold = hold
        self.wall_ms = wall_ms
        self.state = DataState.OK
        self.seen: Generation | None = None
        self.lost: Generation | None = None
        self._log = structlog.get_logger().bind(component="data")

    @property
    def reason(self) -> str | None:
        """Why decisions are held, for the heartbeat and ``liqwatch health``; None if not."""
        if self.lost is None:
            return None
        return (
            f"Redis lost its data (generation {self.lost.lost} gone, noticed at"
            f" {self.lost.created_ms}): reload the book, then run liqwatch ack-data-loss"
        )

    async def start(self) -> None:
        """Adopt the generation Redis holds, making one if it has none."""
        marker, created = await self.link.call(
            "generation", lambda: self.generations.create(self.wall_ms())
        )
        if marker.acknowledged:
            self._adopt(marker, created=created)
        else:
            self._lose(marker)

    async def check(self) -> None:
        """Compare the marker with the generation adopted; hold or resume accordingly."""
        marker = await self.link.call("generation", self.generations.read)
        if self.state is DataState.OK:
            assert self.seen is not None
            if marker is not None and marker.id == self.seen.id and marker.acknowledged:
                return
            if marker is None or marker.acknowledged:
                seen = self.seen.id
                marker = await self.link.call(
                    "generation", lambda: self.generations.mark_lost(seen, self.wall_ms())
                )
            if not marker.acknowledged:
                self._lose(marker)
            else:
                # Another daemon wrote a lost marker, and it was acknowledged already.
                self._adopt(marker, created=False)
            return
        if marker is not None and marker.acknowledged:
            self._log.warning(
                "redis.data_loss_acknowledged", generation=marker.id, lost=marker.lost
            )
            self._adopt(marker, created=False)
        elif marker is None and self.lost is not None:
            # Lost again before anyone acknowledged: say so again.
            lost = self.lost.lost or ""
            marker = await self.link.call(
                "generation", lambda: self.generations.mark_lost(lost, self.wall_ms())
            )
            self._lose(marker)

    def _adopt(self, marker: Generation, *, created: bool) -> None:
        held = self.state is DataState.DATA_LOST
        self.seen, self.lost, self.state = marker, None, DataState.OK
        if created:
            self._log.info("redis.generation_created", generation=marker.id)
        if held:
            self.hold(False)

    def _lose(self, marker: Generation) -> None:
        first = self.state is DataState.OK
        self.lost, self.state = marker, DataState.DATA_LOST
        if first:
            self._log.critical(
                "redis.data_lost",
                lost=marker.lost,
                generation=marker.id,
                action="reload the book, then run liqwatch ack-data-loss",
            )
            self.hold(True)
