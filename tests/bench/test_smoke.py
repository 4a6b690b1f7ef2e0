"""The benchmark suite at tiny N, so that ``make bench`` cannot rot between runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bench import book as bookgen
from bench import report, scale
from bench.__main__ import QUICK, run
from bench.suite import full_recompute

TINY = replace(
    QUICK,
    n=600,
    sizes=(150,),
    recompute_runs=(2, 2),
    tick_runs=2,
    ticks_per_run=20,
    throughput_runs=2,
    batches_per_run=10,
    walk_steps=10,
    stress_steps=10,
    latency_seconds=0.5,
    crash_target=60,
    scale=False,  # its own test below
)


def test_book_is_deterministic_mixed_and_healthy_at_the_start() -> None:
    a, b = bookgen.generate_book(400, seed=3), bookgen.generate_book(400, seed=3)
    assert a.messages == b.messages
    assert a.messages != bookgen.generate_book(400, seed=4).messages
    s = a.summary()
    assert s["positions"] >= 400
    assert 0.6 < s["cross_legs"] / s["positions"] < 0.8
    assert s["both_modes_on_one_symbol"] > 0
    assert {p.symbol for acct in a.accounts for p in acct.cross} <= set(bookgen.SYMBOLS)
    assert not full_recompute(a.accounts, bookgen.models(), bookgen.start_marks())


async def test_every_measurement_runs_and_the_readme_block_renders(tmp_path: Path) -> None:
    results = await run(TINY, log=lambda _: None, freeze_gc=False)
    assert set(results["per_tick"]) == {"150", "600"}
    assert results["per_tick"]["600"]["candidates"] == {}
    assert results["input"]["600"]["messages"] == results["books"]["600"]["messages"]
    assert results["memory"]["bytes_per_position"] > 0
    mass = results["mass_liquidation"]
    assert mass["positions_liquidated"] >= TINY.crash_target
    assert mass["check_each_once"]
    assert mass["check_equals_full_recompute"]
    assert results["final_check"]["ok"]
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Benchmarks\n\nmargin table\n\n## Reliability\n\nr\n")
    report.update_readme(readme, results)
    report.update_readme(readme, results)
    text = readme.read_text()
    assert text.count(report.START) == 1
    assert "margin table" in text
    assert text.index(report.END) < text.index("## Reliability")


async def test_scale_liquidates_each_once_with_one_and_two_worker_processes() -> None:
    """bench/scale.py at tiny N: real worker processes, S = 1 then 4 shards with W = 1 and 2."""
    book = bookgen.generate_book(600, seed=2)
    sc = await scale.measure(
        book, shards=4, workers=(1, 2), target=60, lease_ttl=1.0, log=lambda _: None
    )
    assert [(r["shards"], r["workers"]) for r in sc["runs"]] == [(1, 1), (4, 1), (4, 2)]
    assert sc["crash"]["positions"] >= 60
    for r in sc["runs"]:
        cascade = r["cascade"]
        assert cascade["check_each_once"], r
        assert cascade["check_equals_full_recompute"], r
        assert cascade["missing"] == cascade["extra"] == cascade["misplaced"] == 0
        assert cascade["events"] == sc["crash"]["events"]
        assert cascade["same_holders"]
        assert r["input"]["messages"] == len(book.messages)
        assert r["input"]["dead_letters"] == 0
        assert r["exit_codes"] == [0] * r["workers"]
    # Two workers held two shards each, through the leases.
    assert sorted(len(held) for held in sc["runs"][2]["held"].values()) == [2, 2]
    assert set(sc["ratios"]) >= {"input_w2_over_w1", "cascade_w2_over_w1"}
    assert report.scale_rows(sc, "600")
    assert report.scale_how(sc)
