"""``liqwatch notify``: deliver liquidation events to the sinks of ``[[notify.sinks]]``.

Exit 0 after a clean SIGTERM/SIGINT, 2 with a one-line reason on a bad
config, 1 on a fatal error. No message of it quotes a secret.
"""

from __future__ import annotations

import argparse
import asyncio

import structlog

from watcher.cli.context import EXIT_USAGE, Failed, expected_failure, scrub
from watcher.daemon.config import ConfigError
from watcher.notify.config import load_notify
from watcher.notify.secret import scrub as scrub_secrets


def notify_command(args: argparse.Namespace) -> int:
    """Run the notifier until it is told to stop."""
    try:
        settings, notify = load_notify(args.config)
    except ConfigError as exc:
        raise Failed(str(exc), EXIT_USAGE) from None
    # Lazily: the other commands work without aiohttp's imports.
    from watcher.daemon.logs import configure_logging, level_number
    from watcher.notify.app import run_notifier

    configure_logging(settings.log_format, level_number(settings.log_level))
    log = structlog.get_logger()
    try:
        asyncio.run(run_notifier(settings, notify))
    except Exception as exc:
        reason = expected_failure(exc, settings, refusals=False)
        if reason is None:
            log.exception("notify.crashed")
            reason = scrub(f"fatal: {_innermost(exc)!r}", settings)
        else:
            log.error("notify.failed", reason=scrub_secrets(reason, notify.secrets()))
        raise Failed(scrub_secrets(reason, notify.secrets())) from None
    return 0


def _innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
