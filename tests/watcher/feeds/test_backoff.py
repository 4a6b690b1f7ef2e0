"""Backoff: full jitter under a doubling ceiling, capped, reset on demand."""

from __future__ import annotations

import random

import pytest

from watcher.feeds.backoff import Backoff


def test_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 4.0, rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.failures == 6


def test_full_jitter_stays_under_the_ceiling() -> None:
    rng = random.Random(7)
    backoff = Backoff(0.1, 3.0, rng=rng.random)
    for _ in range(200):
        ceiling = backoff.ceiling()
        assert 0 <= backoff.next_delay() <= ceiling <= 3.0


def test_reset_starts_over_from_base() -> None:
    backoff = Backoff(1.0, 60.0, rng=lambda: 1.0)
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(1.0, 30.0, rng=lambda: 1.0)
    backoff.failures = 10_000
    assert backoff.next_delay() == 30.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_bad_parameters_are_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(base, cap)
