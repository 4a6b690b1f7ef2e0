"""The ``[notify]`` table and its ``[[notify.sinks]]``: validated once, at the notifier's start.

The daemon's settings come from the same file (:mod:`watcher.daemon.config`);
this module reads only ``[notify]``. Every error is a one-line ConfigError
naming the key path, with the same bounds grammar as the daemon's keys.
A secret (a webhook URL, an HMAC key, a routing key) is never quoted in an
error: it is given inline (``url = "..."``) or read from a file
(``url_file = "/run/secrets/..."``, surrounding whitespace dropped), and held
as a :class:`~watcher.notify.secret.Secret`.
"""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from watcher.daemon.config import (
    Bound,
    ConfigError,
    Settings,
    _choice,
    _known,
    _number,
    _show,
    _table,
    load_settings,
    parse_listen,
    read_config,
)
from watcher.notify.secret import Secret

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
# A secret file holds one value; a bigger one is a wrong path.
MAX_SECRET_BYTES = 64 * 1024
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SEVERITIES = ("critical", "error", "warning", "info")


class SinkType(StrEnum):
    """Where a sink delivers: a generic signed webhook, Slack, or PagerDuty Events v2."""

    WEBHOOK = "webhook"
    SLACK = "slack"
    PAGERDUTY = "pagerduty"


# Keys a sink may override from [notify]; the same bounds in both places.
DELIVERY_NUMBERS = {
    "timeout": Bound(float, 0, 300.0, above=True),
    "max_tries": Bound(int, 1, 100),
    "backoff_base": Bound(float, 0, 3600.0, above=True),
    "backoff_cap": Bound(float, 0, 3600.0, above=True),
    "summary_window": Bound(float, 0.1, 3600.0),
    "max_messages_per_window": Bound(int, 1, 10_000),
}
NOTIFY_NUMBERS = {
    "batch": Bound(int, 1, 10_000),
    "max_in_flight": Bound(int, 1, 1_000_000),
    "claim_idle": Bound(float, 1.0, 86400.0),
}
SECRET_KEYS = {
    SinkType.WEBHOOK: ("url", "secret"),
    SinkType.SLACK: ("url",),
    SinkType.PAGERDUTY: ("url", "routing_key"),
}
SINK_KEYS = {
    SinkType.WEBHOOK: {"url", "secret"},
    SinkType.SLACK: {"url"},
    SinkType.PAGERDUTY: {"url", "routing_key", "severity", "source"},
}


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one sink is delivered to: request timeout, tries, backoff, message budget."""

    timeout: float = 10.0
    max_tries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    summary_window: float = 5.0
    max_messages_per_window: int = 3


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """One ``[[notify.sinks]]`` table. ``url`` and the keys are Secrets."""

    name: str
    type: SinkType
    url: Secret
    delivery: Delivery
    # webhook: the HMAC-SHA256 key of the signature header.
    secret: Secret | None = None
    # pagerduty: the integration's routing key, the severity and source it reports.
    routing_key: Secret | None = None
    severity: str = "critical"
    source: str = "liqwatch"

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret of the sink (for scrubbing text made by libraries)."""
        return tuple(s for s in (self.url, self.secret, self.routing_key) if s is not None)


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """The validated ``[notify]`` table."""

    sinks: tuple[SinkSpec, ...]
    group: str = "notify"
    consumer: str = field(default_factory=lambda: f"notify-{socket.gethostname()}")
    # Where a group made now starts: "new" events only ($), or "all" (0).
    start: str = "new"
    batch: int = 500
    max_in_flight: int = 50_000
    claim_idle: float = 300.0
    metrics_listen: tuple[str, int] | None = None

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret of every sink."""
        return tuple(s for sink in self.sinks for s in sink.secrets())


def load_notify(path: Path) -> tuple[Settings, NotifySettings]:
    """Read the daemon's settings and the ``[notify]`` table of one config file."""
    settings = load_settings(path)
    doc = tomllib.loads(read_config(path))
    return settings, parse_notify(doc)


def parse_notify(doc: Mapping[str, Any]) -> NotifySettings:
    """Validate the ``[notify]`` table of a parsed config document."""
    table = _table(doc, "notify", required=True)
    _known(
        table,
        "notify",
        {"sinks", "group", "consumer", "start", "metrics_listen"}
        | set(DELIVERY_NUMBERS)
        | set(NOTIFY_NUMBERS),
    )
    defaults = _delivery(table, "notify", Delivery())
    kwargs: dict[str, Any] = {
        name: _number(table, name, "notify", bound)
        for name, bound in NOTIFY_NUMBERS.items()
        if name in table
    }
    for key in ("group", "consumer"):
        if key in table:
            kwargs[key] = _name(table, key, "notify")
    if "start" in table:
        kwargs["start"] = _choice(table, "start", "notify", ("new", "all"))
    if "metrics_listen" in table:
        kwargs["metrics_listen"] = parse_listen(table["metrics_listen"], "notify.metrics_listen")
    raw = table.get("sinks")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("notify.sinks: at least one [[notify.sinks]] table is needed")
    sinks = tuple(_sink(spec, f"notify.sinks[{i}]", defaults) for i, spec in enumerate(raw))
    seen: set[str] = set()
    for i, sink in enumerate(sinks):
        if sink.name in seen:
            raise ConfigError(f"notify.sinks[{i}].name: {sink.name!r} names another sink too")
        seen.add(sink.name)
    return NotifySettings(sinks=sinks, **kwargs)


