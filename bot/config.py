"""Configuration: ``config.json`` validated by pydantic, and secrets from the environment only.

Every problem is reported as a ConfigError naming the file, the field and the reason, e.g.
``config.json: strategy.min_price: must be below strategy.max_price (0.9 >= 0.8)``.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from bot.errors import ConfigError

log = logging.getLogger("bot.config")

#: Loaded config never changes: a change is a new config (``with_overrides``), checked like a loaded one.
_STRICT = ConfigDict(extra="forbid", frozen=True)

#: The shares of a take-profit ladder add up to 1 within this (1/3 written as 0.333333).
LADDER_SHARE_TOLERANCE = Decimal("0.00001")

#: Keys older config files may still have that no longer do anything: accepted with a warning, then dropped.
DEPRECATED_KEYS = {
    ("trading", "cancel_timeout_seconds"): "it never did anything (a cancel's answer is read, not waited for)",
}


def _drop_deprecated(section: str, data: Any, info: ValidationInfo) -> Any:
    """``data`` without the section's deprecated keys, each named in a warning."""
    if not isinstance(data, dict):
        return data
    dropped = [key for (sec, key) in DEPRECATED_KEYS if sec == section and key in data]
    if not dropped:
        return data
    source = (info.context or {}).get("source") or "config"
    for key in dropped:
        log.warning("%s: %s.%s is deprecated and ignored: %s; remove it", source, section, key,
                    DEPRECATED_KEYS[(section, key)])
    return {k: v for k, v in data.items() if k not in dropped}


class BotSection(BaseModel):
    model_config = _STRICT
    dry_run: bool = True
    loop_interval_seconds: float = Field(10, gt=0)
    positions_file: str = "positions.json"
    log_file: str | None = "logs/bot.log"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class CapitalSection(BaseModel):
    model_config = _STRICT
    total: Decimal = Field(Decimal(100), gt=0)
    max_trade_size: Decimal = Field(Decimal(10), gt=0)
    max_positions: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _trade_within_total(self) -> CapitalSection:
        if self.max_trade_size > self.total:
            raise ValueError(f"max_trade_size: must not exceed capital.total ({self.max_trade_size} > {self.total})")
        return self


class TradingSection(BaseModel):
    model_config = _STRICT
    use_concurrent_orders: bool = False
    order_check_interval_seconds: float = Field(30, gt=0)
    ab_test_ratio: float | None = Field(None, ge=0, le=1)
    ab_test_seed: int | None = None
    exit_max_slippage_pct: Decimal = Field(Decimal("0.10"), gt=0, lt=1)
    cancel_unknown_orders: bool = False

    @model_validator(mode="before")
    @classmethod
    def _deprecated(cls, data: Any, info: ValidationInfo) -> Any:
        return _drop_deprecated("trading", data, info)


