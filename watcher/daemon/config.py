"""Settings: built once from the TOML file and the environment (the only reader of os.environ)."""

from __future__ import annotations

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
)
from watcher.feeds import VENUES
from watcher.feeds.spec import DEFAULT_JUMP_BAND, FeedSpec

REDIS_URL_ENV = "LIQWATCH_REDIS_URL"
MAX_INPUT_BATCH = 2000


class ConfigError(LiqwatchError):
    """A config value is missing or wrong; the message names its key path."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the daemon is told, validated."""

    redis_url: str
    prefix: str
    feeds: tuple[FeedSpec, ...]
    markets: Mapping[str, Market]
    at_equality: bool = False
    liq_id_ttl: int = 7 * 24 * 3600
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

    @property
    def keys(self) -> Keys:
        """Key names under the configured prefix."""
        return Keys(self.prefix)

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
    """Read and validate a config file; ConfigError names the bad key."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_settings(text, os.environ if env is None else env, source=str(path))


def parse_settings(text: str, env: Mapping[str, str], *, source: str = "<config>") -> Settings:
    """Validate TOML text into Settings; ``LIQWATCH_REDIS_URL`` overrides ``redis.url``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    _known(doc, "", {"redis", "feeds", "markets", "liquidation", "daemon"})
    redis = _table(doc, "redis", required=False)
    _known(redis, "redis", {"url", "prefix"})
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
    _known(liq, "liquidation", {"at_equality", "liq_id_ttl", "stuck_after"})
    daemon = _table(doc, "daemon", required=False)
    _known(daemon, "daemon", DAEMON_KEYS)
    kwargs: dict[str, Any] = {}
    for name, kind in (
        ("heartbeat_interval", float),
        ("heartbeat_ttl", float),
        ("lease_ttl", float),
        ("input_batch", int),
        ("max_frame_bytes", int),
        ("backoff_base", float),
        ("backoff_cap", float),
        ("backoff_reset_after", float),
    ):
        if name in daemon:
            kwargs[name] = _positive(daemon, name, "daemon", kind)
    if kwargs.get("input_batch", 0) > MAX_INPUT_BATCH:
        # One commit acknowledges up to a batch of entries as script arguments.
        raise ConfigError(
            f"daemon.input_batch: at most {MAX_INPUT_BATCH}, got {kwargs['input_batch']}"
        )
    if "instance" in daemon:
        kwargs["instance"] = _str(daemon, "instance", "daemon")
        if not kwargs["instance"].strip():
            raise ConfigError("daemon.instance: must not be empty")

    if "log_format" in daemon:
        kwargs["log_format"] = _choice(daemon, "log_format", "daemon", ("json", "console"))
    if "liq_id_ttl" in liq:
        kwargs["liq_id_ttl"] = _positive(liq, "liq_id_ttl", "liquidation", int)
    if "stuck_after" in liq:
        kwargs["stuck_after"] = _positive(liq, "stuck_after", "liquidation", float)
    at_equality = liq.get("at_equality", False)
    if not isinstance(at_equality, bool):
        raise ConfigError(f"liquidation.at_equality: must be true or false, got {at_equality!r}")
    settings = Settings(
        redis_url=url,
        prefix=prefix,
        feeds=feeds,
        markets=markets,
        at_equality=at_equality,
        **kwargs,
    )
    if settings.heartbeat_ttl <= settings.heartbeat_interval:
        raise ConfigError("daemon.heartbeat_ttl: must be longer than daemon.heartbeat_interval")
    if settings.backoff_base > settings.backoff_cap:
        raise ConfigError("daemon.backoff_base: must not exceed daemon.backoff_cap")
    return settings


FEED_KEYS = {
    "venue",
    "url",
    "symbols",
    "stale_after",
    "silence_timeout",
    "jump_band",
    "symbol_map",
}
DAEMON_KEYS = {
    "instance",
    "log_format",
    "heartbeat_interval",
    "heartbeat_ttl",
    "lease_ttl",
    "input_batch",
    "max_frame_bytes",
    "backoff_base",
    "backoff_cap",
    "backoff_reset_after",
}


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


def _positive(t: Mapping[str, Any], name: str, path: str, kind: type[float] | type[int]) -> Any:
    value = t[name]
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        ok = ok and isinstance(value, int)
    if not ok or not value > 0:
        raise ConfigError(f"{path}.{name}: must be a positive {kind.__name__}, got {value!r}")
    return kind(value)


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
        _known(spec, path, {"maintenance", "default_margin_mode"})
        model = _model(spec.get("maintenance"), f"{path}.maintenance")
        mode_raw = spec.get("default_margin_mode", "CROSS")
        try:
            mode = MarginMode(mode_raw)
        except ValueError:
            raise ConfigError(
                f"{path}.default_margin_mode: must be CROSS or ISOLATED, got {mode_raw!r}"
            ) from None
        markets[symbol] = Market(symbol, model, mode)
    return markets


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
        stale_after = _positive(spec, "stale_after", path, float) if "stale_after" in spec else 5.0
        jump_band = spec.get("jump_band", DEFAULT_JUMP_BAND)
        if isinstance(jump_band, bool) or not isinstance(jump_band, int | float):
            raise ConfigError(f"{path}.jump_band: must be a fraction, got {jump_band!r}")
        symbol_map = spec.get("symbol_map", {})
        if not isinstance(symbol_map, dict):
            raise ConfigError(f"{path}.symbol_map: must be a table of venue symbol = symbol")
        silence = (
            _positive(spec, "silence_timeout", path, float) if "silence_timeout" in spec else None
        )
        try:
            feed = FeedSpec(
                venue,
                url,
                tuple(symbols),
                stale_after,
                dict(symbol_map),
                silence_timeout=silence,
                jump_band=float(jump_band) or None,
            )
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for symbol in feed.position_symbols:
            if symbol not in markets:
                raise ConfigError(f"{path}.symbols: {symbol} has no [markets.{symbol}]")
        feeds.append(feed)
    return tuple(feeds)
