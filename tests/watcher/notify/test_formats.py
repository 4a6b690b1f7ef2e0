"""Each sink type's request: the webhook's signed JSON, Slack's text, PagerDuty's trigger."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import orjson

from tests.helpers.notify import (
    ETH,
    HMAC_KEY,
    KEYS,
    ROUTING_KEY,
    event,
    pagerduty,
    slack,
    webhook,
)
from watcher.notify.formats import MAX_DEDUP_KEY, build_request
from watcher.notify.messages import Entry, EventMessage, Summary
from watcher.notify.secret import Secret
from watcher.notify.signing import sign, verify

URL = "https://hooks.example.com/T0/B0/TOKEN"
NOW_MS = 1_700_000_123_456


def entry(n: int = 1, symbol: str = ETH) -> Entry:
    e = event(n, symbol)
    return Entry(KEYS, f"{n}-0", e.to_fields(), e)


def summary() -> Summary:
    s = Summary(ETH, 1_000)
    for n in (3, 4, 5):
        s.add(entry(n))
    s.window_end_ms = 6_000
    return s


def test_the_webhook_body_is_the_event_signed_over_timestamp_and_body():
    request = build_request(webhook("w", URL), EventMessage(entry(7)), NOW_MS)
    assert request.url == URL
    stamp = request.headers["X-Liqwatch-Timestamp"]
    assert stamp == str(NOW_MS // 1000)
    expected = hmac.new(HMAC_KEY.encode(), f"{stamp}.".encode() + request.body, hashlib.sha256)
    assert request.headers["X-Liqwatch-Signature"] == "sha256=" + expected.hexdigest()
    assert request.headers["X-Liqwatch-Message"] == event(7).id
    body = orjson.loads(request.body)
    assert body["type"] == "liquidation"
    assert (body["entry_id"], body["stream"]) == ("7-0", KEYS.events)
    fields = event(7).to_fields()
    assert body["event"]["positions"] == orjson.loads(fields["positions"])
    assert body["event"]["marks"] == {ETH: "1007"}
    assert body["event"]["equity"] == fields["equity"]  # decimals stay strings


def test_the_webhook_summary_body():
    body = orjson.loads(build_request(webhook("w", URL), summary(), NOW_MS).body)
    assert body == {
        "type": "liquidation_summary",
        "symbol": ETH,
        "count": 3,
        "kinds": {"ISOLATED": 3},
        "total_notional": str(2 * (1003 + 1004 + 1005)),
        "worst_equity": "-1",
        "first_event_id": event(3).id,
        "last_event_id": event(5).id,
        "first_entry_id": "3-0",
        "last_entry_id": "5-0",
        "window_start_ms": 1_000,
        "window_end_ms": 6_000,
    }


def test_verify_accepts_only_the_signed_bytes_from_the_right_key_in_time():
    key, body = Secret("k"), b'{"a":1}'
    signature = sign(key, 1000, body)
    assert verify(key, "1000", signature, body, now=1100)
    assert not verify(key, "1000", signature, body + b" ", now=1100)
    assert not verify(Secret("other"), "1000", signature, body, now=1100)
    assert not verify(key, "1001", signature, body, now=1100)
    assert not verify(key, "1000", signature, body, now=1000 + 301)
    assert not verify(key, "-1000", signature, body, now=1100)


def test_slack_gets_one_escaped_line():
    e = replace(event(2), symbol="A<B>&C")
    text = orjson.loads(
        build_request(slack("s", URL), EventMessage(Entry(KEYS, "2-0", {}, e)), NOW_MS).body
    )["text"]
    assert "A&lt;B&gt;&amp;C" in text
    assert "`A2`" in text
    assert "<" not in text
    summary_text = orjson.loads(build_request(slack("s", URL), summary(), NOW_MS).body)["text"]
    assert "3 more liquidations on PERP_ETH_USDC in 5.0 s" in summary_text


def test_pagerduty_triggers_with_the_event_id_as_dedup_key():
    request = build_request(pagerduty("p", URL), EventMessage(entry(9)), NOW_MS)
    body = orjson.loads(request.body)
    assert body["routing_key"] == ROUTING_KEY
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == event(9).id
    payload = body["payload"]
    assert (payload["severity"], payload["source"], payload["component"]) == (
        "critical",
        "liqwatch",
        ETH,
    )
    assert payload["timestamp"] == "2023-11-14T22:13:20.009000+00:00"
    assert payload["custom_details"]["id"] == event(9).id
    assert "X-Liqwatch-Signature" not in request.headers


def test_a_dedup_key_too_long_for_pagerduty_is_hashed():
    long = replace(event(1), id="A" * 300)
    body = orjson.loads(
        build_request(pagerduty("p", URL), EventMessage(Entry(KEYS, "1-0", {}, long)), 0).body
    )
    assert len(body["dedup_key"]) <= MAX_DEDUP_KEY
    assert body["dedup_key"] == "sha256:" + hashlib.sha256(b"A" * 300).hexdigest()
    summary_body = orjson.loads(build_request(pagerduty("p", URL), summary(), 0).body)
    assert summary_body["dedup_key"] == f"summary:{ETH}:3-0:5-0"


def test_a_request_shows_neither_its_url_nor_its_body():
    request = build_request(pagerduty("p", URL), EventMessage(entry()), NOW_MS)
    assert URL not in repr(request)
    assert ROUTING_KEY not in repr(request)
