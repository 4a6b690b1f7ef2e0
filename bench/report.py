"""Render the results of ``python -m bench`` as the README's benchmark table.

The table goes between ``<!-- bench:start -->`` and ``<!-- bench:end -->``
in README.md's "## Benchmarks" section; everything outside the markers is
left as it is.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


def _n(value: int | str) -> str:
    n = int(value)
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 0.1 else _ms(seconds)


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def table(r: dict[str, Any]) -> str:
    """The markdown between the markers."""
    cfg = r["config"]
    big = str(cfg["n"])
    m = r["machine"]
    rows: list[tuple[str, str, str, str, str]] = []
    ticks = r["per_tick"]
    for n, t in ticks.items():
        rows.append(
            (
                "per-tick cost, liqwatch: Engine.process of one tick crossing nothing"
                " (median; p10-p90)",
                _n(n),
                f"{_ms(t['median_s'])} ({_ms(t['p10_s'])}-{_ms(t['p90_s'])})",
                "flat in N",
                "",
            )
        )
    for n, t in ticks.items():
        rc = t["recompute_s"]
        rows.append(
            (
                f"per-tick cost, full recompute (median of {rc['runs']}; min-max)",
                _n(n),
                f"{_s(rc['median'])} ({_s(rc['min'])}-{_s(rc['max'])})",
                "",
                "",
            )
        )
    for n, t in ticks.items():
        ok = t["ratio"] >= 1_000 if n == big else True
        rows.append(
            (
                "ratio full recompute / liqwatch",
                _n(n),
                f"{t['ratio']:,.0f}x",
                ">= 1,000x at 1M" if n == big else "",
                _met(ok) if n == big else "",
            )
        )
    flat = [t["median_s"] for t in ticks.values()]
    rows[len(ticks) - 1] = (*rows[len(ticks) - 1][:4], _met(max(flat) <= 1.5 * min(flat)))
    th = r["throughput"]["conflated_1"]
    tps = th["ticks_per_s"]
    rows.append(
        (
            f"ticks/s, no crossing, batches of {th['symbols_per_batch']} changed symbols"
            " (median; min-max of runs)",
            _n(big),
            f"{tps['median']:,.0f} ({tps['min']:,.0f}-{tps['max']:,.0f})",
            ">= 20,000",
            _met(tps["median"] >= 20_000),
        )
    )
    th5 = r["throughput"]["conflated_5"]
    rows.append(
        (
            "same, each batch conflating 5 marks per symbol: symbol-ticks/s (raw marks/s)",
            _n(big),
            f"{th5['ticks_per_s']['median']:,.0f} ({th5['raw_marks_per_s_median']:,.0f})",
            "",
            "",
        )
    )
    lat = r["latency"]
    rows.append(
        (
            f"tick -> committed event latency p50 / p99 / p99.9 at {lat['rate_target']:,.0f}"
            f" marks/s, steady walk, one mark in {r['config']['latency_target_every']} just past"
            f" a liquidation price ({lat['events_matched']:,} events; max)",
            _n(big),
            f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} / {lat['p999_ms']:.2f} ms"
            f" ({lat['max_ms']:.1f} ms)",
            "<= 1 / <= 5 ms",
            _met(lat["p50_ms"] <= 1 and lat["p99_ms"] <= 5),
        )
    )
    vol = r["latency_volatile"]
    rows.append(
        (
            f"same, volatile walk (sigma {vol['sigma_per_mark']:g} per mark, no targeting;"
            f" {vol['events_matched']:,} events; max)",
            _n(big),
            f"{vol['p50_ms']:.2f} / {vol['p99_ms']:.2f} / {vol['p999_ms']:.2f} ms"
            f" ({vol['max_ms']:.1f} ms)",
            "",
            "",
        )
    )
    ml = r["mass_liquidation"]
    rows.append(
        (
            f"one tick liquidating {ml['positions_liquidated']:,} positions ({ml['events']:,}"
            " events): until all committed",
            _n(big),
            f"{_s(ml['tick_s'])}; each once: {_met(ml['check_each_once'])}; equals a full"
            f" recompute: {_met(ml['check_equals_full_recompute'])}",
            "<= 2 s",
            _met(ml["tick_s"] <= 2 and ml["positions_liquidated"] >= cfg["crash_target"]),
        )
    )
    if "map" in r:
        mp = r["map"]
        rows.append(
            (
                f"liquidation map (`liqwatch map`) of {mp['symbol']}, +/-"
                f"{float(mp['range']) * 100:.0f}% in {float(mp['step']) * 100:g}% steps, read"
                " through the index: until answered",
                _n(big),
                f"{_s(mp['seconds'])}; {mp['candidates_read']:,} candidate accounts read of"
                f" {mp['accounts']:,} ({mp['accounts_holding_symbol']:,} hold the symbol)",
                "<= 10 s",
                _met(mp["seconds"] <= 10),
            )
        )
    inp = r["input"][big]
    w = inp["window_rates"]
    rows.append(
        (
            "input updates applied per second through the input stream (whole load; min-max of"
            " tenths)",
            _n(big),
            f"{inp['messages_per_s']:,.0f}/s ({w['min']:,.0f}-{w['max']:,.0f}); positions"
            f" {inp['positions_per_s']:,.0f}/s",
            ">= 30,000",
            _met(inp["messages_per_s"] >= 30_000),
        )
    )
    mem = r["memory"]
    rows.append(
        (
            "Redis memory per position (used_memory delta / positions)",
            _n(big),
            f"{mem['bytes_per_position']:.0f} bytes",
            "<= 400 bytes",
            _met(mem["bytes_per_position"] <= 400),
        )
    )
    for name, label in (("calm", "calm"), ("volatile", "volatile")):
        b = r["bands"][name]
        rows.append(
            (
                f"cross accounts: re-pricing touches / band re-evaluations, {label} walk"
                f" ({b['steps']:,} steps of every symbol, sigma {b['sigma_per_step']:g}/step)",
                f"{_n(b['cross_accounts'])} accounts",
                f"{b['ratio']:,.0f}x ({b['reevaluations_per_step']:.1f} re-evaluations/step"
                f" vs {b['cross_accounts']:,})",
                ">= 100x" if name == "calm" else "",
                _met(b["ratio"] >= 100) if name == "calm" else "",
            )
        )
    if "warnings" in r:
        wr = r["warnings"]
        off = r["per_tick"].get(str(wr_size(wr, r)), {}).get("median_s")
        rows.append(
            (
                "near-liquidation warnings on (level 1.5, re-arm 1.6): the one-tick wiggle's"
                " engine batch, and the warning round after it (median)",
                _n(str(wr_size(wr, r))),
                f"engine {wr['engine_median_s'] * 1e3:.3f} ms"
                + (f" (warnings off: {off * 1e3:.3f} ms)" if off else "")
                + f", warning round {wr['round_median_s'] * 1e3:.3f} ms (p99"
                f" {wr['round_p99_s'] * 1e3:.3f} ms); the book's {wr['dirty_accounts']:,}"
                f" accounts indexed at {wr['accounts_indexed_per_s']:,.0f}/s;"
                f" {wr['in_warning']['cross'] + wr['in_warning']['isolated']:,} parts in warning",
                "per tick unmoved",
                _met(off is None or wr["engine_median_s"] <= off * 1.5),
            )
        )
    if "scale" in r:
        rows += scale_rows(r["scale"], big)
    lines = [
        f"Generated by `make bench` on {r.get('date', time.strftime('%Y-%m-%d'))} in"
        f" {r['total_s'] / 60:.1f} min; every number is in `bench/results.json`. Machine:"
        f" {m['cores']} cores ({m['cpu']}), Python {m['python']}, Redis {m['redis_version']}"
        " (a throwaway redis-server on loopback, no persistence). One process runs the"
        " engine, the marks and the input consumer, as the daemon does.",
        "",
        "| metric | N | result | target | met |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {' | '.join(row)} |" for row in rows],
        "",
        *_how(r),
    ]
    return "\n".join(lines)


def _how(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    big = str(cfg["n"])
    book = r["books"][big]
    ml = r["mass_liquidation"]
    fc = r["final_check"]
    lat = r["latency"]
    return [
        "How each was measured (`bench/suite.py`):",
        "",
        f"- **Book** (`bench/book.py`, seed {cfg['seed']}): {book['positions']:,} positions in"
        f" {book['accounts']:,} accounts over 20 symbols (BTC/ETH/SOL on Orderly's model with"
        f" docs/margin.md's parameters, 3 on brackets, 14 flat); {book['cross_legs']:,} cross"
        f" legs in"
        f" {book['cross_accounts']:,} accounts of 1-6 legs, {book['isolated_positions']:,}"
        f" isolated, {book['both_modes_on_one_symbol']:,} accounts with both modes on one"
        " symbol; notionals $100-$1M, every account and isolated position healthy at the start,"
        " its distance to liquidation drawn from 0.3% to 50% (`watcher/demo/book.py`).",
        f"- **Loading**: the whole book ({book['messages']:,} contract messages) is XADDed to"
        " the input stream, then applied by the real `InputConsumer` (its default batch of"
        f" {r['input'][big]['input_batch']}) with the engine's live marks: that run is the"
        " input rate. Every book of every size is loaded this way.",
        "- **Per-tick cost**: one symbol's mark moves one price tick (about 1e-5) and back,"
        " through `MarkBook.offer`/`take` into `Engine.process` against the loaded Redis"
        " (record the mark and query both index sets: one round trip); no index member is"
        " crossed (counted). The **full recompute** baseline, in the same process and run,"
        " prices every cross account (`margin.evaluate_cross`) and every isolated position"
        " (`margin.isolated_health`) at the marks, then `is_liquidatable`, over the same book"
        f" held in memory; at 1M it is timed on {r['per_tick'][big]['recompute_s']['runs']}"
        f" ticks only (plus the final check below: {fc['recompute_s']:.1f} s).",
        "- **Ticks/s**: batches in which every symbol has a new mark, each batch one"
        " `Engine.process`, back to back; a tick is one symbol's conflated mark.",
        f"- **Latency**: `Engine.run` as a task, as in the daemon, fed {lat['rate_target']:,.0f}"
        " marks/s by a task calling `MarkBook.offer` when each is due: one symbol at a time,"
        f" a lognormal step of sigma {lat['sigma_per_mark']:g} (about a calm market's"
        f" second), and every {cfg['latency_target_every']}th mark instead moves a symbol"
        " just past the liquidation price of the isolated position nearest its mark"
        " (alternately down and up; read from the index beforehand), so events come at a"
        " steady pace. The volatile run is a plain walk at a crash's volatility, where the"
        " engine is busy re-banding. Latency: from the offer of the mark an event carries to"
        f" the return of the commit that XADDed it; {lat['seconds']:.0f} s each.",
        f"- **Mass liquidation**: the price of {ml['symbol']} at which at least"
        f" {ml['target_positions']:,} positions liquidate is solved exactly beforehand"
        f" ({ml['move'] * 100:.1f}%); one tick there, timed from `Engine.process` start to its"
        " return (every commit answered). Then every event is read back: no account or"
        " position twice, and the set equals a full recompute of the accounts on that symbol.",
        "- **Bands**: every symbol takes a lognormal step per batch; a re-pricing approach"
        " prices every open cross account each batch, liqwatch evaluates those whose trigger"
        " a mark crossed (counted from the engine's index answers).",
        *(
            [
                "- **Map**: `state.store.risk.build_map`, the whole of `liqwatch map`'s work before"
                " printing, on the loaded book at its marks: read the marks, query the"
                " symbol's index sets over the range and every other symbol's at its mark,"
                " read the candidate accounts (1,000 a round trip, the next in flight while"
                " one is judged) and judge each along the steps with the daemon's decision"
                " functions (bisection over the steps)."
            ]
            if "map" in r
            else []
        ),
        "- **Memory**: `INFO memory` used_memory before and after the 1M load, with the input"
        " stream deleted (it is not state), over the positions.",
        f"- **Final check**: after everything, a full recompute at the final marks finds"
        f" {fc['liquidatable_now']:,} liquidatable, {fc['missed']} of them without an event;"
        f" {fc['emitted_twice']} emitted twice.",
        *(scale_how(r["scale"]) if "scale" in r else []),
    ]


def _layout(x: dict[str, Any]) -> str:
    return f"S={x['shards']}, W={x['workers']}"


def _x(ratio: float) -> str:
    return f"{ratio:.2f}x"


def _about(value: float) -> str:
    """A figure to two significant digits: an estimate's precision."""
    return f"{float(f'{value:.2g}'):,.0f}" if value >= 10 else f"{value:.2g}"