class StrategySection(BaseModel):
    model_config = _STRICT
    take_profit_pct: Decimal = Field(Decimal("0.10"), gt=0, lt=1)
    stop_loss_pct: Decimal = Field(Decimal("0.10"), gt=0, lt=1)
    max_hold_hours: float = Field(24, gt=0)
    blacklist_hours: float = Field(24, ge=0)
    min_price: Decimal = Field(Decimal("0.20"), gt=0, lt=1)
    max_price: Decimal = Field(Decimal("0.80"), gt=0, lt=1)
    min_liquidity: Decimal = Field(Decimal(1000), ge=0)
    min_volume: Decimal = Field(Decimal(0), ge=0)
    max_spread: Decimal = Field(Decimal("0.05"), gt=0)
    #: Skip a market whose spread (ask - bid) is more than this share of the TP distance (tp - ask).
    max_spread_share_of_tp: Decimal = Field(Decimal("0.5"), gt=0, le=1)
    min_hours_to_end: float = Field(24, ge=0)
    max_hours_to_end: float | None = Field(None, gt=0)
    scan_interval_seconds: float = Field(60, gt=0)
    #: Stops that follow the price (bot/stops.py; all off by default; copied onto each position as it opens):
    #: the stop trails this far below the highest bid seen once the bid is trailing_activation_pct above the
    #: entry; and moves to the price that returns the cost (after the exit's fee) once the bid is
    #: break_even_at_pct above the entry. The stop only ever moves up.
    trailing_stop_pct: Decimal | None = Field(None, gt=0, lt=1)
    trailing_activation_pct: Decimal = Field(Decimal(0), ge=0, lt=1)
    break_even_at_pct: Decimal | None = Field(None, gt=0, lt=1)
    #: The take-profit split into rungs (bot/ladder.py; off by default): ``[[profit_pct, share_of_position], ...]``,
    #: profits rising, shares adding up to 1; e.g. ``[[0.05, 0.5], [0.12, 0.5]]``. Replaces take_profit_pct.
    take_profit_ladder: tuple[tuple[Decimal, Decimal], ...] | None = None

    @field_validator("take_profit_ladder", mode="before")
    @classmethod
    def _ladder_text(cls, value: Any) -> Any:
        """The grid's (and a command line's) short form: "0.05:0.5/0.12:0.5"; "none" or "" for no ladder."""
        if isinstance(value, str):
            text = value.strip()
            if text.lower() in ("", "none", "off"):
                return None
            try:
                return [[part.split(":")[0], part.split(":")[1]] for part in text.split("/")]
            except IndexError:
                raise ValueError(f"expected profit:share/profit:share, e.g. 0.05:0.5/0.12:0.5 (got {value!r})") \
                    from None
        return value

    @model_validator(mode="after")
    def _price_range(self) -> StrategySection:
        if self.min_price >= self.max_price:
            raise ValueError(f"min_price: must be below strategy.max_price ({self.min_price} >= {self.max_price})")
        ladder = self.take_profit_ladder
        if ladder is not None:
            if not ladder:
                raise ValueError("take_profit_ladder: give at least one [profit_pct, share] rung, or null for none")
            for i, (pct, share) in enumerate(ladder):
                if not pct.is_finite() or not 0 < pct < 100:
                    raise ValueError(f"take_profit_ladder[{i}]: profit_pct must be above 0 and below 100 (got {pct})")
                if not share.is_finite() or not 0 < share <= 1:
                    raise ValueError(f"take_profit_ladder[{i}]: share must be above 0 and at most 1 (got {share})")
                if i and pct <= ladder[i - 1][0]:
                    raise ValueError(f"take_profit_ladder[{i}]: profit_pct must rise from rung to rung ({pct} after "
                                     f"{ladder[i - 1][0]})")
            total = sum((share for _, share in ladder), Decimal(0))
            if abs(total - 1) > LADDER_SHARE_TOLERANCE:
                raise ValueError(f"take_profit_ladder: the shares must add up to 1 (the whole position), they add up "
                                 f"to {total}")
        return self


class ApiSection(BaseModel):
    model_config = _STRICT
    clob_host: str = "https://clob.polymarket.com"
    gamma_host: str = "https://gamma-api.polymarket.com"
    chain_id: int = 137
    signature_type: int = Field(0, ge=0, le=3)
    relayer_host: str = "https://relayer-v2.polymarket.com"   # doctor: is the deposit wallet deployed?
    request_timeout_seconds: float = Field(5, gt=0)
    # An overall cap on all requests together, on top of the venue's per-endpoint limits the bot always keeps
    # (bot/venue/limits.py). Unset: no overall cap (the per-endpoint limits alone).
    max_requests_per_second: float | None = Field(None, gt=0)


