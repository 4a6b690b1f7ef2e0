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
    text_renderer: structlog.typing.Processor
    if fmt == "console":
        text_renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        processors.append(text_renderer)
        factory: structlog.typing.WrappedLogger = structlog.PrintLoggerFactory(sys.stderr)
    else:
        text_renderer = structlog.processors.JSONRenderer(serializer=_json_text)
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        factory = structlog.BytesLoggerFactory(sys.stderr.buffer)
    _route_stdlib(text_renderer, level)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def level_number(name: str) -> int:
    """``debug``/``info``/``warning``/``error`` -> the logging level."""
    return int(logging.getLevelName(name.upper()))


def _json_text(obj: object, **kw: object) -> str:
    return orjson.dumps(obj).decode()


def _route_stdlib(renderer: structlog.typing.Processor, level: int) -> None:
    """Send the standard library's logging (websockets, redis, asyncio) through structlog.

    Their records become the same one-line events (JSON or console) on
    stderr, with ``logger`` naming the library, at the configured level.
    """
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