def _delivery(t: Mapping[str, Any], path: str, base: Delivery) -> Delivery:
    values = {
        "timeout": base.timeout,
        "max_tries": base.max_tries,
        "backoff_base": base.backoff_base,
        "backoff_cap": base.backoff_cap,
        "summary_window": base.summary_window,
        "max_messages_per_window": base.max_messages_per_window,
    }
    for name, bound in DELIVERY_NUMBERS.items():
        if name in t:
            values[name] = _number(t, name, path, bound)
    delivery = Delivery(**values)  # type: ignore[arg-type]
    if delivery.backoff_base > delivery.backoff_cap:
        raise ConfigError(
            f"{path}.backoff_base: must not exceed backoff_cap"
            f" ({_show(delivery.backoff_cap)}), got {_show(delivery.backoff_base)}"
        )
    return delivery


def _sink(spec: Any, path: str, defaults: Delivery) -> SinkSpec:
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: must be a table")
    kind = SinkType(_choice(spec, "type", path, tuple(t.value for t in SinkType)))
    secret_files = {f"{key}_file" for key in SECRET_KEYS[kind]}
    _known(spec, path, {"name", "type"} | SINK_KEYS[kind] | secret_files | set(DELIVERY_NUMBERS))
    if "name" not in spec:
        raise ConfigError(f"{path}.name: missing (a name for logs and metrics)")
    name = _name(spec, "name", path)
    delivery = _delivery(spec, path, defaults)
    if kind is SinkType.PAGERDUTY:
        url = _secret(spec, "url", path, required=False) or Secret(PAGERDUTY_URL)
        severity = spec.get("severity", "critical")
        if severity not in SEVERITIES:
            raise ConfigError(
                f"{path}.severity: must be one of {', '.join(SEVERITIES)}, got {severity!r}"
            )
        source = spec.get("source", "liqwatch")
        if not isinstance(source, str) or not 1 <= len(source) <= 255:
            raise ConfigError(f"{path}.source: must be a string of 1 to 255 characters")
        _check_url(url, f"{path}.url")
        return SinkSpec(
            name,
            kind,
            url,
            delivery,
            routing_key=_required_secret(spec, "routing_key", path),
            severity=severity,
            source=source,
        )
    hook = _required_secret(spec, "url", path)
    _check_url(hook, f"{path}.url")
    secret = _required_secret(spec, "secret", path) if kind is SinkType.WEBHOOK else None
    return SinkSpec(name, kind, hook, delivery, secret=secret)


def _name(t: Mapping[str, Any], key: str, path: str) -> str:
    value = t[key]
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ConfigError(
            f"{path}.{key}: must be 1 to 64 of A-Z a-z 0-9 _ . -, got {str(value)[:80]!r}"
        )
    return value


def _required_secret(t: Mapping[str, Any], key: str, path: str) -> Secret:
    secret = _secret(t, key, path)
    assert secret is not None  # a missing one raised
    return secret


def _secret(t: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> Secret | None:
    """Read a secret given inline (``key``) or in a file (``key_file``); never quote it."""
    inline, from_file = key in t, f"{key}_file" in t
    if inline and from_file:
        raise ConfigError(f"{path}: give {key} or {key}_file, not both")
    if inline:
        value = t[key]
        if not isinstance(value, str):
            raise ConfigError(f"{path}.{key}: must be a string")
    elif from_file:
        value = _read_secret(t[f"{key}_file"], f"{path}.{key}_file")
    elif required:
        raise ConfigError(f"{path}.{key}: missing (or {key}_file)")
    else:
        return None
    if not value:
        raise ConfigError(f"{path}.{key}: must not be empty")
    return Secret(value)


def _read_secret(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: must be a file path")
    try:
        with open(name, "rb") as file:
            data = file.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {name}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot read {name!r}: {exc}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(f"{where}: {name} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: {name} is not UTF-8") from None


def _check_url(url: Secret, where: str) -> None:
    """An http(s) URL with a host; the message says what is wrong, never the URL."""
    try:
        parts = urlsplit(url.reveal())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{where}: not a valid URL (value not shown: a secret)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}: must be an http:// or https:// URL with a host (value not shown: a secret)"
        )
    if any(c.isspace() for c in url.reveal()):
        raise ConfigError(f"{where}: must not hold whitespace (value not shown: a secret)")
