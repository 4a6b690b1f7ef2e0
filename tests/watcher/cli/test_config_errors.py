"""Every bad config is one line on stderr and exit 2, whatever is wrong with the file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.config import CONFIG
from watcher.cli.main import main

GOOD = CONFIG.format(url="redis://127.0.0.1:9/0", prefix="cli")


def not_utf_8(directory: Path) -> Path:
    path = directory / "latin1.toml"
    path.write_bytes(GOOD.encode() + b"# caf\xe9\n")
    return path


def missing(directory: Path) -> Path:
    return directory / "nope.toml"


def a_directory(directory: Path) -> Path:
    return directory


def under_a_file(directory: Path) -> Path:
    (directory / "file").write_text("")
    return directory / "file" / "liqwatch.toml"


def huge_number(directory: Path) -> Path:
    path = directory / "big.toml"
    path.write_text(GOOD + "[daemon]\nbackoff_base = 1e308\nbackoff_cap = 1e308\n")
    return path


def unknown_table(directory: Path) -> Path:
    path = directory / "typo.toml"
    path.write_text(GOOD + "[redis2]\n")
    return path


CASES: list[tuple[Callable[[Path], Path], str]] = [
    (not_utf_8, f"not UTF-8: byte 0xe9 at offset {len(GOOD.encode()) + 5}"),
    (missing, "nope.toml: cannot read: No such file or directory"),
    (a_directory, ": cannot read: Is a directory"),
    (under_a_file, "liqwatch.toml: cannot read: Not a directory"),
    (huge_number, "daemon.backoff_base: must be at most 3600, got 1e+308"),
    (unknown_table, "redis2: unknown key"),
]


@pytest.mark.parametrize("command", ["run", "health"])
@pytest.mark.parametrize(("make", "reason"), CASES, ids=[make.__name__ for make, _ in CASES])
def test_a_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys, command: str, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path)
    assert main([command, "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("liqwatch: ")
    assert reason in captured.err


def test_an_unreadable_file_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "secret.toml"
    path.write_text(GOOD)
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("this user reads any file (root)")
    for command in ("run", "health"):
        assert main([command, "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert err == f"liqwatch: {path}: cannot read: Permission denied\n"


def test_the_installed_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    path = not_utf_8(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"liqwatch: {path}: not UTF-8: byte 0xe9 at offset {len(GOOD) + 5}\n"
