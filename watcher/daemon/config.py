"""Settings: built once from the TOML file and the environment (the only reader of os.environ)."""

from __future__ import annotations

import math
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from state.errors import LiqwatchError, MarginError
from state.keys import Keys
from state.models import (
    Bracket,
    BracketsModel,
    FlatModel,
    MaintenanceModel,
    MarginMode,
    Market,
    OrderlyModel,
    PartialRule,
    Tier,
)
from state.partial import MIN_TAKEOVER, default_rule
from state.shards import MAX_SHARDS
from state.warning_levels import WarningRules
from watcher.feeds import VENUES
from watcher.feeds.errors import quote
from watcher.feeds.spec import (
    DEFAULT_JUMP_BAND,
    DEFAULT_MAX_AHEAD,
    DEFAULT_STALE_AFTER,
    FeedSpec,
)

REDIS_URL_ENV = "LIQWATCH_REDIS_URL"
# A config file is a few kilobytes; reading more than this is a wrong path
# (a device, a log file), not a config.
MAX_CONFIG_BYTES = 4 * 2**20

# Every number a config may hold has a floor and a ceiling: generous for any
# sane deployment, close enough that a typo (or 1e308) is caught at start
# instead of becoming a timer that never fires or an allocation that fails.
MAX_STALE_AFTER = 3600.0
# So that the default silence_timeout (3 * stale_after) always fits.
MAX_SILENCE_TIMEOUT = 3 * MAX_STALE_AFTER
MAX_MAX_AHEAD = 86400.0
MAX_HEARTBEAT_INTERVAL = 60.0
MAX_HEARTBEAT_TTL = 600.0
MAX_LEASE_TTL = 600.0
# One commit acknowledges up to a batch of entries as script arguments.
MAX_INPUT_BATCH = 2000
MAX_FRAME_BYTES = 64 * 2**20
MAX_BACKOFF = 3600.0
MAX_BACKOFF_RESET_AFTER = 3600.0
MAX_LIQ_ID_TTL = 365 * 86400
MAX_STUCK_AFTER = 7 * 86400.0
MIN_REDIS_TIMEOUT, MAX_REDIS_TIMEOUT = 0.05, 300.0
MIN_REDIS_BACKOFF_CAP, MAX_REDIS_BACKOFF_CAP = 0.01, 60.0
MIN_MAX_DELIVERIES, MAX_MAX_DELIVERIES = 2, 1000
MIN_AUDIT_INTERVAL, MAX_AUDIT_INTERVAL = 0.01, 3600.0
MIN_AUDIT_BATCH, MAX_AUDIT_BATCH = 1, 10_000
MIN_WARN_AFTER, MAX_WARN_AFTER = 1.0, 86400.0

DEFAULT_LIQ_ID_TTL = 7 * 24 * 3600
DEFAULT_REDIS_TIMEOUT = 2.0
DEFAULT_REDIS_BACKOFF_CAP = 2.0
DEFAULT_MAX_DELIVERIES = 10
DEFAULT_AUDIT_INTERVAL = 1.0
DEFAULT_AUDIT_BATCH = 200
DEFAULT_WARN_AFTER = 60.0


class ConfigError(LiqwatchError):
    """A config value is missing or wrong; the message names its key path."""


@dataclass(frozen=True, slots=True)
class Bound:
    """The numbers a key accepts: ``kind`` from ``low`` (excluded if ``above``) to ``high``."""

    kind: type[int] | type[float]
    low: float
    high: float
    above: bool = False


