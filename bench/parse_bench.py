"""The slowest input message and the slowest frame: worst-case parse times over hostile input.

Run: ``.venv/bin/python -m bench.parse_bench [--fuzz N]``. Parses the
hostile messages and frames of the reliability tests and ``N`` generated
ones (hypothesis's generators, drawn from a fixed seed), each many times,
and reports the slowest single parse and the median. The baseline in the
same run is the parse of one ordinary balance message. docs/reliability.md
scenario 14 asks for no input above 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

from state.errors import InputError
from state.inputs import parse_input
from state.models import FlatModel, Market
from watcher.feeds import VENUES
from watcher.feeds.errors import FrameError

ETH = "PERP_ETH_USDC"
MARKETS = {ETH: Market(ETH, FlatModel(Decimal("0.006")))}
NINES = "9" * 5000
HOSTILE_INPUT: list[bytes] = [
    json.dumps({"type": "balance", "account": "P", "balance": "1", "seq": NINES}).encode(),
    b'{"type":"balance","account":"H","balance":' + NINES.encode() + b',"seq":1}',
    b'{"type":"balance","account":"H","balance":"1","seq":' + NINES.encode() * 12 + b"}",
    b'{"type":"balance","account":"H","balance":1e999999999,"seq":1}',
    b'{"balance":' + b"[" * 30000 + b"]" * 30000 + b"}",
    b'{"x":"' + b"a" * 65000 + b'"}',
    b'{"type":"balance","account":"H","balance":"1","seq":1,"x":"' + b"a" * 70000 + b'"}',
    b"\xef\xbb\xbf" + b"{}",
    b'{"account":"\xff"}',
    b'{"a":' + b"1" * 60000 + b"}",
]
ORDINARY = json.dumps({"type": "balance", "account": "A1", "balance": "100", "seq": 7}).encode()


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with contextlib.suppress(InputError, FrameError):
            fn()
        out.append(time.perf_counter() - t0)
    return out


def fuzz_messages(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.3:
            out.append(rng.randbytes(rng.randint(0, 400)))
        elif kind < 0.6:
            depth = rng.randint(1, 20000)
            out.append(b'{"seq":' + b"[" * depth + b"]" * depth + b"}")
        else:
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 60000)))
            field = rng.choice(["seq", "balance", "qty", "entry_price", "leverage"])
            out.append(json.dumps({"type": "balance", "account": "A", field: digits}).encode())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    base = statistics.median(timed(lambda: parse_input(ORDINARY, MARKETS), 2000))
    messages = HOSTILE_INPUT + fuzz_messages(args.fuzz, seed=14)
    worst_input = 0.0
    worst_what = b""
    for raw in messages:
        t = max(timed(lambda raw=raw: parse_input(raw, MARKETS), args.repeat))
        if t > worst_input:
            worst_input, worst_what = t, raw
    frames = [raw for raw in messages if raw] + [b'{"topic":"markprices","data":' + b"[" * 20000]
    worst_frame = 0.0
    for name, factory in VENUES.items():
        venue = factory()
        for raw in frames:
            t = max(timed(lambda raw=raw, v=venue: v.parse(raw, 0.0), args.repeat))
            worst_frame = max(worst_frame, t)
        print(f"  {name}: frames parsed")
    print(f"baseline: an ordinary message parses in {base * 1e6:.1f} us (median)")
    print(
        f"input: {len(messages)} hostile and fuzzed messages x {args.repeat}: slowest"
        f" {worst_input * 1000:.2f} ms ({worst_input / base:,.0f}x the baseline;"
        f" {len(worst_what):,} bytes, starting {worst_what[:40]!r})"
    )
    print(
        f"frames: the same and a 20,000-deep frame through {len(VENUES)} parsers: slowest"
        f" {worst_frame * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
