"""Human tables for the operator views of :mod:`watcher.cli.views`. Pure: dicts in, text out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

Json = Mapping[str, Any]

# Decimals from the margin math carry up to 40 digits; tables show this many.
SIGNIFICANT = 10


def num(value: Any) -> str:
    """Render a value for a table: decimals to 10 significant digits, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    text = str(value)
    try:
        d = Decimal(text)
    except InvalidOperation:
        return text
    if not d.is_finite() or len(d.as_tuple().digits) <= SIGNIFICANT:
        return text
    return f"{d:.{SIGNIFICANT}g}"


def pct(value: float | None) -> str:
    """Render a signed distance in percent."""
    return "-" if value is None else f"{value:+.2f}%"


def when(ms: Any) -> str:
    """Render epoch milliseconds as a UTC time of day with milliseconds."""
    try:
        moment = datetime.fromtimestamp(int(ms) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return num(ms)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Lay out rows under headers in left-aligned columns; ``(none)`` for no rows."""
    if not rows:
        return "  ".join(headers) + "\n(none)"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def account_text(view: Json) -> str:
    """Render ``inspect account``."""
    head = (
        f"account {view['account']}  balance {num(view['balance'])}  seq {num(view['seq'])}"
        f"  version {view['version']}  status {view['status']}"
    )
    parts = [head, "", "positions"]
    parts.append(
        table(
            ["SYMBOL", "MODE", "QTY", "ENTRY", "MARGIN", "LEVERAGE", "STATUS"],
            [
                [
                    p["symbol"],
                    p["mode"],
                    num(p["qty"]),
                    num(p["entry_price"]),
                    num(p["margin"]),
                    num(p["leverage"]),
                    p["status"],
                ]
                for p in view["positions"]
            ],
        )
    )
    cross = view["cross"]
    if cross is not None:
        parts += ["", _cross_head(cross)]
        parts.append(
            table(
                ["SYMBOL", "QTY", "ENTRY", "MARK", "MARK STATUS", "LIQ PRICE", "DISTANCE"],
                [
                    [
                        leg["symbol"],
                        num(leg["qty"]),
                        num(leg["entry_price"]),
                        num(leg["mark"]),
                        leg["mark_status"] or "no mark",
                        num(leg["liq_price"]),
                        pct(leg["distance_pct"]),
                    ]
                    for leg in cross["legs"]
                ],
            )
        )
    if view["isolated"]:
        parts += ["", "isolated"]
        parts.append(
            table(
                [
                    "SYMBOL",
                    "QTY",
                    "MARGIN",
                    "MARK",
                    "MARK STATUS",
                    "HEALTH",
                    "LIQ PRICE",
                    "DISTANCE",
                    "LIQUIDATABLE",
                ],
                [
                    [
                        i["symbol"],
                        num(i["qty"]),
                        num(i["margin"]),
                        num(i["mark"]),
                        i["mark_status"] or "no mark",
                        num(i["health"]),
                        num(i["liq_price"]),
                        pct(i["distance_pct"]),
                        num(i["liquidatable"]),
                    ]
                    for i in view["isolated"]
                ],
            )
        )
    return "\n".join(parts)


def _cross_head(cross: Json) -> str:
    if cross["missing_marks"] or cross["unknown_markets"]:
        why = []
        if cross["missing_marks"]:
            why.append("no mark for " + ", ".join(cross["missing_marks"]))
        if cross["unknown_markets"]:
            why.append("no market configured for " + ", ".join(cross["unknown_markets"]))
        return "cross  not priced: " + "; ".join(why)
    return (
        f"cross  equity {num(cross['equity'])}  maintenance {num(cross['maintenance'])}"
        f"  health {num(cross['health'])}  margin ratio {num(cross['margin_ratio'])}"
        f"  liquidatable {num(cross['liquidatable'])}"
    )


def symbol_text(view: Json) -> str:
    """Render ``inspect symbol``."""
    mark = view["mark"]
    if mark is None:
        head = f"{view['symbol']}  no mark"
    else:
        head = (
            f"{view['symbol']}  mark {num(mark['price'])} {mark['status']}"
            f"  age {num(mark['age_s'])} s"
        )
    parts = [head]
    for direction, title in (("down", "down (longs)"), ("up", "up (shorts)")):
        parts += ["", title]
        parts.append(
            table(
                ["MEMBER", "TRIGGER", "DISTANCE"],
                [[r["member"], num(r["trigger"]), pct(r["distance_pct"])] for r in view[direction]],
            )
        )
    return "\n".join(parts)


def marks_text(rows: Sequence[Json]) -> str:
    """Render ``inspect marks``."""
    return table(
        ["SYMBOL", "PRICE", "STATUS", "SOURCE", "VENUE TS", "AGE S"],
        [
            [
                m["symbol"],
                num(m["price"]),
                m["status"],
                m["source"] or "-",
                when(m["venue_ts"]),
                num(m["age_s"]),
            ]
            for m in rows
        ],
    )


def events_text(rows: Sequence[Json]) -> str:
    """Render ``inspect events``, oldest first."""
    return table(
        [
            "DETECTED",
            "KIND",
            "ACCOUNT",
            "SYMBOL",
            "MARK",
            "LIQ PRICE",
            "EQUITY",
            "MAINTENANCE",
            "ID",
        ],
        [
            [
                when(e.get("detected_ts")),
                e.get("kind", "?"),
                e.get("account", "?"),
                e.get("symbol", "?"),
                num(e.get("mark_price")),
                num(e.get("liq_price") or None),
                num(e.get("equity")),
                num(e.get("maintenance_margin")),
                e.get("id", "?"),
            ]
            for e in rows
        ],
    )


def liquidating_text(rows: Sequence[Json]) -> str:
    """Render ``inspect liquidating``."""
    return table(
        ["MEMBER", "MODE", "ACCOUNT", "SYMBOL", "CLAIMED", "AGE S"],
        [
            [
                r["member"],
                r["mode"],
                r["account"],
                r["symbol"] or "-",
                when(r["claimed_ms"]),
                num(r["age_s"]),
            ]
            for r in rows
        ],
    )


def warnings_text(view: Json) -> str:
    """Render ``inspect warnings``: the counts, what is in warning, the last warnings."""
    counts = view["in_warning"]
    head = f"in warning: {counts['cross']} cross accounts, {counts['isolated']} isolated positions"
    members = table(
        ["MODE", "ACCOUNT", "SYMBOL", "SINCE", "AGE S"],
        [
            [m["mode"], m["account"], m["symbol"] or "-", when(m["since_ms"]), num(m["age_s"])]
            for m in view["members"]
        ],
    )
    recent = table(
        ["DETECTED", "KIND", "ACCOUNT", "SYMBOL", "EQUITY", "REQUIRED", "ID"],
        [
            [
                when(r.get("detected_ts")),
                r.get("kind", "?"),
                r.get("account", "?"),
                r.get("symbol") or "-",
                r.get("equity", "?"),
                r.get("required", "?"),
                r.get("id", "?"),
            ]
            for r in view["recent"]
        ],
    )
    return f"{head}\n\n{members}\n\nlast warnings:\n{recent}"


def dead_text(rows: Sequence[Json], width: int = 60) -> str:
    """Render ``inspect dead``; long messages are cut to ``width`` characters."""

    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    return table(
        ["ENTRY", "REASON", "MSG"],
        [[r["entry_id"], r.get("reason", "?"), cut(r.get("msg", ""))] for r in rows],
    )


def stats_text(view: Json) -> str:
    """Render ``inspect stats``."""
    streams = view["streams"]
    parts = [
        table(["COUNTER", "VALUE"], [[k, str(v)] for k, v in view["counters"].items()]),
        "",
        f"streams  in {streams['in']}  dead {streams['dead']}  events {streams['events']}",
    ]
    group = view["input_group"]
    if group is None:
        parts.append("input group: none yet")
    else:
        consumers = ", ".join(f"{k} {v}" for k, v in group["consumers"].items()) or "none"
        parts.append(
            f"input group {group['name']}  pending {group['pending']}  lag {num(group['lag'])}"
            f"  last delivered {group['last_delivered_id']}  consumers: {consumers}"
        )
    return "\n".join(parts)


def executors_text(view: Json) -> str:
    """Render ``inspect executors``: the stream, one row per group, its consumers, warnings."""
    parts = [
        f"stream {view['stream']}  length {view['length']}  first {num(view['first_entry_id'])}"
        f"  last {num(view['last_entry_id'])}  warn after {view['warn_after_s']:g} s",
        "",
        table(
            [
                "GROUP",
                "CONSUMERS",
                "PENDING",
                "OLDEST PENDING",
                "AGE S",
                "LAST DELIVERED",
                "LAG",
                "WARN",
            ],
            [
                [
                    g["name"],
                    str(len(g["consumers"])),
                    str(g["pending"]),
                    num(g["oldest_pending_id"]),
                    num(g["oldest_pending_age_s"]),
                    g["last_delivered_id"],
                    str(g["lag"]) + (" (counted)" if g["lag_counted"] else ""),
                    _executor_warning(g),
                ]
                for g in view["groups"]
            ],
        ),
    ]
    for g in view["groups"]:
        parts += ["", f"consumers of {g['name']}"]
        parts.append(
            table(
                ["CONSUMER", "PENDING", "IDLE S"],
                [[c["name"], str(c["pending"]), num(c["idle_s"])] for c in g["consumers"]],
            )
        )
    if view["warnings"]:
        parts.append("")
        parts += [f"WARNING: {w}" for w in view["warnings"]]
    return "\n".join(parts)


def _executor_warning(group: Json) -> str:
    flags = (("warning", "old pending"), ("stalled", "stalled"))
    why = [text for flag, text in flags if group[flag]]
    return ", ".join(why) or "no"
