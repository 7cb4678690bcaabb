"""``python main_bot.py doctor``: read-only checks before going live, one line each with what to do.

Nothing here places or cancels an order. The exit code is 0 only when no check is an error.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import requests

from bot.clock import Clock, SystemClock
from bot.config import (
    BotConfig,
    ConfigError,
    Secrets,
    check_trade_size,
    load_bot_config,
    load_secrets,
    require_live_secrets,
)
from bot.errors import BotError, StateFileError, VenueError
from bot.money import fmt
from bot.position_manager import PositionStore
from bot.venue.base import OrderState
from bot.wallets import deposit_wallet_addresses

if TYPE_CHECKING:   # imported where used: the SDK loads only for the checks that talk to the venue
    from bot.venue.live import LiveVenue

log = logging.getLogger("bot.doctor")

#: Clock skew against the venue that is worth a warning / that breaks signed requests.
SKEW_WARNING_S = 2
SKEW_ERROR_S = 30
#: Candidate markets looked at for the trade-size check.
SIZE_SAMPLE = 5
#: Where a new user finds the deposit wallet, and how it comes to exist, in plain words.
FIND_DEPOSIT_WALLET = ("log in on polymarket.com with the account this key belongs to, open the profile menu (top "
                       "right) and copy the account's wallet address: that is "
                       "your deposit wallet; put it in POLY_FUNDER_ADDRESS")
DEPLOY_DEPOSIT_WALLET = ("polymarket.com deploys the deposit wallet when the account is set up on the site: log in "
                         "there with this account and make a first deposit, then run doctor again (the venue refuses "
                         "every order from an undeployed wallet with 'maker address not allowed')")


@dataclass
class Check:
    name: str
    status: str  # ok / warning / error
    message: str
    fix: str = ""


class Doctor:
    """Runs the checks in order; later checks are skipped when what they need failed."""

    def __init__(self, config_path: str, env: Mapping[str, str] | None = None, clock: Clock | None = None,
                 dotenv_path: str | None = ".env"):
        self.config_path = config_path
        self.env = env
        self.dotenv_path = dotenv_path
        self.clock = clock or SystemClock()
        logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)  # expected failures are reported here
        self.checks: list[Check] = []
        self.config: BotConfig | None = None
        self.secrets = Secrets()
        self.address = ""                         # the key's address, once the credentials check passed
        self.reader: LiveVenue | None = None      # the CLOB without keys, once reachable
        self.venue: LiveVenue | None = None       # the account, once its API credentials are verified
        self.open_orders: list[OrderState] = []

    def add(self, name: str, status: str, message: str, fix: str = "") -> Check:
        check = Check(name, status, message, fix)
        self.checks.append(check)
        return check

    @property
    def cfg(self) -> BotConfig:
        """The loaded config (every check after ``check_config`` runs only when it loaded)."""
        if self.config is None:
            raise ConfigError(f"{self.config_path}: not loaded")
        return self.config

    @property
    def ok(self) -> bool:
        return not any(c.status == "error" for c in self.checks)

    def run(self) -> list[Check]:
        self.check_sdk()
        if self.check_config():
            secrets_ok = self.check_credentials()
            if self.check_hosts():
                self.check_clock()
                if secrets_ok:
                    if self.cfg.api.signature_type == 3:
                        self.check_deposit_wallet()
                    self.check_account()
                self.check_positions()
                self.check_trade_size()
        return self.checks

    # -- checks -----------------------------------------------------------------------------------

    def check_sdk(self) -> None:
        try:
            version = importlib.metadata.version("py-clob-client-v2")
            self.add("sdk", "ok", f"py-clob-client-v2 {version} installed")
        except importlib.metadata.PackageNotFoundError:
            self.add("sdk", "error", "py-clob-client-v2 is not installed",
                     "pip install -r requirements.txt (the only SDK that trades on Polymarket since CLOB V2)")
        if importlib.util.find_spec("py_clob_client") is not None:
            self.add("sdk_v1", "warning", "py-clob-client (v1) is installed; the bot does not use it, and its "
                     "orders are rejected by Polymarket since 2026-04-28", "pip uninstall py-clob-client")

    def check_config(self) -> bool:
        try:
            self.config = load_bot_config(self.config_path)
        except ConfigError as exc:
            self.add("config", "error", str(exc), "fix the named field")
            return False
        mode = "dry-run" if self.config.bot.dry_run else "LIVE"
        self.add("config", "ok", f"{self.config_path} valid ({mode}, {self._mode_text()})")
        return True

    def _mode_text(self) -> str:
        t = self.cfg.trading
        if t.ab_test_ratio is not None:
            return f"A/B {t.ab_test_ratio:.0%} limit_orders"
        return "limit_orders" if t.use_concurrent_orders else "monitor"

    def check_credentials(self) -> bool:
        from eth_account import Account

        secrets = load_secrets(self.env, dotenv_path=self.dotenv_path)
        self.secrets = secrets
        if secrets.private_key is None and self.cfg.bot.dry_run:
            self.add("credentials", "warning", "no POLY_PRIVATE_KEY: fine for dry-run, needed to go live",
                     "put the keys in .env (see .env.example)")
            return False
        try:
            require_live_secrets(secrets)
        except ConfigError as exc:
            self.add("credentials", "error", str(exc), "set them in the environment or .env (see .env.example)")
            return False
        address: str = Account.from_key(secrets.private_key_value()).address
        self.address = address
        funder = secrets.funder_address
        sig = self.cfg.api.signature_type
        if sig == 0 and funder and funder.lower() != address.lower():
            self.add("credentials", "error", f"signature_type 0 (plain wallet) trades from the key's own address "
                     f"{address}, but POLY_FUNDER_ADDRESS is {funder}",
                     "remove POLY_FUNDER_ADDRESS, or set api.signature_type to 1 (email/Magic proxy), 2 (browser "
                     "wallet Safe) or 3 (deposit wallet) to match the wallet that holds the funds")
            return False
        if sig in (1, 2, 3) and not funder:
            self.add("credentials", "error", f"signature_type {sig} needs POLY_FUNDER_ADDRESS (the proxy/Safe/deposit "
                     "wallet shown on polymarket.com that holds the funds)", "set POLY_FUNDER_ADDRESS")
            return False
        if sig == 3 and funder:
            current, legacy = deposit_wallet_addresses(address)
            if funder.lower() not in (current.lower(), legacy.lower()):
                what = ("the key's own address" if funder.lower() == address.lower()
                        else "not the deposit wallet of this key")
                self.add("credentials", "error", f"signature_type 3 (deposit wallet) trades from the deposit wallet "
                         f"that the key's address {address} owns, which is {current}; POLY_FUNDER_ADDRESS {funder} is "
                         f"{what}", f"{FIND_DEPOSIT_WALLET}. If polymarket.com shows another address, this key is not "
                         "that account's owner key (export the key of the account that owns the wallet), or the "
                         "account is a Magic/email proxy (signature_type 1) or a browser-wallet Safe (2)")
                return False
        self.add("credentials", "ok", f"key for {address}, funds at {funder or address}, signature_type {sig}"
                 + (" (the key's deposit wallet)" if sig == 3 else ""))
        return True

    def check_deposit_wallet(self) -> None:
        """signature_type 3: the deposit wallet must be deployed, as Polymarket's relayer says."""
        api, wallet = self.cfg.api, self.secrets.funder_address or ""
        query = {"address": wallet, "type": "WALLET"}
        try:
            resp = requests.get(f"{api.relayer_host.rstrip('/')}/deployed", params=query,
                                timeout=min(api.request_timeout_seconds, 5))
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            deployed = resp.json()["deployed"]
            if not isinstance(deployed, bool):
                raise ValueError(f"unexpected answer {resp.text[:100]!r}")
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            self.add("deposit_wallet", "warning", f"could not ask Polymarket's relayer at {api.relayer_host} whether "
                     f"the deposit wallet {wallet} is deployed: {type(exc).__name__}: {exc}",
                     "check api.relayer_host and the network; " + DEPLOY_DEPOSIT_WALLET)
            return
        if not deployed:
            self.add("deposit_wallet", "error", f"the deposit wallet {wallet} is not deployed yet: the venue refuses "
                     "every order from it", DEPLOY_DEPOSIT_WALLET)
        else:
            self.add("deposit_wallet", "ok", f"deposit wallet {wallet} is deployed and owned by the key's address "
                     f"{self.address}")

    def check_hosts(self) -> bool:
        from bot.venue.live import LiveVenue

        api = self.cfg.api
        reachable = True
        try:
            reader = LiveVenue(api.clob_host, chain_id=api.chain_id, timeout_s=min(api.request_timeout_seconds, 5),
                               clock=self.clock)
            reader.ping()
            self.reader = reader
            self.add("clob", "ok", f"CLOB reachable at {api.clob_host}")
        except VenueError as exc:
            reachable = False
            self.add("clob", "error", f"cannot reach the CLOB at {api.clob_host}: {exc}",
                     "check api.clob_host and the network")
        try:
            resp = requests.get(f"{api.gamma_host.rstrip('/')}/markets", params={"limit": "1", "closed": "false"},
                                timeout=min(api.request_timeout_seconds, 5))
            if resp.status_code != 200 or not isinstance(resp.json(), list):
                raise ValueError(f"HTTP {resp.status_code}")
            self.add("gamma", "ok", f"Gamma reachable at {api.gamma_host}")
        except (requests.RequestException, ValueError) as exc:
            reachable = False
            self.add("gamma", "error", f"cannot reach Gamma at {api.gamma_host}: {type(exc).__name__}",
                     "check api.gamma_host and the network")
        return reachable

    def check_clock(self) -> None:
        if self.reader is None:
            return
        try:
            skew = self.clock.time() - self.reader.server_time()
        except (VenueError, ValueError, TypeError) as exc:
            self.add("clock", "warning", f"could not read the venue's time: {exc}")
            return
        text = f"clock {'ahead of' if skew > 0 else 'behind'} the venue by {abs(skew):.1f} s"
        if abs(skew) >= SKEW_ERROR_S:
            self.add("clock", "error", text + ": signed requests would be refused",
                     "synchronise the system clock (e.g. enable NTP: timedatectl set-ntp true)")
        elif abs(skew) >= SKEW_WARNING_S:
            self.add("clock", "warning", text, "synchronise the system clock (NTP)")
        else:
            self.add("clock", "ok", text)

    def check_account(self) -> None:
        from bot.venue.live import LiveVenue

        api, s = self.cfg.api, self.secrets
        creds = s.api_creds()
        try:
            venue = LiveVenue(api.clob_host, chain_id=api.chain_id, private_key=s.private_key_value(),
                              funder=s.funder_address or None, signature_type=api.signature_type, api_creds=creds,
                              timeout_s=min(api.request_timeout_seconds, 5), clock=self.clock)
            open_orders = venue.open_orders()   # an L2 call: proves the API credentials
        except VenueError as exc:
            self.add("api_credentials", "error", f"API credentials refused: {exc}",
                     "remove POLY_API_KEY/SECRET/PASSPHRASE to derive them from the key, or fix them")
            return
        self.venue = venue
        self.open_orders = open_orders
        self.add("api_credentials", "ok", ("verified" if creds else "derived from the key") +
                 f"; {len(open_orders)} open order(s) on the account")
        try:
            balance = venue.collateral_balance()
            allowances = venue.collateral_allowances()
        except VenueError as exc:
            self.add("balance", "error", f"cannot read the balance: {exc}")
            return
        need = self.cfg.capital.max_trade_size
        if balance < need:
            self.add("balance", "warning", f"${fmt(balance, 2)} available, below one trade (${fmt(need)})",
                     "deposit USDC (pUSD) to the funder address")
        else:
            self.add("balance", "ok", f"${fmt(balance, 2)} available")
        if not allowances or all(v <= 0 for v in allowances.values()):
            self.add("allowance", "error", "the exchange contracts have no allowance on your funds: every order "
                     "would be refused with 'not enough balance / allowance'",
                     "approve the exchange once (log in and trade once on polymarket.com, or approve on-chain)")
        else:
            self.add("allowance", "ok", f"allowances set for {len(allowances)} exchange contract(s)")

    def check_positions(self) -> None:
        path = self.cfg.bot.positions_file
        try:
            state = PositionStore(path).load()
        except StateFileError as exc:
            self.add("positions", "error", str(exc), "restore the .prev file or move the broken one away")
            return
        active = state.active_positions()
        problems: list[str] = []
        if self.venue is not None:
            known = {p.tp_order_id for p in active if p.tp_order_id}
            unknown = [o.order_id for o in self.open_orders if o.order_id not in known]
            if unknown:
                problems.append(f"{len(unknown)} open order(s) no position knows")
            for p in active:
                held = self.venue.token_balance(p.token_id)
                if held + Decimal("0.02") < p.shares:
                    problems.append(f"position {p.id} expects {fmt(p.shares)} shares, the account holds {fmt(held)}")
        if problems:
            self.add("positions", "warning", f"{path}: " + "; ".join(problems),
                     "the bot reconciles at start; review these first")
        else:
            self.add("positions", "ok", f"{path}: {len(active)} active, {state.closed_totals()[0]} closed"
                     + ("" if self.venue is not None else " (not compared with the venue: no credentials)"))

    def check_trade_size(self) -> None:
        from datetime import UTC, datetime

        from bot.scanner import MarketScanner

        cfg = self.cfg
        try:
            cands = MarketScanner.from_config(cfg, max_pages=1).candidates(
                datetime.fromtimestamp(self.clock.time(), tz=UTC))[:SIZE_SAMPLE]
        except BotError as exc:
            self.add("trade_size", "warning", f"could not list candidate markets: {exc}")
            return
        if cfg.capital.max_trade_size < 1:
            self.add("trade_size", "error", f"capital.max_trade_size ${fmt(cfg.capital.max_trade_size)} is below the "
                     "venue's $1 minimum for a market BUY", "set capital.max_trade_size to at least 1")
            return
        if not cands:
            self.add("trade_size", "warning", "no market passes the strategy filters right now",
                     "loosen strategy.min_liquidity / max_spread / price range")
            return
        needs_tp = cfg.trading.use_concurrent_orders or (cfg.trading.ab_test_ratio or 0) > 0
        too_small = [c for c in cands if needs_tp and check_trade_size(cfg, c.min_order_size, c.price)]
        smallest = smallest_trade(cands[0].price, cands[0].min_order_size, needs_tp)
        if too_small:
            worst = max(too_small, key=lambda c: c.min_order_size * c.price)
            self.add("trade_size", "warning", f"${fmt(cfg.capital.max_trade_size)} is too small for a resting TP on "
                     f"{len(too_small)} of {len(cands)} candidate markets (e.g. {worst.min_order_size} shares at "
                     f"{worst.price} = ${fmt(worst.min_order_size * worst.price, 2)})",
                     "raise capital.max_trade_size to at least "
                     f"${fmt(smallest_trade(worst.price, worst.min_order_size, True))}")
        else:
            self.add("trade_size", "ok", f"${fmt(cfg.capital.max_trade_size)} clears the minimums of the "
                     f"{len(cands)} best candidates; the smallest valid trade on the first is ${fmt(smallest)}")


def smallest_trade(price: Decimal, min_order_size: Decimal, needs_resting_tp: bool) -> Decimal:
    """Dollars (notional, before the fee paid in USDC on top) for the smallest entry the venue takes: $1 for a
    market buy, and enough shares for a resting TP of ``min_order_size`` (2% kept in hand, and two ticks of
    room for the price to move while buying)."""
    usd = Decimal(1)
    if needs_resting_tp:
        usd = max(usd, (min_order_size * Decimal("1.02") * (price + Decimal("0.02"))))
    return usd.quantize(Decimal("0.01"), rounding="ROUND_UP")


def format_checks(checks: list[Check]) -> str:
    lines: list[str] = []
    for c in checks:
        fix = f"\n         -> {c.fix}" if c.fix and c.status != "ok" else ""
        lines.append(f"{c.status:8} {c.name}: {c.message}{fix}")
    errors = sum(c.status == "error" for c in checks)
    warnings = sum(c.status == "warning" for c in checks)
    lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)


def as_json(checks: list[Check]) -> str:
    return json.dumps({"ok": not any(c.status == "error" for c in checks), "checks": [asdict(c) for c in checks]},
                      indent=2)
