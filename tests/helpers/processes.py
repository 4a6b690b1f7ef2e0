"""``liqwatch run`` as a real child process, its JSON log lines read back from a file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from redis.exceptions import ResponseError

WAIT = 20.0


class DaemonProcess:
    """One daemon process: started, observed through its log, stopped or killed."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        """Start ``python -m watcher.cli run --config FILE`` with its stderr in the log file."""
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcher.cli", "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far (anything else on stderr is kept as ``raw``)."""
        out = []
        for line in self.log.read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "raw", "raw": line.decode(errors="replace")})
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.lines() if e.get("event") == name]

    async def wait_log(self, name: str, *, count: int = 1, timeout: float = WAIT) -> dict[str, Any]:
        """Wait until ``name`` has been logged ``count`` times; return the last one."""
        async with asyncio.timeout(timeout):
            while True:
                found = self.events(name)
                if len(found) >= count:
                    return found[count - 1]
                if not self.alive():
                    raise AssertionError(f"the daemon exited: {self.lines()[-5:]}")
                await asyncio.sleep(0.05)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM the daemon and return its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the daemon, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def drained(
    redis: Any, input_key: str, group: str = "liqwatch", timeout: float = WAIT
) -> None:
    """Wait until the input group has been delivered and has acknowledged everything."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                info = await redis.xinfo_groups(input_key)
            except ResponseError:  # no stream yet: the daemon has not made its group
                info = []
            mine = next((g for g in info if g["name"] == group.encode()), None)
            last = await redis.xrevrange(input_key, count=1)
            if (
                mine
                and mine["pending"] == 0
                and (not last or mine["last-delivered-id"] == last[0][0])
            ):
                return
            await asyncio.sleep(0.02)


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a ``liqwatch`` command in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
