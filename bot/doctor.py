"""``python main_bot.py doctor``: read-only checks before going live, one line each with what to do.

Nothing here places or cancels an order. The exit code is 0 only when no check is an error.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

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


@dataclass(frozen=True)
class MarketKind:
    """What one kind of market needs approved, by the names of ``LiveVenue.contracts()`` (polymarket-client's
    config): pUSD allowances for ``spenders`` (to buy) and, on the ERC-1155 contract that holds its shares,
    ``setApprovalForAll`` for ``operators`` (to sell). FACTS.md Part 0, 0.8."""

    label: str                   # what breaks without it ("Protocol V2 markets")
    spenders: tuple[str, ...]
    shares: str                  # "conditional_tokens" (V1, the CTF) or "position_manager" (Protocol V2)
    operators: tuple[str, ...]


MARKET_KINDS = (
    MarketKind("V1 standard markets", ("ctf_exchange",), "conditional_tokens", ("ctf_exchange",)),
    MarketKind("V1 neg-risk markets", ("neg_risk_exchange", "neg_risk_adapter"), "conditional_tokens",
               ("neg_risk_exchange", "neg_risk_adapter")),
    MarketKind("Protocol V2 markets", ("exchange_v3",), "position_manager", ("exchange_v3",)),
)
CONTRACT_LABELS = {"ctf_exchange": "CTF exchange", "neg_risk_exchange": "neg-risk exchange",
                   "neg_risk_adapter": "neg-risk adapter", "exchange_v3": "ExchangeV3",
                   "auto_redeem_operator": "auto-redeem operator", "conditional_tokens": "conditional tokens",
                   "position_manager": "PositionManager", "collateral_token": "pUSD"}
#: ERC-1155 ``isApprovedForAll(address owner, address operator)``: keccak256 of the signature, first 4 bytes.
IS_APPROVED_FOR_ALL = "0xe985e9c5"
#: Seconds per JSON-RPC call to the Polygon node (rpc_url of the SDK's config).
RPC_TIMEOUT_S = 4.0
APPROVE_ON_SITE = ("log in on polymarket.com with this account and trade once (the site sets the approvals then; "
                   "the bot never sends approvals)")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


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
                    if self.venue is not None:
                        self.check_approvals()
                self.check_positions()
                self.check_trade_size()
        return self.checks

    # -- checks -----------------------------------------------------------------------------------

    def check_sdk(self) -> None:
        """polymarket-client (the unified SDK, which bot/venue/sdk.py trades through) at the version the bot pins."""
        fix = "pip install -r requirements.txt (it pins polymarket-client, Polymarket's unified SDK: the bot trades " \
              "V1 and Protocol V2 markets through it)"
        try:
            importlib.metadata.version("polymarket-client")
            from bot.venue import sdk
        except importlib.metadata.PackageNotFoundError:
            self.add("sdk", "error", "polymarket-client is not installed", fix)
        except (ImportError, AttributeError) as exc:   # installed, but not the one bot/venue/sdk.py was written for
            self.add("sdk", "error", f"polymarket-client {importlib.metadata.version('polymarket-client')} is "
                     f"installed but bot/venue/sdk.py cannot use it: {type(exc).__name__}: {exc}", fix)
        else:
            version = sdk.installed_version()
            if version != sdk.SDK_PIN:
                self.add("sdk", "error", f"polymarket-client {version} is installed; the bot is written and tested "
                         f"against {sdk.SDK_PIN} (its private parts move between releases)",
                         f"pip install polymarket-client=={sdk.SDK_PIN} (or {fix})")
            else:
                self.add("sdk", "ok", f"polymarket-client {version} installed (the pinned version)")
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
        except VenueError as exc:
            self.add("balance", "error", f"cannot read the balance: {exc}")
            return
        need = self.cfg.capital.max_trade_size
        if balance < need:
            self.add("balance", "warning", f"${fmt(balance, 2)} available, below one trade (${fmt(need)})",
                     "deposit USDC (pUSD) to the funder address")
        else:
            self.add("balance", "ok", f"${fmt(balance, 2)} available")

    def check_approvals(self) -> None:
        """What each kind of market needs approved (MARKET_KINDS): pUSD allowances as the venue reports them, share
        approvals and the auto-redeem operator read on-chain."""
        venue = self.venue
        if venue is None:
            return
        try:
            contracts = venue.contracts()
        except (VenueError, ValueError, AttributeError) as exc:
            self.add("allowance", "error", f"cannot tell which contracts to check: {type(exc).__name__}: {exc}",
                     "pip install -r requirements.txt (polymarket-client's config names them)")
            return
        unbuyable = self.check_collateral_allowances(venue, contracts)
        self.check_share_approvals(venue, contracts, unbuyable)

    def check_collateral_allowances(self, venue: LiveVenue, contracts: Mapping[str, str]) -> set[str]:
        """pUSD allowance of each spender each kind needs (GET /balance-allowance); returns the labels of the kinds
        the account cannot buy in."""
        try:
            allowances = venue.collateral_allowances()
        except VenueError as exc:
            self.add("allowance", "error", f"cannot read the pUSD allowances: {exc}")
            return {k.label for k in MARKET_KINDS}
        need = self.cfg.capital.max_trade_size
        every = {k.label for k in MARKET_KINDS}
        if allowances and not any(_ADDRESS.match(k) for k in allowances):   # an answer that names no spender
            if all(v < need for v in allowances.values()):
                self.add("allowance", "error", "no allowance on your pUSD for the exchange contracts: every order "
                         "would be refused with 'not enough balance / allowance'", self._approve_fix(contracts, []))
                return every
            self.add("allowance", "ok", "pUSD allowance set (the venue names no spender: not checked per kind)")
            return set()
        held = {k.lower(): v for k, v in allowances.items()}
        amount = {name: held.get(contracts[name].lower(), Decimal(0)) for k in MARKET_KINDS for name in k.spenders}
        missing = [name for name in amount if amount[name] < need]
        broken = [k for k in MARKET_KINDS if any(name in missing for name in k.spenders)]
        known = {contracts[name].lower() for name in contracts if name != "rpc_url"}
        others = [k for k, v in allowances.items() if _ADDRESS.match(k) and k.lower() not in known and v >= need]
        if not broken:
            self.add("allowance", "ok", "pUSD allowances set for every exchange contract: " + "; ".join(
                f"{k.label}: {' and '.join(CONTRACT_LABELS[n] for n in k.spenders)}" for k in MARKET_KINDS))
            return set()
        parts = []
        for name in missing:
            low = f" (allowance ${fmt(amount[name], 2)}, below one trade of ${fmt(need)})" if amount[name] > 0 else ""
            parts.append(f"{CONTRACT_LABELS[name]} {contracts[name]}{low}")
        text = "; ".join(parts)
        old = ""
        retired = contracts.get("old_neg_risk_adapter", "")
        if "neg_risk_adapter" in missing and retired and held.get(retired.lower(), Decimal(0)) >= need:
            old = (f". The old neg-risk adapter {retired} has an allowance: it was retired on 2026-07-17 and its "
                   f"allowance does not count; the current one is {contracts['neg_risk_adapter']}")
        elif "neg_risk_adapter" in missing and others:
            old = (f". {', '.join(others)} has an allowance but is not the current neg-risk adapter "
                   f"{contracts['neg_risk_adapter']}; its allowance does not count")
        if len(broken) == len(MARKET_KINDS):
            self.add("allowance", "error", f"no allowance on your pUSD for any exchange contract ({text}): every "
                     f"order would be refused with 'not enough balance / allowance'{old}",
                     self._approve_fix(contracts, missing))
        else:
            cannot = " and ".join(k.label for k in broken)
            self.add("allowance", "warning", f"pUSD allowance missing for {text}: the bot cannot trade {cannot} (their "
                     f"orders are refused with 'not enough balance / allowance'); the other kinds are approved{old}",
                     self._approve_fix(contracts, missing))
        return {k.label for k in broken}

    def _approve_fix(self, contracts: Mapping[str, str], missing: list[str]) -> str:
        spenders = ", ".join(f"{CONTRACT_LABELS[n]} {contracts[n]}" for n in missing) or "each exchange contract"
        return (f"{APPROVE_ON_SITE}, or approve on-chain from the funder {self.venue.funder if self.venue else ''}: "
                f"pUSD {contracts.get('collateral_token', '')} approve(spender, max) for {spenders}")

    def check_share_approvals(self, venue: LiveVenue, contracts: Mapping[str, str], unbuyable: set[str]) -> None:
        """On-chain ``isApprovedForAll(funder, operator)`` of each kind's operators on its share contract, and of the
        auto-redeem operator on both. A kind whose shares the exchange may not move can be bought but not sold (no
        take-profit, no stop-loss): an error while the account can buy there."""
        rpc = contracts.get("rpc_url", "")
        try:
            approved = share_approvals(contracts, venue.funder or "")
        except RpcError as exc:
            self.add("share_approvals", "warning", f"could not read the share approvals (nor the auto-redeem "
                     f"operator's) from the Polygon RPC at {_safe_url(rpc)}: {exc}",
                     "check the network; the venue still refuses orders that lack them (run doctor again later)")
            return
        missing = {k.label: [op for op in k.operators if not approved[(k.shares, op)]] for k in MARKET_KINDS}
        broken = [k for k in MARKET_KINDS if missing[k.label]]
        if not broken:
            self.add("share_approvals", "ok", "share approvals set: " + "; ".join(
                f"{k.label}: {' and '.join(CONTRACT_LABELS[op] for op in k.operators)} on the "
                f"{CONTRACT_LABELS[k.shares]}" for k in MARKET_KINDS))
        else:
            names = list(dict.fromkeys(op for k in broken for op in missing[k.label]))
            text = "; ".join(f"{CONTRACT_LABELS[op]} {contracts[op]} on the {CONTRACT_LABELS[k.shares]} "
                             f"{contracts[k.shares]}" for k in broken for op in missing[k.label])
            fix = (f"{APPROVE_ON_SITE}, or from the funder {venue.funder} call setApprovalForAll(operator, true) on "
                   f"the share contract for {', '.join(CONTRACT_LABELS[n] for n in names)}")
            stuck = [k.label for k in broken if k.label not in unbuyable]
            if len(broken) == len(MARKET_KINDS):
                self.add("share_approvals", "error", f"no exchange may move your shares ({text}): every SELL would "
                         "be refused with 'not enough balance / allowance'", fix)
            elif stuck:
                self.add("share_approvals", "error", f"share approval missing for {text}: the bot could buy in "
                         f"{' and '.join(stuck)} but not sell (no take-profit, no stop-loss)", fix)
            else:
                self.add("share_approvals", "warning", f"share approval missing for {text}: the bot cannot trade "
                         f"{' and '.join(k.label for k in broken)}", fix)
        self.add_auto_redeem(contracts, {t: approved[(t, "auto_redeem_operator")] for t in SHARE_TOKENS})

    def add_auto_redeem(self, contracts: Mapping[str, str], on: Mapping[str, bool]) -> None:
        operator = f"the auto-redeem operator {contracts['auto_redeem_operator']}"
        if all(on.values()):
            self.add("auto_redeem", "ok", f"{operator} is approved: winning positions redeem by themselves")
        elif not any(on.values()):
            self.add("auto_redeem", "ok", f"{operator} is not approved: redeeming winning positions is by hand on "
                     "polymarket.com (approving the operator there makes them redeem by themselves)")
        else:
            yes = [t for t, v in on.items() if v]
            no = [t for t, v in on.items() if not v]
            self.add("auto_redeem", "ok", f"{operator} is approved on the {', '.join(CONTRACT_LABELS[t] for t in yes)} "
                     f"({', '.join(SHARE_TOKENS[t] for t in yes)}: winning positions redeem by themselves) but not on "
                     f"the {', '.join(CONTRACT_LABELS[t] for t in no)} ({', '.join(SHARE_TOKENS[t] for t in no)}: "
                     "redeeming is by hand on polymarket.com)")

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
            known = {order_id for p in active for order_id in p.tp_order_ids}
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


#: The share contracts, and the markets whose shares each holds.
SHARE_TOKENS = {"conditional_tokens": "V1 markets", "position_manager": "Protocol V2 markets"}


class RpcError(Exception):
    """No usable answer from the Polygon node (unreachable, an error answer, or not a 32-byte word)."""


def is_approved_for_all(rpc_url: str, token: str, owner: str, operator: str, timeout_s: float = RPC_TIMEOUT_S,
                        session: requests.Session | None = None) -> bool:
    """ERC-1155 ``token.isApprovedForAll(owner, operator)`` by JSON-RPC ``eth_call`` at ``rpc_url``."""
    words = "".join(address.lower().removeprefix("0x").rjust(64, "0") for address in (owner, operator))
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_call",
               "params": [{"to": token, "data": IS_APPROVED_FOR_ALL + words}, "latest"]}
    try:
        resp = (session or requests).post(rpc_url, json=payload, timeout=timeout_s)
        if resp.status_code != 200:
            raise RpcError(f"HTTP {resp.status_code}")
        body = resp.json()
    except requests.RequestException as exc:
        raise RpcError(f"{type(exc).__name__}: unreachable") from None
    except ValueError:
        raise RpcError("the answer is not JSON") from None
    if not isinstance(body, dict):
        raise RpcError(f"unexpected answer {str(body)[:100]!r}")
    if body.get("error"):
        error = body["error"]
        raise RpcError(f"eth_call refused: {error.get('message') if isinstance(error, dict) else error}")
    result = body.get("result")
    if not isinstance(result, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", result):
        raise RpcError(f"isApprovedForAll on {token} answered {str(result)[:80]!r}, not a 32-byte word (no such "
                       "contract on this chain?)")
    return int(result, 16) != 0


def share_approvals(contracts: Mapping[str, str], owner: str) -> dict[tuple[str, str], bool]:
    """(share contract, operator) -> approved for ``owner`` (the funder), by the names of ``LiveVenue.contracts()``:
    each kind's operators on its share contract and the auto-redeem operator on both. Raises RpcError (at the first
    failure: an unreachable node is not asked six times)."""
    if not _ADDRESS.match(owner or ""):
        raise RpcError(f"no funder address to ask about ({owner!r})")
    pairs = list(dict.fromkeys([(k.shares, op) for k in MARKET_KINDS for op in k.operators]
                               + [(t, "auto_redeem_operator") for t in SHARE_TOKENS]))
    rpc = contracts.get("rpc_url", "")
    if not rpc:
        raise RpcError("polymarket-client's config names no rpc_url")
    with requests.Session() as session:
        return {(token, op): is_approved_for_all(rpc, contracts[token], owner, contracts[op], session=session)
                for token, op in pairs}


def auto_redeem_approvals(venue: LiveVenue) -> dict[str, bool] | None:
    """Whether Polymarket's auto-redeem operator may redeem ``venue``'s winning positions, per share contract
    ({"conditional_tokens": V1 markets, "position_manager": Protocol V2 markets}); None when the Polygon RPC gave no
    answer."""
    contracts = venue.contracts()
    owner = venue.funder or ""
    try:
        with requests.Session() as session:
            return {t: is_approved_for_all(contracts["rpc_url"], contracts[t], owner,
                                           contracts["auto_redeem_operator"], session=session) for t in SHARE_TOKENS}
    except RpcError:
        return None


def auto_redeem_approved(venue: LiveVenue) -> bool | None:
    """True when winning positions of both kinds redeem by themselves (the auto-redeem operator is approved on the
    conditional tokens and on the PositionManager), False when not (then redeeming is by hand on polymarket.com, at
    least for one kind), None when unknown (the RPC gave no answer)."""
    approvals = auto_redeem_approvals(venue)
    return None if approvals is None else all(approvals.values())


def _safe_url(url: str) -> str:
    """``url`` without what may be a secret: user info, query, and path segments that look like an API key."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an invalid URL)"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    path = "/".join("..." if re.fullmatch(r"[A-Za-z0-9_-]{20,}", seg) else seg for seg in parts.path.split("/"))
    return f"{parts.scheme}://{host}{path}"


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
