"""Every figure the daemon keeps, named once, served to Prometheus; readiness.

The components count in plain ``Counter`` objects on their hot paths (an
``int`` add; a prometheus-client counter takes a lock per increment, which
a cascade of 100,000 decisions would pay 100,000 times). This module is the
one place that names them: at each scrape it reads them into metric
families (:class:`DaemonCollector`), and the latency histogram is the one
metric observed directly. The heartbeat (and through it the stats hash,
``liqwatch inspect stats``) reads the same objects, so the three views never
disagree. Gauges that need Redis (input lag, in-flight liquidations,
warnings) are read by the heartbeat every ``heartbeat_interval`` and served
from there: a scrape never waits on Redis.

``[metrics] listen = "host:port"`` serves ``/metrics`` (text format) and
``/ready``: 200 when Redis answers, the input is caught up and every
configured symbol is LIVE; 503 with the reasons otherwise.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watcher.daemon.config import Settings
from watcher.daemon.link import LinkState, RedisLink
from watcher.daemon.unit import ShardUnit
from watcher.daemon.version import version
from watcher.feeds.book import MarkBook
from watcher.feeds.client import FeedState, FeedStats

# Every metric the daemon exports: name -> (type, help). Alert rules, the
# dashboard and the README are checked against this table.
METRICS: dict[str, tuple[str, str]] = {
    "liqwatch_build_info": ("gauge", "1, labelled with the running version"),
    "liqwatch_up": ("gauge", "1 while the daemon runs (a scrape that fails says the rest)"),
    "liqwatch_redis_degraded": ("gauge", "1 while a Redis round trip fails or times out"),
    "liqwatch_data_lost": ("gauge", "1 while decisions are held: Redis lost its data"),
    "liqwatch_redis_round_trips_total": ("counter", "Redis round trips tried, by call"),
    "liqwatch_redis_errors_total": ("counter", "Redis round trips that failed or timed out"),
    "liqwatch_redis_outages_total": ("counter", "Redis outages ridden out (DEGRADED then OK)"),
    "liqwatch_feed_state": ("gauge", "1 for each feed's current connection state"),
    "liqwatch_feed_reconnects_total": ("counter", "connection attempts after the first, by feed"),
    "liqwatch_feed_frames_total": ("counter", "frames received, by feed"),
    "liqwatch_mark_refusals_total": ("counter", "marks refused, by reason"),
    "liqwatch_marks_total": ("counter", "marks accepted into the mark book"),
    "liqwatch_mark_age_seconds": ("gauge", "seconds since each symbol's last accepted mark"),
    "liqwatch_mark_live": ("gauge", "1 while a symbol is LIVE, 0 while STALE"),
    "liqwatch_engine_ticks_total": ("counter", "symbol ticks queried against the index"),
    "liqwatch_engine_candidates_total": ("counter", "index members crossed, by margin mode"),
    "liqwatch_liquidations_total": ("counter", "liquidation events committed, by kind and symbol"),
    "liqwatch_decisions_deferred_total": ("counter", "decisions left to the next tick"),
    "liqwatch_tick_to_commit_seconds": ("histogram", "mark receipt to committed event"),
    "liqwatch_input_applied_total": ("counter", "input updates applied"),
    "liqwatch_input_duplicates_total": ("counter", "input updates ignored as old (seq)"),
    "liqwatch_input_dead_letters_total": ("counter", "input entries dead-lettered"),
    "liqwatch_input_lag_entries": ("gauge", "input entries not yet read, shards held"),
    "liqwatch_input_pending_entries": ("gauge", "input entries read, not yet acknowledged"),
    "liqwatch_liquidations_in_flight": ("gauge", "claims waiting for their executor"),
    "liqwatch_liquidation_oldest_age_seconds": ("gauge", "age of the oldest claim in flight"),
    "liqwatch_loop_lag_seconds": ("gauge", "worst event-loop lag over the last heartbeat"),
    "liqwatch_leases_held": ("gauge", "input leases (shards) this process holds"),
    "liqwatch_heartbeat_timestamp_seconds": ("gauge", "when the last heartbeat was written"),
    "liqwatch_audit_missed_total": ("counter", "liquidatable accounts the self-audit found"),
    "liqwatch_in_warning": ("gauge", "accounts and positions in warning, by kind"),
    "liqwatch_warnings_total": ("counter", "near-liquidation warnings emitted, by kind"),
}
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(slots=True)
class Observed:
    """What the heartbeat last read from Redis, served by the collector."""

    at: float = 0.0
    input_lag: int = 0
    input_lag_known: bool = True
    input_pending: int = 0
    in_flight: int = 0
    oldest_claim_age: float = 0.0
    loop_lag: float = 0.0
    in_warning: dict[str, int] = field(default_factory=dict)


class Daemon(Protocol):
    """What the metrics read of the daemon process (watcher/daemon/app.py's Daemon)."""

    settings: Settings
    book: MarkBook
    feed_stats: list[FeedStats]
    observed: Observed
    last_beat: float

    @property
    def units(self) -> Sequence[ShardUnit]: ...

    @property
    def links(self) -> Sequence[RedisLink]: ...


class DaemonMetrics:
    """The daemon's registry: its collector and the latency histogram."""

    def __init__(self, daemon: Daemon) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "liqwatch_tick_to_commit_seconds",
            METRICS["liqwatch_tick_to_commit_seconds"][1],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(DaemonCollector(daemon))


class DaemonCollector(Collector):
    """Read the daemon's counters and state into metric families at each scrape."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def describe(self) -> list[Metric]:
        # Declared, not collected: describing must not read a half-built daemon.
        return []

    def collect(self) -> Iterator[Metric]:
        d = self.daemon
        units = [u for u in d.units if u.started]
        now = time.monotonic()

        def gauge(name: str, value: float, labels: dict[str, str] | None = None) -> Metric:
            family = GaugeMetricFamily(name, METRICS[name][1], labels=list(labels or {}))
            family.add_metric(list((labels or {}).values()), value)
            return family

        def counter(name: str, value: float) -> Metric:
            # The family is named without _total; the sample gets it.
            family = CounterMetricFamily(name.removesuffix("_total"), METRICS[name][1])
            family.add_metric([], value)
            return family

        def labelled(
            name: str, kind: str, labels: list[str], rows: dict[tuple[str, ...], float]
        ) -> Metric:
            help_ = METRICS[name][1]
            family: Metric
            if kind == "counter":
                family = CounterMetricFamily(name.removesuffix("_total"), help_, labels=labels)
            else:
                family = GaugeMetricFamily(name, help_, labels=labels)
            for key, value in sorted(rows.items()):
                family.add_metric(list(key), value)
            return family

        yield gauge("liqwatch_build_info", 1, {"version": version()})
        yield gauge("liqwatch_up", 1)
        links = d.links
        yield gauge(
            "liqwatch_redis_degraded",
            float(any(link.state is LinkState.DEGRADED for link in links)),
        )
        yield gauge("liqwatch_data_lost", float(any(u.data_lost for u in units)))
        trips: dict[tuple[str, ...], float] = {}
        for link in links:
            for call, n in link.round_trips.items():
                trips[(call,)] = trips.get((call,), 0) + n
        yield labelled("liqwatch_redis_round_trips_total", "counter", ["call"], trips)
        yield counter("liqwatch_redis_errors_total", sum(link.errors for link in links))
        yield counter("liqwatch_redis_outages_total", sum(link.outages for link in links))

        states: dict[tuple[str, ...], float] = {}
        reconnects: dict[tuple[str, ...], float] = {}
        frames: dict[tuple[str, ...], float] = {}
        for i, (feed, stats) in enumerate(zip(d.settings.feeds, d.feed_stats, strict=True)):
            name = f"{feed.venue}-{i}"
            for state in FeedState:
                states[(name, state.value)] = float(stats.state is state)
            reconnects[(name,)] = max(0, stats.attempts - 1)
            frames[(name,)] = stats.frames
        yield labelled("liqwatch_feed_state", "gauge", ["feed", "state"], states)
        yield labelled("liqwatch_feed_reconnects_total", "counter", ["feed"], reconnects)
        yield labelled("liqwatch_feed_frames_total", "counter", ["feed"], frames)
        refusals: dict[tuple[str, ...], float] = {
            (reason,): float(n) for reason, n in d.book.rejected.items()
        }
        yield labelled("liqwatch_mark_refusals_total", "counter", ["reason"], refusals)
        yield counter("liqwatch_marks_total", d.book.accepted)
        ages: dict[tuple[str, ...], float] = {}
        live: dict[tuple[str, ...], float] = {}
        for symbol in sorted(d.book.symbols):
            mark = d.book.latest(symbol)
            if mark is not None:
                ages[(symbol,)] = round(now - mark.recv_ts, 3)
            live[(symbol,)] = float(mark is not None and d.book.is_fresh(mark, now))
        yield labelled("liqwatch_mark_age_seconds", "gauge", ["symbol"], ages)
        yield labelled("liqwatch_mark_live", "gauge", ["symbol"], live)

        totals: Counter[str] = Counter()
        for unit in units:
            totals.update(unit.counters)
        yield counter("liqwatch_engine_ticks_total", totals.get("ticks", 0))
        candidates: dict[tuple[str, ...], float] = {}
        liquidated: dict[tuple[str, ...], float] = {}
        for unit in units:
            for mode, n in unit.engine.candidates.items():
                candidates[(mode,)] = candidates.get((mode,), 0) + n
            for (kind, symbol), n in unit.engine.liquidated.items():
                liquidated[(kind, symbol)] = liquidated.get((kind, symbol), 0) + n
        yield labelled("liqwatch_engine_candidates_total", "counter", ["kind"], candidates)
        yield labelled("liqwatch_liquidations_total", "counter", ["kind", "symbol"], liquidated)
        yield counter("liqwatch_decisions_deferred_total", totals.get("decisions_deferred", 0))
        yield counter("liqwatch_input_applied_total", totals.get("input_applied", 0))
        yield counter("liqwatch_input_duplicates_total", totals.get("input_duplicates", 0))
        yield counter("liqwatch_input_dead_letters_total", totals.get("input_dead_letters", 0))
        yield counter("liqwatch_audit_missed_total", totals.get("audit_missed", 0))

        seen = d.observed
        yield gauge("liqwatch_input_lag_entries", seen.input_lag)
        yield gauge("liqwatch_input_pending_entries", seen.input_pending)
        yield gauge("liqwatch_liquidations_in_flight", seen.in_flight)
        yield gauge("liqwatch_liquidation_oldest_age_seconds", seen.oldest_claim_age)
        yield gauge("liqwatch_loop_lag_seconds", seen.loop_lag)
        yield gauge("liqwatch_leases_held", sum(1 for u in units if u.consumer.leader))
        yield gauge("liqwatch_heartbeat_timestamp_seconds", d.last_beat)
        warning: dict[tuple[str, ...], float] = {
            (kind,): float(n) for kind, n in seen.in_warning.items()
        }
        yield labelled("liqwatch_in_warning", "gauge", ["kind"], warning)
        warned: dict[tuple[str, ...], float] = {}
        for unit in units:
            if unit.warnings is not None:
                for kind, n in unit.warnings.warned.items():
                    warned[(kind,)] = warned.get((kind,), 0) + n
        yield labelled("liqwatch_warnings_total", "counter", ["kind"], warned)


def readiness(daemon: Daemon) -> list[str]:
    """Why the daemon is not ready (empty: ready): Redis, input caught up, every symbol LIVE."""
    reasons = []
    if any(link.state is LinkState.DEGRADED for link in daemon.links):
        reasons.append("Redis does not answer")
    if any(u.data_lost for u in daemon.units):
        reasons.append("Redis lost its data: decisions held")
    if not any(u.started for u in daemon.units):
        reasons.append("no shard running yet")
    seen = daemon.observed
    if seen.at == 0.0:
        reasons.append("no heartbeat yet")
    elif seen.input_lag or seen.input_pending or not seen.input_lag_known:
        reasons.append(f"input not caught up: lag {seen.input_lag}, pending {seen.input_pending}")
    stale = sorted(daemon.book.symbols - daemon.book.fresh_marks(time.monotonic()).keys())
    if stale:
        reasons.append(f"STALE: {', '.join(stale)}")
    return reasons
