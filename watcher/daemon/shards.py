"""Share S shards among the live workers through per-shard leases in Redis.

Each worker, every ``lease_ttl / 5`` seconds (a round):

1. registers itself (a TTL of ``lease_ttl`` on Redis's clock) and counts the
   live workers W: its share is ``ceil(S / W)``;
2. renews the lease of every shard it holds; a shard whose lease it lost
   (it stalled past the TTL and another worker took the shard) is stopped
   at once, without touching the lease;
3. above its share (a worker joined), it stops and hands back the shards
   over it, at once: the lease is deleted, not left to lapse;
4. below it (a worker left or died), it takes free shards, starting from a
   place of its own (so workers starting together rarely race for one), up
   to its share.

A shard's lease is its input lease (``<prefix>:{k}:in:lease``): holding it
is what lets a worker apply the shard's input, and the worker decides only
the shards it holds. A shard taken over is looked at in full at once (the
engine reconciles), so marks that crossed while nobody held it are acted
on. A clean stop hands every shard back and leaves the registry, so the
others take the shards within one round; a dead worker's shards are free
when its leases lapse (at most ``lease_ttl`` after its last renewal) and
taken within a round after that.

Nothing here is needed for exactly-once: two workers deciding one shard
for a moment (a stalled worker waking up before it notices its lease is
gone) are kept apart by the same guards as two instances on one shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from functools import partial

import structlog

from state.shards import shard_of
from state.store import Store
from state.store.shards import ShardStore
from watcher.daemon.link import LinkClosed, RedisLink
from watcher.daemon.unit import ShardUnit

# Rounds per lease TTL: a free shard waits at most this fraction of it.
ROUNDS_PER_TTL = 5


class _Running:
    """A unit and the task running it."""

    def __init__(self, unit: ShardUnit, task: asyncio.Task[None], stop: asyncio.Event) -> None:
        self.unit = unit
        self.task = task
        self.stop = stop


class Coordinator:
    """Hold this worker's share of the shards; run a unit for each one held."""

    def __init__(
        self,
        shards: ShardStore,
        link: RedisLink,
        *,
        worker: str,
        lease_ttl: float,
        make_unit: Callable[[int], ShardUnit],
    ) -> None:
        self.shards = shards
        self.link = link
        self.worker = worker
        self.ttl_ms = int(lease_ttl * 1000)
        self.interval = lease_ttl / ROUNDS_PER_TTL
        self.make_unit = make_unit
        self.count = shards.count
        self.running: dict[int, _Running] = {}
        self.workers: list[str] = []
        self.share = 0
        self.taken = 0
        self.handed_back = 0
        self.lost = 0
        # Where this worker starts looking for free shards.
        self._start = shard_of(worker, self.count)
        self._stores = [Store(shards.redis, keys) for keys in shards.shard_keys]
        self._log = structlog.get_logger().bind(component="shards", worker=worker)

    @property
    def held(self) -> list[int]:
        """The shards this worker runs now."""
        return sorted(self.running)

    @property
    def units(self) -> list[ShardUnit]:
        """The units of the shards held, by shard."""
        return [self.running[k].unit for k in sorted(self.running)]

    async def run(self, stop: asyncio.Event) -> None:
        """Hold a share of the shards until ``stop``; then hand every one back.

        Cancelled (the process is crashing) or failing, it hands nothing
        back: its units are cancelled and its leases lapse, as at a kill -9.
        """
        try:
            while not stop.is_set():
                await self.round()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await stop.wait()
        except BaseException:
            for running in self.running.values():
                running.task.cancel()
            await asyncio.gather(*(r.task for r in self.running.values()), return_exceptions=True)
            raise
        await self._leave()

    async def round(self) -> None:
        """One round: register, renew, hand back above the share, take free shards below it."""
        self._reap()
        self.workers = await self.link.call(
            "shards.register", lambda: self.shards.register(self.worker, self.ttl_ms)
        )
        self.share = math.ceil(self.count / max(1, len(self.workers)))
        renewed = await asyncio.gather(*(self._renew(k) for k in self.held))
        for k, ok in zip(self.held, renewed, strict=True):
            if not ok:
                self.lost += 1
                self._log.warning("shards.lease_lost", shard=k)
                await self._stop(k, hand_back=False)
        for k in self.held[self.share :]:
            await self._stop(k, hand_back=True)
            self.handed_back += 1
            self._log.info(
                "shards.handed_back", shard=k, share=self.share, workers=len(self.workers)
            )
        if len(self.running) < self.share:
            await self._take_free()

    def _reap(self) -> None:
        """Forget units whose task ended by itself (a bug surfaces: the daemon ends)."""
        for k, running in list(self.running.items()):
            if running.task.done():
                del self.running[k]
                running.task.result()

    async def _renew(self, shard: int) -> bool:
        # Through the shard's own link: a failover of the node holding it
        # degrades that shard, not this worker's view of the others.
        store = self._stores[shard]
        return await self.running[shard].unit.link.call(
            "shards.renew", lambda: store.renew_lease(self.worker, self.ttl_ms)
        )

    async def _take_free(self) -> None:
        owners = await self.link.call("shards.owners", self.shards.owners)
        order = [(self._start + i) % self.count for i in range(self.count)]
        for k in order:
            if len(self.running) >= self.share:
                return
            if owners[k] is not None or k in self.running:
                continue
            store = self._stores[k]
            got = await self.link.call(
                "shards.take", partial(store.acquire_lease, self.worker, self.ttl_ms)
            )
            if got:
                self.taken += 1
                self._log.info("shards.taken", shard=k, share=self.share, workers=len(self.workers))
                self._start_unit(k)

    def _start_unit(self, shard: int) -> None:
        unit = self.make_unit(shard)
        stop = asyncio.Event()
        task = asyncio.create_task(unit.run(stop, fresh=True), name=f"shard-{shard}")
        self.running[shard] = _Running(unit, task, stop)

    async def _stop(self, shard: int, *, hand_back: bool) -> None:
        running = self.running.pop(shard)
        running.stop.set()
        await running.task
        if hand_back:
            store = self._stores[shard]
            await self.link.once("shards.release", lambda: store.release_lease(self.worker))

    async def _leave(self) -> None:
        """At a stop: every unit finishes its batch, every shard is handed back."""
        for running in self.running.values():
            running.stop.set()
        results = await asyncio.gather(
            *(r.task for r in self.running.values()), return_exceptions=True
        )
        held = list(self.running)
        self.running.clear()
        for k in held:
            store = self._stores[k]
            await self.link.once("shards.release", partial(store.release_lease, self.worker))
        with contextlib.suppress(LinkClosed):
            await self.link.once("shards.leave", lambda: self.shards.deregister(self.worker))
        for result in results:
            if isinstance(result, BaseException) and not isinstance(
                result, asyncio.CancelledError | LinkClosed
            ):
                raise result
