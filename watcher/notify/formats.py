"""Each sink type's HTTP request for a message: URL, JSON body, headers.

- ``webhook``: the event's stream fields as a JSON object (``positions``,
  ``marks`` and the partial-liquidation fields as JSON values, every other
  value a string as stored), or a summary; signed (:mod:`.signing`).
- ``slack``: an incoming-webhook ``{"text": ...}``, one line per message.
- ``pagerduty``: an Events v2 ``trigger`` whose ``dedup_key`` is the event
  id, so a redelivered event updates the same incident.

A :class:`Request` holds the revealed URL and a body that may hold a
routing key: its repr shows neither.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from state.events import TRANSFER_FIELDS
from watcher.notify.config import SinkSpec, SinkType
from watcher.notify.messages import EventMessage, Message, Summary
from watcher.notify.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

JSON_FIELDS = frozenset({"positions", "marks", *TRANSFER_FIELDS})
# Events v2 limits: dedup_key and summary lengths.
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024
USER_AGENT = "liqwatch-notify"


@dataclass(frozen=True, slots=True)
class Request:
    """One POST: where, what, with which headers (none of it shown by repr)."""

    url: str = field(repr=False)
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(repr=False)


def build_request(spec: SinkSpec, message: Message, now_ms: int) -> Request:
    """Return the request that delivers ``message`` to ``spec``'s sink at ``now_ms``."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if spec.type is SinkType.WEBHOOK:
        body = orjson.dumps(webhook_body(message))
        assert spec.secret is not None
        timestamp = now_ms // 1000
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(spec.secret, timestamp, body)
        headers["X-Liqwatch-Message"] = message.key
    elif spec.type is SinkType.SLACK:
        body = orjson.dumps({"text": slack_text(message)})
    else:
        body = orjson.dumps(pagerduty_body(spec, message))
    return Request(spec.url.reveal(), body, headers)


def webhook_body(message: Message) -> dict[str, Any]:
    """The generic webhook's JSON document for ``message``."""
    if isinstance(message, EventMessage):
        entry = message.entry
        return {
            "type": "liquidation",
            "entry_id": entry.entry_id,
            "stream": entry.keys.events,
            "event": {k: _json_value(k, v) for k, v in entry.fields.items()},
        }
    return {"type": "liquidation_summary", **summary_fields(message)}


def summary_fields(summary: Summary) -> dict[str, Any]:
    """What a summary says, as strings and counts."""
    return {
        "symbol": summary.symbol,
        "count": summary.count,
        "kinds": dict(sorted(summary.kinds.items())),
        "total_notional": str(summary.total_notional),
        "worst_equity": str(summary.worst_equity),
        "first_event_id": summary.first.event.id,
        "last_event_id": summary.last.event.id,
        "first_entry_id": summary.first.entry_id,
        "last_entry_id": summary.last.entry_id,
        "window_start_ms": summary.window_start_ms,
        "window_end_ms": summary.window_end_ms,
    }


def slack_text(message: Message) -> str:
    """One Slack line (mrkdwn, escaped) for ``message``."""
    if isinstance(message, EventMessage):
        e = message.entry.event
        text = (
            f":rotating_light: Liquidated {e.kind.value} `{e.account}` on {e.symbol}"
            f" at mark {e.mark_price}: equity {e.equity} < maintenance {e.maintenance_margin}"
            f", notional {message.entry.notional} (id `{e.id}`)"
        )
    else:
        s = message
        text = (
            f":rotating_light: {s.count} more liquidations on {s.symbol} in"
            f" {(s.window_end_ms - s.window_start_ms) / 1000:.1f} s: notional"
            f" {s.total_notional}, worst equity {s.worst_equity}"
            f" (ids `{s.first.event.id}` .. `{s.last.event.id}`)"
        )
    return _slack_escape(text)


def pagerduty_body(spec: SinkSpec, message: Message) -> dict[str, Any]:
    """The Events v2 ``trigger`` for ``message``."""
    assert spec.routing_key is not None
    if isinstance(message, EventMessage):
        e = message.entry.event
        summary = (
            f"Liquidated {e.kind.value} {e.account} on {e.symbol} at mark {e.mark_price}"
            f" (equity {e.equity} < maintenance {e.maintenance_margin})"
        )
        at_ms = e.detected_ts
        details: dict[str, Any] = webhook_body(message)["event"]
        extra = {"component": e.symbol, "group": e.account, "class": e.kind.value}
    else:
        s = message
        summary = (
            f"{s.count} liquidations on {s.symbol}: notional {s.total_notional},"
            f" worst equity {s.worst_equity}"
        )
        at_ms = s.window_end_ms
        details = summary_fields(s)
        extra = {"component": s.symbol, "class": "summary"}
    return {
        "routing_key": spec.routing_key.reveal(),
        "event_action": "trigger",
        "dedup_key": dedup_key(message),
        "payload": {
            "summary": summary[:MAX_SUMMARY],
            "source": spec.source,
            "severity": spec.severity,
            "timestamp": datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(),
            **extra,
            "custom_details": details,
        },
    }


def dedup_key(message: Message) -> str:
    """The event id (a summary: its key); hashed when longer than Events v2 allows."""
    key = message.key
    if len(key) <= MAX_DEDUP_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _json_value(name: str, value: str) -> Any:
    if name in JSON_FIELDS:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