def _others(x: dict[str, Any]) -> str:
    """Say how many cores other jobs on the machine took during a layout's runs, if any."""
    cores = x["other_cores_max"]
    return f"; other jobs took up to {cores:.1f} cores meanwhile" if cores >= 0.1 else ""


def wr_size(wr: dict[str, Any], r: dict[str, Any]) -> int:
    """The per-tick size the warnings book was drawn at (its positions are about that)."""
    sizes = [int(n) for n in r["per_tick"]]
    return min(sizes, key=lambda n: abs(n - wr["positions"]))


def scale_rows(sc: dict[str, Any], big: str) -> list[tuple[str, str, str, str, str]]:
    """Rows of bench/scale.py: each layout's input rate and cascade, the speed-ups, the estimate."""
    rows: list[tuple[str, str, str, str, str]] = []
    ratios, est = sc["ratios"], sc["estimate"]
    s = sc["shards"]
    for x in sc["layouts"]:
        lo, hi = x["input_per_s_range"]
        if x["runs"] > 1:
            how, spread = f"median, min-max of {x['runs']} runs", f" ({lo:,.0f}-{hi:,.0f})"
        else:
            run = next(
                r for r in sc["runs"] if (r["shards"], r["workers"]) == (x["shards"], x["workers"])
            )
            w = run["input"]["window_rates"]
            how, spread = "min-max of tenths", f" ({w['min']:,.0f}-{w['max']:,.0f})" if w else ""
        rows.append(
            (
                f"input updates applied/s, `liqwatch run` worker processes, {_layout(x)}"
                f" (10%-90% of the load; {how})",
                _n(big),
                f"{x['input_per_s']:,.0f}/s{spread}{_others(x)}",
                "",
                "",
            )
        )
    for x in sc["layouts"]:
        lo, hi = x["cascade_s_range"]
        many = x["runs"] > 1
        rows.append(
            (
                f"one mark liquidating {x['positions']:,.0f} positions ({x['events']:,.0f}"
                f" events), {_layout(x)}: from the feed's push to the last event committed"
                + (f" (median, min-max of {x['runs']} runs)" if many else ""),
                _n(big),
                f"{_s(x['cascade_s'])}" + (f" ({_s(lo)}-{_s(hi)})" if many else "") + "; each"
                f" once, equal to a full recompute: {_met(x['checks_ok'])}{_others(x)}",
                "",
                "",
            )
        )
    for w in sc["workers"]:
        if w == 1:
            continue
        rows.append(
            (
                f"scaling on this machine's {sc['cores']} cores (Redis on them too), W={w} over"
                f" W=1 at S={s}: input rate / cascade speed (ceiling from the CPU split)",
                _n(big),
                f"{_x(ratios[f'input_w{w}_over_w1'])} ({_x(ratios[f'input_w{w}_ceiling_here'])})"
                f" / {_x(ratios[f'cascade_w{w}_over_w1'])}"
                f" ({_x(ratios[f'cascade_w{w}_ceiling_here'])})",
                "",
                "",
            )
        )
    rows.append(
        (
            f"shard overhead, S={s} over S=1 with one worker: input rate / cascade speed",
            _n(big),
            f"{_x(ratios['input_sharded_over_single'])} /"
            f" {_x(ratios['cascade_sharded_over_single'])}",
            "",
            "",
        )
    )
    rows.append(
        (
            f"CPU per input entry / per liquidated position ({est['from']}): Python (the worker)"
            " + Redis",
            _n(big),
            f"{est['input_python_us']:.1f} + {est['input_redis_us']:.1f} us /"
            f" {est['cascade_python_us']:.1f} + {est['cascade_redis_us']:.1f} us",
            "",
            "",
        )
    )
    rows.append(
        (
            f"estimate, {est['cores']} cores of workers and a Redis Cluster of {est['nodes']}"
            " masters: input rate / the same cascade (bound)",
            _n(big),
            f"~{_about(est['input_per_s_own_nodes'])}/s ({est['input_bound_own_nodes']}-bound) /"
            f" ~{_about(est['cascade_s_own_nodes'])} s ({est['cascade_bound_own_nodes']}-bound)",
            "",
            "",
        )
    )
    return rows