class FeedsSection(BaseModel):
    """Push feeds (the CLOB's WebSocket market and user channels; bot/feeds.py). ``enabled: false`` is the
    REST-only loop of before, exactly."""

    model_config = _STRICT
    enabled: bool = True
    market_url: str = "wss://ws-subscriptions-clob.polymarket.com/ws/market"
    user_url: str = "wss://ws-subscriptions-clob.polymarket.com/ws/user"
    #: The text PING is sent this often (the venue drops a connection that stays quiet for about 10 s).
    ping_seconds: float = Field(10, gt=0)
    #: A token whose feed sent nothing for this long is checked against a REST read (the staleness limit:
    #: a silent socket or a lost subscription is found within it, and its token falls back to REST).
    check_seconds: float = Field(75, gt=0)
    #: After a resubscribe, the fresh book must arrive within this long, else the connection is replaced.
    resubscribe_timeout_seconds: float = Field(5, gt=0)
    #: The user channel must mention an order the bot sent within this long, else it is reconnected.
    user_ack_seconds: float = Field(5, gt=0)
    #: Tokens per market-channel connection (the venue stops sending snapshots above 500).
    max_assets_per_connection: int = Field(200, ge=1, le=500)
    #: Reconnects back off from the first to the second value, with jitter.
    reconnect_min_seconds: float = Field(0.25, gt=0)
    reconnect_max_seconds: float = Field(5, gt=0)
    #: With a healthy user channel, the open-orders list is still read this often (the safety net).
    orders_check_seconds: float = Field(600, gt=0)

    @model_validator(mode="after")
    def _sane(self) -> FeedsSection:
        for name in ("market_url", "user_url"):
            url = getattr(self, name)
            if not url.startswith(("ws://", "wss://")):
                raise ValueError(f"{name}: must be a ws:// or wss:// URL ({url!r})")
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            raise ValueError(f"reconnect_min_seconds: must not exceed feeds.reconnect_max_seconds "
                             f"({self.reconnect_min_seconds} > {self.reconnect_max_seconds})")
        return self


def feed_urls(ws_url: str) -> dict[str, str]:
    """The ``feeds`` URLs of a venue serving both channels under ``ws_url`` (as bot/sim does, and the CLOB)."""
    base = ws_url.rstrip("/")
    return {"market_url": f"{base}/ws/market", "user_url": f"{base}/ws/user"}


class AlertsSection(BaseModel):
    model_config = _STRICT
    webhook_url: str | None = None