# key -> bound, per table; a key absent from its table keeps the Settings default.
REDIS_NUMBERS = {
    "timeout": Bound(float, MIN_REDIS_TIMEOUT, MAX_REDIS_TIMEOUT),
    "backoff_cap": Bound(float, MIN_REDIS_BACKOFF_CAP, MAX_REDIS_BACKOFF_CAP),
}
FEED_NUMBERS = {
    "stale_after": Bound(float, 0, MAX_STALE_AFTER, above=True),
    "silence_timeout": Bound(float, 0, MAX_SILENCE_TIMEOUT, above=True),
    "max_ahead": Bound(float, 0, MAX_MAX_AHEAD, above=True),
}
LIQUIDATION_NUMBERS = {
    "liq_id_ttl": Bound(int, 1, MAX_LIQ_ID_TTL),
    "stuck_after": Bound(float, 0, MAX_STUCK_AFTER, above=True),
}
DAEMON_NUMBERS = {
    "heartbeat_interval": Bound(float, 0, MAX_HEARTBEAT_INTERVAL, above=True),
    "heartbeat_ttl": Bound(float, 0, MAX_HEARTBEAT_TTL, above=True),
    "lease_ttl": Bound(float, 0, MAX_LEASE_TTL, above=True),
    "input_batch": Bound(int, 1, MAX_INPUT_BATCH),
    "max_frame_bytes": Bound(int, 1, MAX_FRAME_BYTES),
    "backoff_base": Bound(float, 0, MAX_BACKOFF, above=True),
    "backoff_cap": Bound(float, 0, MAX_BACKOFF, above=True),
    "backoff_reset_after": Bound(float, 0, MAX_BACKOFF_RESET_AFTER, above=True),
    "max_deliveries": Bound(int, MIN_MAX_DELIVERIES, MAX_MAX_DELIVERIES),
}
AUDIT_NUMBERS = {
    "interval": Bound(float, MIN_AUDIT_INTERVAL, MAX_AUDIT_INTERVAL),
    "batch": Bound(int, MIN_AUDIT_BATCH, MAX_AUDIT_BATCH),
}
EXECUTORS_NUMBERS = {
    "warn_after": Bound(float, MIN_WARN_AFTER, MAX_WARN_AFTER),
}
SHARDS_NUMBERS = {
    "count": Bound(int, 1, MAX_SHARDS),
}
WARNINGS_NUMBERS = {
    "interval": Bound(float, 0.01, 60.0),
    "max_len": Bound(int, 1_000, 100_000_000),
}
# [warnings] rearm when not given: this much above the level.
DEFAULT_REARM_GAP = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the daemon is told, validated."""

    redis_url: str
    prefix: str
    feeds: tuple[FeedSpec, ...]
    markets: Mapping[str, Market]
    at_equality: bool = False
    liq_id_ttl: int = DEFAULT_LIQ_ID_TTL
    stuck_after: float = 300.0
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    heartbeat_interval: float = 1.0
    heartbeat_ttl: float = 5.0
    lease_ttl: float = 5.0
    input_batch: int = 200
    max_frame_bytes: int = 2**20
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    backoff_reset_after: float = 30.0
    log_format: str = "json"
    # [redis] timeout: how long one Redis round trip may take before the
    # daemon treats Redis as unreachable; backoff_cap: its reconnect backoff cap.
    redis_timeout: float = DEFAULT_REDIS_TIMEOUT
    redis_backoff_cap: float = DEFAULT_REDIS_BACKOFF_CAP
    # [daemon] max_deliveries: an input entry delivered more often is dead-lettered.
    max_deliveries: int = DEFAULT_MAX_DELIVERIES
    # [audit]: whether to audit, seconds between batches, accounts per batch.
    audit_enabled: bool = True
    audit_interval: float = DEFAULT_AUDIT_INTERVAL
    audit_batch: int = DEFAULT_AUDIT_BATCH
    # [executors] warn_after: an events-stream consumer group whose oldest
    # pending entry is older than this (seconds) raises a warning.
    executors_warn_after: float = DEFAULT_WARN_AFTER
    # [redis] cluster: talk to a Redis Cluster (the url names any one node).
    redis_cluster: bool = False
    # [shards] count: how many shards the accounts are spread over (README, "Shards").
    shards: int = 1
    # [metrics] listen: "host:port" serving /metrics and /ready; None: no listener.
    metrics_listen: str | None = None
    # [daemon] log_level: the least severe log events written.
    log_level: str = "info"
    # [warnings]: near-liquidation warnings (None: off); seconds between rounds.
    warnings: WarningRules | None = None
    warnings_interval: float = 0.1

    @property
    def keys(self) -> Keys:
        """Key names under the configured prefix (of shard 0; :meth:`shard_keys` for all)."""
        return Keys(self.prefix)

    def shard_keys(self) -> list[Keys]:
        """The keys of every shard, by shard number."""
        return [Keys(self.prefix, k) for k in range(self.shards)]

    @property
    def redacted_redis_url(self) -> str:
        """The Redis URL with any password replaced, for logs."""
        return redact_url(self.redis_url)


def redact_url(url: str) -> str:
    """Replace the password of a URL with ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file; every failure is a one-line ConfigError.

    Unreadable (missing, a directory, no permission), too big, not UTF-8 (the
    message gives the byte offset), not TOML or not valid: each names the
    file or the key path.
    """
    return parse_settings(read_config(path), os.environ if env is None else env, source=str(path))


def read_config(path: Path) -> str:
    """Return a config file's text; ConfigError if it cannot be read, is too big or not UTF-8.

    ``liqwatch notify`` reads its ``[notify]`` table from the same text.
    """
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # a path with a NUL byte, say
        raise ConfigError(f"{str(path)!r}: cannot read: {exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes: not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        ) from None
    return text


def parse_settings(text: str, env: Mapping[str, str], *, source: str = "<config>") -> Settings:
    """Validate TOML text into Settings; ``LIQWATCH_REDIS_URL`` overrides ``redis.url``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {_one_line(str(exc))}") from None
    # [notify] belongs to ``liqwatch notify`` (watcher/notify/), which reads the same file.
    _known(
        doc,
        "",
        {
            "redis",
            "feeds",
            "markets",
            "liquidation",
            "daemon",
            "audit",
            "executors",
            "notify",
            "shards",
            "metrics",
            "warnings",
        },
    )
    redis = _table(doc, "redis", required=False)
    _known(redis, "redis", {"url", "prefix", "cluster", *REDIS_NUMBERS})
    url = env.get(REDIS_URL_ENV) or _str(redis, "url", "redis", default="redis://127.0.0.1:6379/0")
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"redis.url: must be redis://, rediss:// or unix://, got {redact_url(url)}"
        )
    prefix = _str(redis, "prefix", "redis", default="liq")
    if not prefix or any(c in prefix for c in "{}: "):
        raise ConfigError(
            f"redis.prefix: must be non-empty without braces, colons or spaces: {prefix!r}"
        )
    markets = _markets(_table(doc, "markets", required=True))
    feeds = _feeds(doc.get("feeds"), markets)
    liq = _table(doc, "liquidation", required=False)
    _known(liq, "liquidation", {"at_equality", *LIQUIDATION_NUMBERS})
    daemon = _table(doc, "daemon", required=False)
    _known(daemon, "daemon", DAEMON_KEYS)
    audit = _table(doc, "audit", required=False)
    _known(audit, "audit", {"enabled", *AUDIT_NUMBERS})
    executors = _table(doc, "executors", required=False)
    _known(executors, "executors", set(EXECUTORS_NUMBERS))
    shards = _table(doc, "shards", required=False)
    _known(shards, "shards", set(SHARDS_NUMBERS))
    metrics = _table(doc, "metrics", required=False)
    _known(metrics, "metrics", {"listen"})
    warnings = _table(doc, "warnings", required=False)
    _known(warnings, "warnings", {"level", "rearm", *WARNINGS_NUMBERS})

    kwargs: dict[str, Any] = {}
    if "listen" in metrics:
        listen = _str(metrics, "listen", "metrics")
        parse_listen(listen, "metrics.listen")
        kwargs["metrics_listen"] = listen
    kwargs.update(_numbers(redis, "redis", REDIS_NUMBERS, rename="redis_{}"))
    kwargs.update(_numbers(liq, "liquidation", LIQUIDATION_NUMBERS))
    kwargs.update(_numbers(daemon, "daemon", DAEMON_NUMBERS))
    kwargs.update(_numbers(audit, "audit", AUDIT_NUMBERS, rename="audit_{}"))
    kwargs.update(_numbers(executors, "executors", EXECUTORS_NUMBERS, rename="executors_{}"))
    if "count" in shards:
        kwargs["shards"] = _number(shards, "count", "shards", SHARDS_NUMBERS["count"])
    if "cluster" in redis:
        kwargs["redis_cluster"] = _bool(redis, "cluster", "redis")
        if kwargs["redis_cluster"] and urlsplit(url).scheme == "unix":
            raise ConfigError("redis.cluster: a Redis Cluster is reached over TCP, not unix://")
    if "instance" in daemon:
        kwargs["instance"] = _str(daemon, "instance", "daemon")
        if not kwargs["instance"].strip():
            raise ConfigError("daemon.instance: must not be empty")
    if "log_level" in daemon:
        kwargs["log_level"] = _choice(
            daemon, "log_level", "daemon", ("debug", "info", "warning", "error")
        )
    if "log_format" in daemon:
        kwargs["log_format"] = _choice(daemon, "log_format", "daemon", ("json", "console"))
    if "enabled" in audit:
        kwargs["audit_enabled"] = _bool(audit, "enabled", "audit")
    if warnings:
        kwargs.update(_warnings(warnings, markets))
    settings = Settings(
        redis_url=url,
        prefix=prefix,
        feeds=feeds,
        markets=markets,
        at_equality=_bool(liq, "at_equality", "liquidation", default=False),
        **kwargs,
    )
    if settings.heartbeat_ttl <= settings.heartbeat_interval:
        raise ConfigError(
            f"daemon.heartbeat_ttl: must be longer than daemon.heartbeat_interval"
            f" ({_show(settings.heartbeat_interval)}), got {_show(settings.heartbeat_ttl)}"
        )
    if settings.backoff_base > settings.backoff_cap:
        raise ConfigError(
            f"daemon.backoff_base: must not exceed daemon.backoff_cap"
            f" ({_show(settings.backoff_cap)}), got {_show(settings.backoff_base)}"
        )
    return settings


