import json
import logging
from decimal import Decimal as D

import pytest

from bot.config import (
    check_trade_size,
    default_config,
    load_bot_config,
    load_secrets,
    require_live_secrets,
    with_overrides,
)
from bot.errors import ConfigError

KEY = "ab" * 32


def write(tmp_path, data, name="config.json"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_shipped_config_is_safe():
    cfg = load_bot_config("config.json")
    assert cfg.bot.dry_run is True and cfg.trading.use_concurrent_orders is False
    assert cfg.model_dump() == default_config().model_dump()


@pytest.mark.parametrize("data,expected", [
    ({"trading": {"use_concurent_orders": True}}, "trading.use_concurent_orders: unknown key"),
    ({"bot": {"dry_run": "maybe"}}, "bot.dry_run: Input should be a valid boolean"),
    ({"strategy": {"take_profit_pct": 1.5}}, "strategy.take_profit_pct: Input should be less than 1"),
    ({"strategy": {"min_price": 0.9, "max_price": 0.8}},
     "strategy.min_price: must be below strategy.max_price (0.9 >= 0.8)"),
    ({"capital": {"total": 5, "max_trade_size": 10}}, "capital.max_trade_size: must not exceed capital.total"),
    ({"capital": {"max_positions": 0}}, "capital.max_positions: Input should be greater than or equal to 1"),
    ({"api": {"signature_type": 7}}, "api.signature_type"),
    ({"feeds": {"market_url": "https://ws-subscriptions-clob.polymarket.com/ws/market"}},
     "feeds.market_url: must be a ws:// or wss:// URL"),
    ({"feeds": {"reconnect_min_seconds": 10}},
     "feeds.reconnect_min_seconds: must not exceed feeds.reconnect_max_seconds"),
    ({"feeds": {"max_assets_per_connection": 900}}, "feeds.max_assets_per_connection: Input should be less than or "
                                                    "equal to 500"),
    ({"feeds": {"enabled": "sometimes"}}, "feeds.enabled: Input should be a valid boolean"),
    ({"strategy": {"trailing_stop_pct": 1.5}}, "strategy.trailing_stop_pct: Input should be less than 1"),
    ({"strategy": {"break_even_at_pct": 0}}, "strategy.break_even_at_pct: Input should be greater than 0"),
    ({"strategy": {"trailing_activation_pct": -0.1}}, "strategy.trailing_activation_pct"),
])
def test_config_errors_name_file_field_and_reason(tmp_path, data, expected):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_bot_config(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_invalid_json_names_line_and_column(tmp_path):
    path = write(tmp_path, '{\n  "bot": {"dry_run": true,}\n}')
    with pytest.raises(ConfigError, match=r"invalid JSON: .* line 2, column \d+"):
        load_bot_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.json: file not found"):
        load_bot_config(tmp_path / "nope.json")


def test_partial_config_gets_defaults(tmp_path):
    cfg = load_bot_config(write(tmp_path, {"trading": {"ab_test_ratio": 0.5}}))
    assert cfg.trading.ab_test_ratio == 0.5 and cfg.strategy.max_hold_hours == 24


def test_config_is_immutable_and_overrides_make_a_checked_copy(tmp_path):
    cfg = load_bot_config(write(tmp_path, {"strategy": {"scan_interval_seconds": 30}}))
    with pytest.raises(ValueError, match="frozen"):
        cfg.bot.dry_run = False
    with pytest.raises(ValueError, match="frozen"):
        cfg.strategy = default_config().strategy
    new = with_overrides(cfg, {"bot.dry_run": False}, strategy__max_hold_hours=2)
    assert (new.bot.dry_run, new.strategy.max_hold_hours, new.strategy.scan_interval_seconds) == (False, 2, 30)
    assert (cfg.bot.dry_run, cfg.strategy.max_hold_hours) == (True, 24)   # the original is untouched
    assert new.source_path == cfg.source_path == str(tmp_path / "config.json")
    with pytest.raises(ConfigError, match=r"config.json: strategy.min_price: must be below strategy.max_price"):
        with_overrides(cfg, strategy__min_price="0.9")
    with pytest.raises(ConfigError, match="strategy.nope: unknown key"):
        with_overrides(cfg, strategy__nope=1)
    with pytest.raises(ConfigError, match="expected section.key"):
        with_overrides(cfg, {"dry_run": True})


def test_a_deprecated_key_is_accepted_with_a_warning_naming_it(tmp_path):
    path = write(tmp_path, {"trading": {"cancel_timeout_seconds": 5, "ab_test_ratio": 0.5}})
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append   # type: ignore[method-assign]
    logging.getLogger("bot.config").addHandler(handler)
    try:
        cfg = load_bot_config(path)
    finally:
        logging.getLogger("bot.config").removeHandler(handler)
    assert cfg.trading.ab_test_ratio == 0.5 and "cancel_timeout_seconds" not in cfg.trading.model_dump()
    [record] = records
    assert record.levelno == logging.WARNING
    assert f"{path}: trading.cancel_timeout_seconds is deprecated and ignored" in record.getMessage()
    assert not hasattr(default_config().trading, "cancel_timeout_seconds")


def test_trade_size_checks_name_the_numbers():
    cfg = with_overrides(default_config(), capital__max_trade_size=D("0.25"))   # the seed's "micro" trade
    problems = check_trade_size(cfg, D(5), D("0.5"))
    assert any("$0.25 is below the venue's $1 minimum" in p for p in problems)
    assert any("0.50 shares at 0.5" in p and "use at least $2.50" in p for p in problems)
    cfg = with_overrides(cfg, capital__max_trade_size=D("3"))
    assert check_trade_size(cfg, D(5), D("0.5")) == []


def test_secrets_from_mapping_and_dotenv(tmp_path, monkeypatch):
    s = load_secrets({"POLY_PRIVATE_KEY": KEY, "POLY_FUNDER_ADDRESS": "0x" + "1" * 40})
    assert s.private_key.get_secret_value() == KEY and KEY not in repr(s) and KEY not in str(s)
    for name in ("POLY_PRIVATE_KEY", "POLY_API_KEY", "POLY_API_SECRET", "POLY_API_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text(f"POLY_PRIVATE_KEY={KEY}\n")
    assert load_secrets(dotenv_path=str(env_file)).private_key.get_secret_value() == KEY


def test_live_secrets_are_named_and_never_shown():
    with pytest.raises(ConfigError, match="POLY_PRIVATE_KEY is not set"):
        require_live_secrets(load_secrets({}))
    bad = "zz" + KEY[2:]
    with pytest.raises(ConfigError) as err:
        require_live_secrets(load_secrets({"POLY_PRIVATE_KEY": bad}))
    assert bad not in str(err.value) and "not a 64-hex-digit" in str(err.value)
    with pytest.raises(ConfigError, match="POLY_API_SECRET, POLY_API_PASSPHRASE missing"):
        require_live_secrets(load_secrets({"POLY_PRIVATE_KEY": KEY, "POLY_API_KEY": "k"}))
    require_live_secrets(load_secrets({"POLY_PRIVATE_KEY": "0x" + KEY}))


# -- issue 10, rule 11: credentials that cannot work are a config error at start, never shown -------------

def test_a_key_that_is_64_hex_but_not_a_key_is_refused():
    for bad in ("0" * 64, "0x" + "f" * 64):   # zero, and above the curve order
        with pytest.raises(ConfigError) as err:
            require_live_secrets(load_secrets({"POLY_PRIVATE_KEY": bad}))
        assert "POLY_PRIVATE_KEY is not a valid private key" in str(err.value)
        assert bad.removeprefix("0x") not in str(err.value)


def test_an_api_secret_that_is_not_base64_is_refused_at_start():
    # The SDK would sign every request with it and fail: a "malformed venue response" every loop, never a pause.
    bad = "not base64 at all!"
    with pytest.raises(ConfigError) as err:
        require_live_secrets(load_secrets({"POLY_PRIVATE_KEY": KEY, "POLY_API_KEY": "k", "POLY_API_SECRET": bad,
                                           "POLY_API_PASSPHRASE": "p"}))
    assert "POLY_API_SECRET is not base64" in str(err.value) and bad not in str(err.value)
    require_live_secrets(load_secrets({"POLY_PRIVATE_KEY": KEY, "POLY_API_KEY": "k", "POLY_API_PASSPHRASE": "p",
                                       "POLY_API_SECRET": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="}))


def test_state_and_log_paths_that_cannot_be_files_name_the_field(tmp_path):
    from bot.config import check_state_paths

    (tmp_path / "afile").write_text("x")
    cfg = write(tmp_path, {"bot": {"positions_file": str(tmp_path / "afile" / "positions.json")}})
    with pytest.raises(ConfigError, match=r"config.json: bot.positions_file: .*afile is a file, not a folder"):
        check_state_paths(load_bot_config(cfg))
    cfg = write(tmp_path, {"bot": {"positions_file": str(tmp_path / "p.json"), "log_file": str(tmp_path)}})
    with pytest.raises(ConfigError, match=r"config.json: bot.log_file: .* is a folder, not a file"):
        check_state_paths(load_bot_config(cfg))
    cfg = write(tmp_path, {"bot": {"positions_file": str(tmp_path / "new" / "p.json"),
                                   "log_file": str(tmp_path / "logs" / "bot.log")}})
    check_state_paths(load_bot_config(cfg))   # folders that do not exist yet are created later


@pytest.mark.parametrize("value,expected", [
    (0, "strategy.max_spread_share_of_tp: Input should be greater than 0"),
    (1.5, "strategy.max_spread_share_of_tp: Input should be less than or equal to 1"),
    ("half", "strategy.max_spread_share_of_tp: Input should be a valid decimal"),
])
def test_the_spread_share_of_the_take_profit_is_validated(tmp_path, value, expected):
    path = write(tmp_path, {"strategy": {"max_spread_share_of_tp": value}})
    with pytest.raises(ConfigError) as err:
        load_bot_config(path)
    assert expected in str(err.value)
    assert load_bot_config("config.json").strategy.max_spread_share_of_tp == D("0.5")
