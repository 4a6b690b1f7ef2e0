"""The ``liqwatch`` command line: every subcommand of ``liqwatch --help`` (README, "Commands").

Exit codes: 0 done; 1 the work failed (bad input lines, Redis unreachable or
refusing, a stale or missing heartbeat, an unknown account); 2 a bad command
line or config; 130 interrupted. Expected errors are one line on stderr;
anything else is a bug and surfaces with its traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import structlog

from watcher.cli.ack import ack_command
from watcher.cli.context import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    Failed,
    expected_failure,
    scrub,
    settings_from,
)
from watcher.cli.explain import add_explain_arguments, explain_command
from watcher.cli.health import health_command
from watcher.cli.inspect import VIEWS, add_view_arguments, inspect_command, positive_int
from watcher.cli.load import load_command
from watcher.cli.notify import notify_command
from watcher.cli.record import DemoRecording, add_record_arguments, record_command
from watcher.cli.replay import add_replay_arguments, replay_command
from watcher.cli.risk import add_map_arguments, add_whatif_arguments, map_command, whatif_command
from watcher.cli.trim import add_trim_arguments, trim_command
from watcher.daemon.version import version


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of liqwatch.
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command and option."""
    parser = _Parser(prog=PROG, description="Watch perpetual-futures positions for liquidation.")
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, required=True
    )

    def config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, type=Path, metavar="FILE", help="TOML config")

    run = commands.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    config(run)
    demo = commands.add_parser("demo", help="run the self-contained demo")
    demo.add_argument("--accounts", type=positive_int, metavar="N", help="accounts in the book")
    demo.add_argument("--seed", type=int, metavar="S", help="random seed")
    demo.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    demo.add_argument(
        "--record",
        type=Path,
        metavar="DIR",
        help="record the run (marks, input, events) in DIR for liqwatch replay",
    )
    load = commands.add_parser("load", help="validate a JSONL file, then append it to the input")
    config(load)
    load.add_argument("input", metavar="INPUT.jsonl", help="one update per line; - for stdin")
    load.add_argument("--batch", type=positive_int, default=1000, help=argparse.SUPPRESS)
    ack = commands.add_parser(
        "ack-data-loss", help="after Redis lost its data and the book is reloaded: resume"
    )
    config(ack)
    health = commands.add_parser("health", help="exit 0 if the daemon's heartbeat is fresh")
    config(health)
    health.add_argument(
        "--max-age",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="oldest heartbeat that counts as fresh (default 10)",
    )
    inspect = commands.add_parser("inspect", help="operator views of the state in Redis")
    config(inspect)
    view_parsers = inspect.add_subparsers(
        dest="view", metavar="VIEW", parser_class=_Parser, required=True
    )
    for name, (text, _) in VIEWS.items():
        add_view_arguments(name, view_parsers.add_parser(name, help=text))
    trim = commands.add_parser(
        "trim", help="remove stream entries that every consumer group has acknowledged"
    )
    config(trim)
    add_trim_arguments(trim)
    notify = commands.add_parser(
        "notify", help="deliver liquidation events to webhooks, Slack and PagerDuty"
    )
    config(notify)
    risk_map = commands.add_parser(
        "map", help="a symbol's liquidation map: what each step down and up would liquidate"
    )
    config(risk_map)
    add_map_arguments(risk_map)
    whatif = commands.add_parser(
        "whatif", help="what moved marks or other maintenance parameters would liquidate"
    )
    config(whatif)
    add_whatif_arguments(whatif)
    explain = commands.add_parser(
        "explain", help="re-derive a liquidation from its stored event; exit 1 if it does not"
    )
    config(explain)
    add_explain_arguments(explain)
    record = commands.add_parser("record", help="append every accepted mark to a JSONL file")
    config(record)
    add_record_arguments(record)
    replay = commands.add_parser(
        "replay", help="run the engine over recorded marks and input on a throwaway Redis"
    )
    add_replay_arguments(replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _COMMANDS[args.command](args)
    except Failed as exc:
        print(f"{PROG}: {exc.reason}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    settings = settings_from(args.config)
    # Lazily: the other commands work without the daemon's imports.
    from watcher.daemon.app import run_daemon
    from watcher.daemon.logs import configure_logging, level_number

    configure_logging(settings.log_format, level_number(settings.log_level))
    try:
        asyncio.run(run_daemon(settings))
    except Exception as exc:
        reason = expected_failure(exc, settings, refusals=False)
        if reason is None:
            # A bug or a state nobody foresaw: the whole traceback goes to the
            # log for the post-mortem, one line to the operator, and the
            # supervisor restarts us.
            structlog.get_logger().exception("daemon.crashed")
            reason = scrub(f"fatal: {_innermost(exc)!r}", settings)
        else:
            structlog.get_logger().error("daemon.failed", reason=reason)
        raise Failed(reason) from None
    return 0


def _innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _demo(args: argparse.Namespace) -> int:
    from watcher.demo.runner import run_demo  # lazily, as for run

    options: dict[str, Any] = {
        name: value
        for name in ("accounts", "seed", "duration")
        if (value := getattr(args, name)) is not None
    }
    if args.record is not None:
        options["companion"] = DemoRecording(args.record)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the demo ends
        asyncio.run(run_demo(**options))
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "demo": _demo,
    "load": load_command,
    "inspect": inspect_command,
    "health": health_command,
    "trim": trim_command,
    "ack-data-loss": ack_command,
    "notify": notify_command,
    "map": map_command,
    "whatif": whatif_command,
    "explain": explain_command,
    "record": record_command,
    "replay": replay_command,
}