FEED_KEYS = {"venue", "url", "symbols", "jump_band", "symbol_map", *FEED_NUMBERS}
DAEMON_KEYS = {"instance", "log_format", "log_level", *DAEMON_NUMBERS}


def _warnings(table: Mapping[str, Any], markets: Mapping[str, Market]) -> dict[str, Any]:
    """``[warnings]``: the level (required), re-arm level, round interval, stream length."""
    if "level" not in table:
        raise ConfigError('warnings.level: missing (a multiple of maintenance, such as "1.5")')
    level = _dec(table["level"], "warnings.level")
    rearm = (
        _dec(table["rearm"], "warnings.rearm") if "rearm" in table else level + DEFAULT_REARM_GAP
    )
    numbers = _numbers(table, "warnings", WARNINGS_NUMBERS)
    try:
        rules = WarningRules.build(
            {s: m.maintenance for s, m in markets.items()},
            level,
            rearm,
            int(numbers.get("max_len", 100_000)),
        )
    except MarginError as exc:
        raise ConfigError(f"warnings: {exc}") from None
    out: dict[str, Any] = {"warnings": rules}
    if "interval" in numbers:
        out["warnings_interval"] = numbers["interval"]
    return out


def parse_listen(value: Any, where: str) -> tuple[str, int]:
    """Read ``host:port`` (``[::1]:port`` for IPv6); ConfigError names ``where``."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string host:port, got {value!r}")
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isascii() or not port.isdigit():
        raise ConfigError(f"{where}: must be host:port, got {value!r}")
    number = int(port)
    if not 1 <= number <= 65535:
        raise ConfigError(f"{where}: port must be from 1 to 65535, got {port}")
    return host, number


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show(number: float) -> str:
    """Write a bound or a value as a person would: 3600, 0.05, 1e+308."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    text = repr(number)
    # A 400-digit integer must not become a 400-character error line.
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def _number(t: Mapping[str, Any], name: str, path: str, bound: Bound) -> float:
    """Return ``t[name]`` checked against ``bound``; ConfigError names the key and the bound."""
    where = f"{path}.{name}"
    value = t[name]
    kind = "an integer" if bound.kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: must be {kind}, got {quote(value)}")
    if bound.kind is int and not isinstance(value, int):
        raise ConfigError(f"{where}: must be an integer, got {quote(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    if bound.above and not value > bound.low:
        raise ConfigError(f"{where}: must be greater than {_show(bound.low)}, got {_show(value)}")
    if not bound.above and value < bound.low:
        raise ConfigError(f"{where}: must be at least {_show(bound.low)}, got {_show(value)}")
    if value > bound.high:
        raise ConfigError(f"{where}: must be at most {_show(bound.high)}, got {_show(value)}")
    return bound.kind(value)


def _numbers(
    t: Mapping[str, Any], path: str, bounds: Mapping[str, Bound], rename: str = "{}"
) -> dict[str, float]:
    """Return the checked numbers of ``t`` named in ``bounds``, keyed as Settings names them."""
    return {
        rename.format(name): _number(t, name, path, bound)
        for name, bound in bounds.items()
        if name in t
    }


def _bool(t: Mapping[str, Any], name: str, path: str, default: bool | None = None) -> bool:
    value = t.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{name}: must be true or false, got {value!r}")
    return value


def _known(table: Mapping[str, Any], path: str, allowed: set[str]) -> None:
    # A misspelt key silently falling back to its default is how outages start.
    for key in table:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(allowed))})")


