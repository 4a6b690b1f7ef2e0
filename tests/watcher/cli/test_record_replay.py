"""``liqwatch record`` and ``liqwatch replay``, and a recorded demo run replayed exactly."""

from __future__ import annotations

import argparse
import io
import json
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import structlog

from state.events import LiquidationEvent
from state.explain import derive
from state.models import MarkPrice
from tests.helpers.harness import settings_for
from watcher.cli.main import main
from watcher.cli.record import DemoRecording, MarkLog, RecordingBook, _record
from watcher.cli.replay import Setup, read_book_file, read_marks_file, run_replay
from watcher.demo.book import demo_markets
from watcher.demo.redis_server import RedisServer
from watcher.demo.runner import run_demo
from watcher.demo.sim.orderly import OrderlyMarkServer

D = Decimal
ETH = "PERP_ETH_USDC"


@pytest.fixture(autouse=True)
def _keep_logging():
    """The demo and replay configure structlog for their process: undo it for the next tests."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _decision(fields: dict[str, object]) -> dict[str, object]:
    """An event's fields but when it was written (wall clock) and where (entry id)."""
    return {k: v for k, v in fields.items() if k not in ("detected_ts", "entry_id")}


def test_the_recording_book_writes_what_it_accepts_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "marks.jsonl"
    log = MarkLog(path, wall=lambda: 1_000_000, clock=lambda: 100.0)
    book = RecordingBook({ETH: 5.0}, {ETH: 0.25}, log=log)

    def offer(price: str, ts: int) -> bool:
        return book.offer(
            MarkPrice(ETH, D(price), ts, 100.5, "orderly|ws://x"), equal_ts_ok=True
        ).accepted

    assert offer("3000", 1)
    assert not offer("3000", 1)  # a duplicate
    assert not offer("2999", 0)  # older than the last
    assert not offer("1000", 2)  # a jump beyond the band: held
    assert offer("1001", 3)  # confirms it: this one is accepted
    log.close()
    rows = _lines(path)
    assert [r["price"] for r in rows] == ["3000", "1001"]
    assert rows[0] == {
        "symbol": ETH,
        "price": "3000",
        "venue_ts": 1,
        "recv_ms": 1_000_500,
        "source": "orderly|ws://x",
    }


async def test_record_writes_accepted_marks_and_copies_the_streams(
    tmp_path: Path, redis_client
) -> None:
    await redis_client.xadd("liq:{0}:in", {"msg": '{"type":"balance"}'})
    await redis_client.xadd("liq:{0}:events", {"id": "e1", "kind": "CROSS"})
    async with OrderlyMarkServer({ETH: D("3000")}, interval=0.05, ping_interval=0) as sim:
        url = str(redis_client.connection_pool.connection_kwargs.get("port"))
        settings = settings_for(f"redis://127.0.0.1:{url}/0", sim.url, [ETH])
        args = argparse.Namespace(
            marks=tmp_path / "m.jsonl",
            input=tmp_path / "in.jsonl",
            events=tmp_path / "ev.jsonl",
            duration=0.6,
        )
        summary = await _record(settings, args)
    marks = _lines(args.marks)
    assert marks, summary
    assert {m["symbol"] for m in marks} == {ETH}
    assert all(m["source"] == f"orderly|{sim.url}" for m in marks)
    assert _lines(args.input)[0]["msg"] == '{"type":"balance"}'
    assert _lines(args.events)[0]["id"] == "e1"
    assert "recorded" in summary


def test_replay_of_a_book_and_marks(tmp_path: Path, capsys) -> None:
    book = tmp_path / "book.jsonl"
    book.write_text(
        "\n".join(
            json.dumps(m)
            for m in [
                {"type": "balance", "account": "A", "balance": "1000", "seq": 1},
                {
                    "type": "position",
                    "account": "A",
                    "symbol": ETH,
                    "margin_mode": "ISOLATED",
                    "qty": "1",
                    "entry_price": "3400",
                    "margin": "340",
                    "seq": 2,
                },
            ]
        )
        + "\n"
    )
    marks = tmp_path / "marks.jsonl"
    rows = [(ETH, "3400", 1), (ETH, "3100", 2), (ETH, "3050", 3)]
    marks.write_text(
        "".join(
            orjson.dumps(
                {"symbol": s, "price": p, "venue_ts": t, "recv_ms": 1_000 * t, "source": "x"}
            ).decode()
            + "\n"
            for s, p, t in rows
        )
    )
    assert main(["replay", "--marks", str(marks), "--book", str(book), "--json"]) == 0
    captured = capsys.readouterr()
    (event,) = [json.loads(line) for line in captured.out.splitlines()]
    assert event["id"] == f"A:ISOLATED:{ETH}:2"
    assert event["mark_price"] == "3050"
    assert event["detected_ts"] == "3000"
    assert "transfer_qty" in event
    assert "1 decisions" in captured.err
    assert main(["replay", "--marks", str(marks), "--book", str(book)]) == 0
    assert f"A:ISOLATED:{ETH}:2  ISOLATED" in capsys.readouterr().out


def test_replay_refuses_bad_files(tmp_path: Path, capsys) -> None:
    marks = tmp_path / "marks.jsonl"
    marks.write_text('{"symbol": "X"}\n')
    book = tmp_path / "book.jsonl"
    book.write_text('{"type": "nope"}\n')
    assert main(["replay", "--marks", str(marks), "--book", str(book)]) == 1
    assert "marks.jsonl:1: not a recorded mark" in capsys.readouterr().err
    marks.write_text("")
    assert main(["replay", "--marks", str(marks), "--book", str(book)]) == 1
    assert "1 bad line(s)" in capsys.readouterr().err


async def test_replay_of_a_recorded_demo_run_gives_exactly_the_demos_decisions(
    tmp_path: Path,
) -> None:
    """``liqwatch demo --record``, then replay: the same decisions, field for field (but
    the wall-clock ``detected_ts``); and every one of them re-derives (explain)."""
    recording = DemoRecording(tmp_path / "rec", settle=0.5)
    await run_demo(
        accounts=400, seed=3, duration=8.0, interval=0.4, out=io.StringIO(), companion=recording
    )
    demo = _lines(recording.events)
    assert len(demo) >= 3, "the demo run should liquidate something"
    marks = read_marks_file(recording.marks)
    inputs = read_book_file(recording.input, demo_markets())
    with RedisServer() as server:
        replayed = await run_replay(Setup(demo_markets()), marks, inputs, server.url)
    assert [_decision(e) for e in replayed] == [_decision(e) for e in demo]
    for fields in demo:
        event = LiquidationEvent.from_fields(
            {k: str(v) for k, v in fields.items() if k != "entry_id"}
        )
        d = derive(event, demo_markets(), at_equality=False)
        assert d.exact, (event.id, d.differences)