class BotConfig(BaseModel):
    """The whole config.json."""

    model_config = _STRICT
    bot: BotSection = Field(default_factory=BotSection)
    capital: CapitalSection = Field(default_factory=CapitalSection)
    trading: TradingSection = Field(default_factory=TradingSection)
    strategy: StrategySection = Field(default_factory=StrategySection)
    api: ApiSection = Field(default_factory=ApiSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    feeds: FeedsSection = Field(default_factory=FeedsSection)
    source_path: str = Field("", exclude=True)


def default_config() -> BotConfig:
    """Every default (dry-run on, concurrent orders off)."""
    return BotConfig()


def _describe(err: ErrorDetails) -> tuple[str, str]:
    loc = [str(p) for p in err.get("loc", ())]
    msg = err.get("msg", "invalid")
    if err.get("type") == "extra_forbidden":
        return ".".join(loc), "unknown key"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        # a model validator names its own field first: "min_price: must be ..."
        m = re.match(r"^(\w+): (.*)$", msg)
        if m:
            return ".".join(loc + [m.group(1)]), m.group(2)
    got = err.get("input")
    if not isinstance(got, (dict, list)):
        msg = f"{msg} (got {got!r})"
    return ".".join(loc) or "(top level)", msg


def load_bot_config(path: str | os.PathLike) -> BotConfig:
    """Load and validate config.json; ConfigError names the file, the field and the reason."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found (copy config.json from the repository to start)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object with sections bot, capital, trading, strategy, api")
    return _validate({**data, "source_path": str(p)}, str(p))


def _validate(data: dict[str, Any], source: str) -> BotConfig:
    try:
        return BotConfig.model_validate(data, context={"source": source})
    except ValidationError as exc:
        problems = [f"{field}: {reason}" for field, reason in map(_describe, exc.errors())]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def with_overrides(config: BotConfig, overrides: Mapping[str, Any] | None = None, /, **dotted: Any) -> BotConfig:
    """A copy of ``config`` with some values changed, checked like a loaded config (ConfigError names the
    field); ``config`` itself never changes. Keys are ``section.key`` in ``overrides`` or ``section__key``
    as keywords: ``with_overrides(config, {"bot.dry_run": True})``,
    ``with_overrides(config, strategy__scan_interval_seconds=10**9)``."""
    data = config.model_dump()
    data["source_path"] = config.source_path
    for name, value in {**(overrides or {}), **dotted}.items():
        section, sep, key = name.replace("__", ".").partition(".")
        if not sep or "." in key:
            raise ConfigError(f"{name}: expected section.key (e.g. bot.dry_run)")
        if not isinstance(data.get(section), dict):
            raise ConfigError(f"{config.source_path or 'config'}: {section}: unknown section")
        data[section][key] = value
    return _validate(data, config.source_path or "config")


class Secrets(BaseModel):
    """Credentials from the environment. Values are SecretStr: repr and str never show them."""

    model_config = ConfigDict(extra="forbid")
    private_key: SecretStr | None = None
    funder_address: str | None = None
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    api_passphrase: SecretStr | None = None

    def private_key_value(self) -> str:
        """The private key (ConfigError when unset: ``require_live_secrets`` says so first)."""
        if self.private_key is None:
            raise ConfigError("POLY_PRIVATE_KEY is not set")
        return self.private_key.get_secret_value()

    def api_creds(self) -> tuple[str, str, str] | None:
        """(key, secret, passphrase) when all three are set, else None (derived from the key)."""
        if self.api_key is None or self.api_secret is None or self.api_passphrase is None:
            return None
        return (self.api_key.get_secret_value(), self.api_secret.get_secret_value(),
                self.api_passphrase.get_secret_value())


ENV_NAMES = {
    "private_key": "POLY_PRIVATE_KEY",
    "funder_address": "POLY_FUNDER_ADDRESS",
    "api_key": "POLY_API_KEY",
    "api_secret": "POLY_API_SECRET",
    "api_passphrase": "POLY_API_PASSPHRASE",
}


def load_secrets(env: Mapping[str, str] | None = None, dotenv_path: str | None = ".env") -> Secrets:
    """Secrets from ``env`` (default: the process environment, after loading .env without overriding it)."""
    if env is None:
        if dotenv_path and Path(dotenv_path).exists():
            from dotenv import load_dotenv

            load_dotenv(dotenv_path, override=False)
        env = os.environ
    values = {field: (env.get(name) or "").strip() or None for field, name in ENV_NAMES.items()}
    return Secrets.model_validate(values)


_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_ADDR_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


def require_live_secrets(secrets: Secrets) -> None:
    """ConfigError naming what live trading lacks; never prints a secret's value."""
    problems: list[str] = []
    if secrets.private_key is None:
        problems.append("POLY_PRIVATE_KEY is not set")
    elif not _KEY_RE.match(secrets.private_key.get_secret_value()):
        problems.append("POLY_PRIVATE_KEY is not a 64-hex-digit private key (value not shown)")
    elif not _valid_private_key(secrets.private_key.get_secret_value()):
        problems.append("POLY_PRIVATE_KEY is not a valid private key (it must be between 1 and the secp256k1 "
                        "curve order; value not shown)")
    if secrets.funder_address and not _ADDR_RE.match(secrets.funder_address):
        problems.append(f"POLY_FUNDER_ADDRESS is not an address (0x + 40 hex digits): {secrets.funder_address!r}")
    api = {"POLY_API_KEY": secrets.api_key, "POLY_API_SECRET": secrets.api_secret,
           "POLY_API_PASSPHRASE": secrets.api_passphrase}
    given = [name for name, v in api.items() if v is not None]
    if given and len(given) != len(api):
        missing = [name for name in api if name not in given]
        problems.append(f"API credentials are partial: {', '.join(missing)} missing (set all three, or none "
                        "to derive them from the key)")
    if secrets.api_secret is not None and not _valid_api_secret(secrets.api_secret.get_secret_value()):
        problems.append("POLY_API_SECRET is not base64 as the venue issues it (every request would be signed "
                        "with it and refused; value not shown): copy it again, or unset all three POLY_API_* to "
                        "derive them from the key")
    if problems:
        raise ConfigError("live trading (bot.dry_run false) needs credentials in the environment or .env: "
                          + "; ".join(problems))


def _valid_private_key(key: str) -> bool:
    """A 64-hex string is a key only between 1 and the curve order (all zeros is not)."""
    from eth_account import Account

    try:
        Account.from_key(key)
    except Exception:  # noqa: BLE001 - any refusal means "not a key"; its text is never shown
        return False
    return True


def _valid_api_secret(secret: str) -> bool:
    """The SDK signs every request with urlsafe_b64decode(secret), which skips stray characters: accept only
    the base64 alphabet (URL-safe or not, padded) that decodes to something."""
    import base64
    import binascii

    if not re.fullmatch(r"[A-Za-z0-9_\-+/]+={0,2}", secret):
        return False
    try:
        return len(base64.urlsafe_b64decode(secret)) > 0
    except (binascii.Error, ValueError):
        return False


def check_state_paths(config: BotConfig) -> None:
    """ConfigError naming the field when bot.positions_file or bot.log_file cannot be a file: it is a folder,
    or a folder on its path is a file."""
    src = config.source_path or "config"
    for field, value in (("bot.positions_file", config.bot.positions_file), ("bot.log_file", config.bot.log_file)):
        if not value:
            continue
        path = Path(value)
        if path.is_dir():
            raise ConfigError(f"{src}: {field}: {value} is a folder, not a file")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ConfigError(f"{src}: {field}: {value}: {parent} is a file, not a folder")
                break


def check_trade_size(config: BotConfig, min_order_size: Decimal = Decimal(5),
                     price: Decimal | None = None) -> list[str]:
    """Sentences naming why ``capital.max_trade_size`` cannot trade on typical markets (empty = fine)."""
    size = config.capital.max_trade_size
    price = price if price is not None else config.strategy.max_price
    problems: list[str] = []
    if size < 1:
        problems.append(f"capital.max_trade_size ${size} is below the venue's $1 minimum for a market BUY")
    shares = (size / price).quantize(Decimal("0.01"))
    if shares < min_order_size:
        smallest = (min_order_size * price).quantize(Decimal("0.01"))
        problems.append(f"capital.max_trade_size ${size} buys {shares} shares at {price}, below the "
                        f"{min_order_size}-share minimum for a resting take-profit; use at least ${smallest}")
    return problems


def unexitable_trade_size(config: BotConfig, min_order_size: Decimal = Decimal(5)) -> str | None:
    """Why ``capital.max_trade_size`` could not trade or could not get out of a position (None = fine).

    A position must stay sellable after its stop-loss: the venue takes a sell of at least
    ``min_order_size`` shares or worth at least $1. The worst case is an entry at ``strategy.max_price``
    (fewest shares) sold at the stop-loss (least value). The bot refuses to start on such a size rather
    than warn and then never trade, or buy what it cannot sell."""
    size, strategy, trading = config.capital.max_trade_size, config.strategy, config.trading
    if size < 1:
        return (f"capital.max_trade_size ${size} is below the venue's $1 minimum for a market BUY: the bot could "
                "never open a position; use at least $1")
    shares = (size / strategy.max_price).quantize(Decimal("0.01"))
    at_sl = (size * (1 - strategy.stop_loss_pct)).quantize(Decimal("0.01"))
    if shares < min_order_size and at_sl < 1:
        need = min(min_order_size * strategy.max_price, 1 / (1 - strategy.stop_loss_pct)).quantize(
            Decimal("0.01"), rounding="ROUND_CEILING")
        return (f"capital.max_trade_size ${size} buys as few as {shares} shares (at strategy.max_price "
                f"{strategy.max_price}) worth ${at_sl} at the stop-loss: below both of the venue's minimums for a "
                f"sell ({min_order_size} shares or $1), so its stop-loss could never sell it; use at least ${need}")
    only_limit_orders = trading.ab_test_ratio == 1 or (trading.ab_test_ratio is None and trading.use_concurrent_orders)
    if only_limit_orders and shares < min_order_size:
        need = (min_order_size * strategy.max_price).quantize(Decimal("0.01"), rounding="ROUND_CEILING")
        return (f"capital.max_trade_size ${size} buys as few as {shares} shares (at strategy.max_price "
                f"{strategy.max_price}), below the {min_order_size}-share minimum of a resting take-profit, and "
                f"every position uses one (trading.use_concurrent_orders): no entry could ever be made; use at "
                f"least ${need}, or monitor mode")
    return None