def _table(doc: Mapping[str, Any], name: str, *, required: bool) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        if required:
            raise ConfigError(f"{name}: missing table [{name}]")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: must be a table")
    return value


def _str(t: Mapping[str, Any], name: str, path: str, default: str | None = None) -> str:
    value = t.get(name, default)
    if not isinstance(value, str):
        raise ConfigError(f"{path}.{name}: must be a string, got {value!r}")
    return value


def _choice(t: Mapping[str, Any], name: str, path: str, options: tuple[str, ...]) -> str:
    value = _str(t, name, path)
    if value not in options:
        raise ConfigError(f"{path}.{name}: must be one of {', '.join(options)}, got {value!r}")
    return value


def _dec(value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{path}: must be a decimal string, got {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{path}: not a decimal: {value!r}") from None
    if not result.is_finite():
        raise ConfigError(f"{path}: must be finite, got {value!r}")
    return result


def _markets(table: Mapping[str, Any]) -> dict[str, Market]:
    if not table:
        raise ConfigError("markets: at least one [markets.<SYMBOL>] is needed")
    markets: dict[str, Market] = {}
    for symbol, spec in table.items():
        path = f"markets.{symbol}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: must be a table")
        _known(spec, path, {"maintenance", "default_margin_mode", "partial"})
        model = _model(spec.get("maintenance"), f"{path}.maintenance")
        mode_raw = spec.get("default_margin_mode", "CROSS")
        try:
            mode = MarginMode(mode_raw)
        except ValueError:
            raise ConfigError(
                f"{path}.default_margin_mode: must be CROSS or ISOLATED, got {mode_raw!r}"
            ) from None
        rule = _partial(spec.get("partial"), f"{path}.partial", symbol, model)
        markets[symbol] = Market(symbol, model, mode, rule)
    return markets


PARTIAL_KEYS = {"tier", "min_takeover", "liquidation_fee", "liquidator_fee"}


def _partial(spec: Any, path: str, symbol: str, model: MaintenanceModel) -> PartialRule | None:
    """A market's partial-liquidation rule: Orderly's defaults on the orderly model.

    ``partial = false`` turns it off; a table overrides any of tier,
    min_takeover, liquidation_fee and liquidator_fee (the others keep the
    defaults of the market's symbol, the minimum those of its tier).
    """
    orderly = isinstance(model, OrderlyModel)
    if spec is False:
        return None
    if spec is None:
        return default_rule(symbol) if orderly else None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: must be a table of {', '.join(sorted(PARTIAL_KEYS))}, or false")
    if not orderly:
        raise ConfigError(f"{path}: only a market on the orderly model liquidates partially")
    _known(spec, path, PARTIAL_KEYS)
    default = default_rule(symbol)
    tier = default.tier
    if "tier" in spec:
        tier = Tier(_choice(spec, "tier", path, tuple(t.value for t in Tier)))
    values = {
        "min_takeover": MIN_TAKEOVER[tier],
        "liquidation_fee": default.liquidation_fee,
        "liquidator_fee": default.liquidator_fee,
    }
    for key in values:
        if key in spec:
            values[key] = _dec(spec[key], f"{path}.{key}")
    try:
        return PartialRule(tier, **values)
    except MarginError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_model(spec: Any, path: str) -> MaintenanceModel:
    """Read a ``maintenance`` table (flat, brackets or orderly); ConfigError names ``path``."""
    return _model(spec, path)


def _model(spec: Any, path: str) -> MaintenanceModel:
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: missing (a table with model = flat | brackets | orderly)")
    kind = spec.get("model")
    allowed = {
        "flat": {"rate"},
        "orderly": {"base_imr", "base_mmr", "imr_factor"},
        "brackets": {"brackets"},
    }.get(str(kind), set())
    if allowed:
        _known(spec, path, allowed | {"model"})
    try:
        if kind == "flat":
            return FlatModel(_dec(spec.get("rate"), f"{path}.rate"))
        if kind == "orderly":
            return OrderlyModel(
                _dec(spec.get("base_imr"), f"{path}.base_imr"),
                _dec(spec.get("base_mmr"), f"{path}.base_mmr"),
                _dec(spec.get("imr_factor"), f"{path}.imr_factor"),
            )
        if kind == "brackets":
            rows = spec.get("brackets")
            if not isinstance(rows, list) or not rows:
                raise ConfigError(f"{path}.brackets: must be a list of [floor, rate, amount]")
            brackets = []
            for i, row in enumerate(rows):
                if not isinstance(row, list) or len(row) not in (2, 3):
                    raise ConfigError(f"{path}.brackets[{i}]: must be [floor, rate, amount]")
                values = [_dec(v, f"{path}.brackets[{i}]") for v in row]
                brackets.append(values)
            if all(len(r) == 2 for r in brackets):
                return BracketsModel.from_rates([(r[0], r[1]) for r in brackets])
            if any(len(r) != 3 for r in brackets):
                raise ConfigError(
                    f"{path}.brackets: give every bracket as [floor, rate, amount], or every"
                    " one as [floor, rate] (amounts derived), not a mix"
                )
            return BracketsModel(tuple(Bracket(*r) for r in brackets))
    except MarginError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    raise ConfigError(f"{path}.model: must be flat, brackets or orderly, got {kind!r}")


def _feeds(raw: Any, markets: Mapping[str, Market]) -> tuple[FeedSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("feeds: at least one [[feeds]] table is needed")
    feeds = []
    for i, spec in enumerate(raw):
        path = f"feeds[{i}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: must be a table")
        _known(spec, path, FEED_KEYS)
        venue = _choice(spec, "venue", path, tuple(sorted(VENUES)))
        url = _str(spec, "url", path)
        symbols = spec.get("symbols")
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise ConfigError(f"{path}.symbols: must be a list of strings")
        numbers = _numbers(spec, path, FEED_NUMBERS)
        jump_band = spec.get("jump_band", DEFAULT_JUMP_BAND)
        if (
            isinstance(jump_band, bool)
            or not isinstance(jump_band, int | float)
            or not (jump_band == 0 or 0 < jump_band < 1)
        ):
            raise ConfigError(
                f"{path}.jump_band: must be 0 (off) or between 0 and 1, got {jump_band!r}"
            )
        symbol_map = spec.get("symbol_map", {})
        if not isinstance(symbol_map, dict):
            raise ConfigError(f"{path}.symbol_map: must be a table of venue symbol = symbol")
        try:
            feed = FeedSpec(
                venue,
                url,
                tuple(symbols),
                numbers.get("stale_after", DEFAULT_STALE_AFTER),
                dict(symbol_map),
                silence_timeout=numbers.get("silence_timeout"),
                jump_band=float(jump_band) or None,
                max_ahead=numbers.get("max_ahead", DEFAULT_MAX_AHEAD),
            )
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for symbol in feed.position_symbols:
            if symbol not in markets:
                raise ConfigError(f"{path}.symbols: {symbol} has no [markets.{symbol}]")
        feeds.append(feed)
    return tuple(feeds)
