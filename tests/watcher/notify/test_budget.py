"""The per-sink budget: the first events of a window alone, the rest folded per symbol."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.helpers.notify import BTC, ETH, KEYS, event
from watcher.notify.budget import Budget
from watcher.notify.messages import Entry, EventMessage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def entry(n: int, symbol: str = ETH, equity: str = "-1") -> Entry:
    e = event(n, symbol, equity=equity)
    return Entry(KEYS, f"{n}-0", e.to_fields(), e)


def test_within_the_budget_every_event_goes_alone():
    budget = Budget(5.0, 3, clock=Clock(), wall=lambda: 0)
    sent = [budget.admit(entry(n)) for n in range(3)]
    assert all(isinstance(m, EventMessage) for m in sent)
    assert budget.deadline() is None  # nothing folded: nobody needs waking


def test_past_the_budget_events_fold_into_one_summary_per_symbol():
    clock = Clock()
    walls = iter([1000, 6000, 7000])
    budget = Budget(5.0, 2, clock=clock, wall=lambda: next(walls))
    messages = [budget.admit(entry(n, (ETH, BTC)[n % 2], equity=str(-n))) for n in range(10)]
    assert [m is not None for m in messages] == [True, True] + [False] * 8
    assert budget.folded == 8
    assert budget.deadline() == 105.0
    clock.now = 104.9
    assert budget.expired() == []
    clock.now = 105.0
    eth, btc = budget.expired()
    assert (eth.symbol, eth.count, btc.symbol, btc.count) == (ETH, 4, BTC, 4)
    assert [e.entry_id for e in eth.entries] == ["2-0", "4-0", "6-0", "8-0"]
    assert eth.total_notional == sum(Decimal(2 * (1000 + n)) for n in (2, 4, 6, 8))
    assert eth.worst_equity == Decimal(-8)
    assert btc.worst_equity == Decimal(-9)
    assert dict(eth.kinds) == {"ISOLATED": 4}
    assert (eth.first.event.id, eth.last.event.id) == (event(2).id, event(8).id)
    assert (eth.window_start_ms, eth.window_end_ms) == (1000, 6000)
    assert eth.key == f"summary:{ETH}:2-0:8-0"
    # A new window: the budget is back.
    assert budget.admit(entry(20)) is not None
    assert budget.deadline() is None


def test_ten_thousand_events_cost_a_bounded_number_of_messages():
    clock = Clock()
    budget = Budget(1.0, 3, clock=clock, wall=lambda: 0)
    messages = 0
    for n in range(10_000):
        clock.now = 100.0 + n * 0.0004  # 10,000 events in 4 s
        messages += len(budget.expired())
        messages += budget.admit(entry(n, (ETH, BTC)[n % 2])) is not None
    clock.now += 1.0
    messages += len(budget.expired())
    windows = 4
    assert messages <= windows * (3 + 2)


@pytest.mark.parametrize(("window", "limit"), [(0.0, 1), (1.0, 0)])
def test_a_budget_needs_a_window_and_a_limit(window, limit):
    with pytest.raises(ValueError, match="need window"):
        Budget(window, limit)