def scale_how(sc: dict[str, Any]) -> list[str]:
    """How bench/scale.py measured, and how its estimate is reasoned."""
    est = sc["estimate"]
    crash = sc["crash"]
    others = [x["other_cores_max"] for x in sc["layouts"]]
    return [
        f"- **Scale** (`bench/scale.py`): the same book through real `liqwatch run` processes"
        f" ({sc['redis']}; every process on this machine's {sc['cores']} cores). S=1 with one"
        f" worker is the baseline; then S={sc['shards']} shards (`[shards] count`) with"
        f" W={', '.join(str(w) for w in sc['workers'])} workers sharing them through their"
        " leases, each run waiting until every worker holds its share and has the marks"
        " live. Input: the book XADDed to each account's shard stream (`redis-cli --pipe`),"
        " the rate sampled from the consumer groups between 10% and 90% of the entries."
        f" Cascade: one push of the Orderly feed moves {crash['symbol']} to {crash['to_price']}"
        f" ({crash['move'] * 100:.1f}%, solved beforehand), timed to the last event's entry id"
        " over every shard's events stream; every event read back: each once, equal to a full"
        " recompute (of the book less what was liquidated while loading: an account whose"
        " messages straddle two input batches can be liquidatable between them), each in its"
        " account's shard. The audit and the jump guard are off. CPU"
        " seconds of each worker (`/proc`), of redis-server (`INFO cpu`) and of the whole"
        " machine are noted per phase: other jobs took up to"
        f" {max(others, default=0):.1f} cores during a run (`other_s` in the results), which"
        " the figures bear.",
        f"- **Estimate** for {est['cores']} cores and {est['nodes']} Redis nodes: a worker is"
        f" one Python process (one core); a Redis node is one thread. From the {est['from']}"
        f" run's CPU seconds: an input entry costs {est['input_python_us']:.1f} us of Python and"
        f" {est['input_redis_us']:.1f} us of Redis, a liquidated position"
        f" {est['cascade_python_us']:.1f} us and {est['cascade_redis_us']:.1f} us. With S a"
        f" multiple of both (e.g. 48) the shards, hence the accounts, split evenly over"
        f" {est['cores']} workers and over the {est['nodes']} masters, so the rate is the"
        f" smaller of {est['cores']} / Python cost and {est['nodes']} / Redis cost:"
        f" ~{_about(est['input_per_s_own_nodes'])} entries/s ({est['input_bound_own_nodes']}"
        f"-bound), the cascade ~{_about(est['cascade_s_own_nodes'])} s"
        f" ({est['cascade_bound_own_nodes']}-bound); with Redis on {est['nodes']} of the"
        f" {est['cores']} cores, ~{_about(est['input_per_s_shared'])}/s and"
        f" ~{_about(est['cascade_s_shared'])} s. An upper"
        " bound: it assumes CPU cost per unit as measured here (loopback, no cross-node"
        " network), every process on a core of its own, and leaves out the fixed start of a"
        " cascade and a real network's round trips, which the pipelined chunks mostly hide.",
    ]


def update_readme(path: Path, results: dict[str, Any]) -> None:
    """Replace the text between the markers (added under "## Benchmarks" if missing)."""
    text = path.read_text(encoding="utf-8")
    block = f"{START}\n{table(results)}\n{END}"
    if START in text and END in text:
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        head = "## Benchmarks\n"
        at = text.index(head)
        nxt = text.find("\n## ", at + len(head))
        nxt = len(text) if nxt < 0 else nxt + 1
        text = text[:nxt].rstrip("\n") + "\n\n" + block + "\n\n" + text[nxt:]
    path.write_text(text, encoding="utf-8")
