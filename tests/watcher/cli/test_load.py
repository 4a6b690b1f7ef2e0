"""``liqwatch load`` and watcher.cli.load against a real redis-server."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest

from state.inputs import LoadError, validate_lines
from state.models import FlatModel, Market
from state.store import Store
from tests.helpers.config import ETH, KEYS, write_config
from watcher.cli.load import Progress, progress_line, summary_line
from watcher.cli.main import main
from watcher.demo.redis_server import free_port

MARKETS = {ETH: Market(ETH, FlatModel(Decimal("0.006")))}


def balance(account: str, seq: int, amount: str = "1000") -> str:
    return json.dumps({"type": "balance", "account": account, "balance": amount, "seq": seq})


def position(account: str, seq: int) -> str:
    return json.dumps(
        {
            "type": "position",
            "account": account,
            "symbol": ETH,
            "margin_mode": "CROSS",
            "qty": "1.5",
            "entry_price": "3000",
            "seq": seq,
        }
    )


def test_bad_lines_are_listed_with_numbers_and_nothing_is_sent(
    tmp_path, config, sync_redis, capsys
):
    lines = [
        balance("A1", 1),
        '{"type": "balance", "account": "A1", "seq": 2}',
        "",
        "not json",
        '{"type": "position", "account": "A1", "symbol": "NOPE", "qty": "1", "seq": 3}',
        "[" * 5000,
        position("A1", 4),
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")

    assert main(["load", "--config", str(config), str(path)]) == 1

    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{path}:2: balance: missing"
    assert err[1].startswith(f"{path}:4: not JSON")
    assert err[2] == f"{path}:5: symbol: not a configured market: 'NOPE'"
    assert err[3] == f"{path}:6: not JSON: nested too deeply"
    assert err[4] == "liqwatch: 4 bad line(s); nothing was appended"
    assert len(err) == 5
    assert sync_redis.xlen(KEYS.input) == 0


def test_many_bad_lines_show_the_first_twenty_and_a_count(tmp_path, config, sync_redis, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(["{}"] * 25))

    assert main(["load", "--config", str(config), str(path)]) == 1

    err = capsys.readouterr().err.splitlines()
    assert len(err) == 22
    assert err[19].startswith(f"{path}:20: account")
    assert err[20] == "... and 5 more bad line(s)"
    assert sync_redis.xlen(KEYS.input) == 0


def test_good_file_lands_in_order_unchanged(tmp_path, config, sync_redis, capsys):
    lines = [balance(f"A{i % 7}", i) if i % 3 else position(f"A{i % 7}", i) for i in range(2500)]
    lines[10] = "  " + lines[10] + " "  # surrounding spaces are kept as they are
    path = tmp_path / "in.jsonl"
    # CRLF endings and blank lines: the terminators go, blank lines are skipped.
    path.write_bytes(("\r\n".join(lines[:5]) + "\r\n\n\n" + "\n".join(lines[5:])).encode())

    assert main(["load", "--config", str(config), str(path)]) == 0

    entries = sync_redis.xrange(KEYS.input)
    assert [fields[b"msg"].decode() for _, fields in entries] == lines
    assert all(set(fields) == {b"msg"} for _, fields in entries)
    out = capsys.readouterr()
    assert out.out.startswith(f"appended 2500 lines to {KEYS.input} in ")
    assert out.out.rstrip().endswith("lines/s)")
    assert out.err == ""  # not a terminal: no progress bar


def test_load_reads_stdin_and_honours_the_batch(config, sync_redis, monkeypatch, capsys):
    lines = [balance("B", i) for i in range(1, 18)]
    stdin = io.TextIOWrapper(io.BytesIO("\n".join(lines).encode()))
    monkeypatch.setattr("sys.stdin", stdin)

    assert main(["load", "--config", str(config), "--batch", "5", "-"]) == 0

    assert [f[b"msg"].decode() for _, f in sync_redis.xrange(KEYS.input)] == lines
    assert "appended 17 lines" in capsys.readouterr().out


def test_unreadable_file_is_one_line(tmp_path, config, capsys):
    assert main(["load", "--config", str(config), str(tmp_path / "missing.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "missing.jsonl: cannot read" in err


def test_unreachable_redis_is_one_line_without_the_password(tmp_path, capsys):
    config = write_config(tmp_path, f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    path = tmp_path / "in.jsonl"
    path.write_text(balance("A1", 1) + "\n")

    assert main(["load", "--config", str(config), str(path)]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("liqwatch: cannot reach Redis at redis://:***@127.0.0.1:")
    assert "after 0 of 1 lines appended" in err
    assert "s3cret" not in err


def test_validate_lines_returns_messages_without_terminators():
    lines: list[bytes | str] = [
        balance("A", 1).encode() + b"\r\n",
        b"   \n",
        position("A", 2) + "\n",
    ]
    assert validate_lines(lines, MARKETS) == [
        balance("A", 1).encode(),
        position("A", 2).encode(),
    ]
    with pytest.raises(LoadError) as info:
        validate_lines(["{}", "{}", "{}"], MARKETS, source="f", max_errors=2)
    assert info.value.count == 3
    assert [e.split(": ")[0] for e in info.value.errors] == ["f:1", "f:2"]


async def test_append_messages_reports_progress_per_batch(redis_client):
    messages = [balance("A", i).encode() for i in range(1, 11)]
    seen: list[int] = []

    count = await Store(redis_client, KEYS).append_input(messages, batch=4, progress=seen.append)

    assert count == 10
    assert seen == [4, 8, 10]
    assert [f[b"msg"] for _, f in await redis_client.xrange(KEYS.input)] == messages


def test_progress_draws_on_a_terminal_only_and_ends_its_line():
    clock = iter([0.0, 0.05, 0.2, 0.21]).__next__
    out = io.StringIO()
    progress = Progress(10, out, enabled=True, interval=0.1, clock=clock)
    for done in (2, 4, 6, 10):
        progress(done)
    progress.close()
    drawn = out.getvalue()
    # 4 at t=0.05 is too soon after 2; the last one is always drawn.
    assert drawn.count("\r") == 3
    assert "\r" + progress_line(10, 10) in drawn
    assert drawn.endswith("\n")

    quiet = io.StringIO()
    silent = Progress(10, quiet, enabled=False)
    silent(10)
    silent.close()
    assert quiet.getvalue() == ""
    assert silent.done == 10


def test_progress_and_summary_lines():
    assert progress_line(5, 10, width=10) == "[#####.....] 5/10  50%"
    assert summary_line(1000, 0.5, "k") == "appended 1000 lines to k in 0.50 s (2000 lines/s)"


def test_a_frozen_redis_fails_the_load_instead_of_hanging(tmp_path, capsys):
    """A Redis that takes the connection and never answers: one line, exit 1 (each call bounded)."""
    from watcher.demo.redis_server import RedisServer

    path = tmp_path / "in.jsonl"
    path.write_text(balance("A", 1) + "\n")
    with RedisServer() as frozen:
        config = write_config(tmp_path, frozen.url)
        frozen.pause()
        try:
            code = main(["load", "--config", str(config), str(path)])
        finally:
            frozen.resume()
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("liqwatch: ")
    assert err.count("\n") == 1
