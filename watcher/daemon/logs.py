"""Configure structlog once: JSON lines through orjson (production) or a console renderer."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog


def configure_logging(
    fmt: str = "json", level: int = logging.INFO, *, drop: frozenset[str] = frozenset()
) -> None:
    """Set up structlog for the process: dotted event names, ISO timestamps, one line each.

    Events named in ``drop`` are not written (the demo's console shows
    liquidations its own way).
    """

    def dropper(
        _logger: object, _name: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        if event.get("event") in drop:
            raise structlog.DropEvent
        return event

    processors: list[structlog.typing.Processor] = [
        dropper,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
        factory: structlog.typing.WrappedLogger = structlog.PrintLoggerFactory(sys.stderr)
    else:
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        factory = structlog.BytesLoggerFactory(sys.stderr.buffer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
