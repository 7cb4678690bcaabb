"""HTTP front of the simulated exchange: the CLOB and Gamma APIs on 127.0.0.1, plus /_sim/ control.

Shapes, status codes and error strings follow the real venue: success is HTTP 200 only, errors are
``{"error": msg}``. Every non-/_sim request is counted by ``METHOD /path`` with ids collapsed
(Gamma's prefixed with ``GAMMA``); that count is the honest "API calls" figure. Faults (429/425/5xx or
delays) can be injected at a seeded rate.

Venue answers that can be switched on (off by default):
- refusals: ``POST /order`` answers HTTP 200 ``{"success": false, "orderID": null, "errorMsg": ...}`` and
  nothing happens (the next N posts, and/or at a seeded rate);
- sparse answers: a successful ``POST /order`` carries only ``success``, ``orderID``, ``errorMsg`` and
  ``status`` (no amounts, no trade ids), as the venue may answer;
- the matching engine's restart window (docs.polymarket.com trading/matching-engine, resources/error-codes):
  HTTP 425 on order posts and cancels while it restarts, then post-only mode, in which an order that is not
  post-only gets HTTP 503 ``{"error": "post-only mode: ...", "code": "post_only_mode",
  "retry_after_seconds": N}`` with a ``Retry-After`` header (in a ``POST /orders`` batch: a per-order
  element), while cancels and post-only orders are accepted. Times run on the engine's clock.

``POST /_sim/faults`` takes the HTTP faults above (``rate``, ``statuses``, ``paths``, ``delay_s``, ``seed``,
``after``; given together, they replace the previous HTTP faults; ``{}`` turns them off) and, in any
combination with them or alone (then the HTTP faults stay as they are), the venue's own sometimes-behaviours
(times on the engine's clock; sources in /work/shared/polymarket/FACTS.md):
- ``ghost_fills`` N, ``ghost_fail_s`` S (default 1): the next N executions with a user on either side match
  but settle nothing, and their trades turn FAILED S seconds later (FACTS.md Part 0, 0.2);
- ``forget_orders`` (default true): ``GET /data/order/{id}`` answers ``null`` for every order that is no
  longer LIVE or DELAYED; false answers every known order (FACTS.md Part 0, 0.3);
- ``balance_lock_s`` S: for S seconds every user order is refused with HTTP 400 ``not enough balance /
  allowance: the sum of matched orders exceeds the balance`` while ``GET /balance-allowance`` answers the
  true balances; 0 ends it (FACTS.md Part 0, 0.4);
- ``market_resolved_messages`` (default true): false sends no ``market_resolved`` on the market channel
  (FACTS.md Part 0, 0.5);
- ``delayed_uncancellable`` (default false): a cancel of a DELAYED order answers it in ``not_canceled``
  with ``cannot cancel because the order is in pending/delayed status`` (FACTS.md Part 0, 0.5);
- ``sell_answer_net`` (default false): a taker SELL's answer gives ``takingAmount`` net of the fee (whether the
  venue does is unknown: FACTS.md Part 0, 0.1).

Price history (FACTS.md Part 0, 0.7): ``GET /prices-history?market=<token>&startTs=&endTs=&fidelity=<minutes>`` (or
``&interval=``) answers ``{"history": [{"t", "p"}]}`` from the engine's record of each market's mid (engine.py,
``prices_history``), with the venue's limits: a startTs..endTs window over 15 days is refused (HTTP 400 ``'startTs' and
'endTs' interval is too long``), ``interval`` counts back from now and gives a resolved market nothing below 12-hour
fidelity. ``POST /_sim/history`` ``{"token_id", "points": [[t, p], ...]}`` loads a hand-made path. Gamma's
``/markets?closed=true`` lists the resolved markets (``outcomePrices`` the resolution, ``closedTime``).

Approvals (bot.sim.engine's ``Approvals``: per account, per contract; the contracts of polymarket-client's config,
polymarket/environments.py): ``GET /balance-allowance`` names a pUSD allowance per spender (the CTF exchange, the
neg-risk exchange, the neg-risk adapter, ExchangeV3); a new wallet has approved them all and every share operator,
but not the auto-redeem operator. ``POST /_sim/approvals`` ``{"address", "spender", "approved", "token"}`` sets one
(``spender``: an address or a contract name such as ``exchange_v3``, ``auto_redeem_operator``), ``GET
/_sim/approvals?address=`` reads them. ``POST /`` is the chain's JSON-RPC (the SDK config the bot builds for a
venue other than production sets ``rpc_url`` to the CLOB's URL: bot/venue/sdk.py ``_config``): ``eth_call`` of
``isApprovedForAll(owner, operator)`` on the conditional tokens and the PositionManager, ``allowance(owner,
spender)`` on pUSD, and ``eth_chainId``; single calls or batches.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from eth_utils import keccak, to_checksum_address

from bot.sim.auth import ApiKeys, AuthError, verify_l1, verify_order
from bot.sim.engine import (
    COLLATERAL_TOKEN,
    CONDITIONAL_TOKENS,
    MAX_UINT256,
    POSITION_MANAGER,
    Engine,
    SimMarket,
    SimReject,
    dec_str,
    is_v2_position_id,
)

#: The ``SimExchange`` (bot/sim/__init__.py) whose methods the /_sim/ routes call: it builds this module's server,
#: so this module names it without importing it (no import circle).
SimExchange = Any

BASE = Decimal(1_000_000)
MAX_BATCH_ORDERS = 15
REFUSAL_MESSAGE = "not enough balance / allowance"
POST_ONLY_MODE_MESSAGE = "post-only mode: only post-only orders and cancels are allowed"
MAX_ARRIVALS = 100_000   # order arrival times kept (the latest ones)
ORDER_POSTS = {("POST", "/order"), ("POST", "/orders")}
BALANCE_ASSET_TYPES = ("COLLATERAL", "CONDITIONAL", "CONDITIONAL-V2")   # FACTS.md Part 0, 0.8
HTTP_FAULT_KEYS = ("rate", "statuses", "paths", "delay_s", "seed", "after")
VENUE_FAULT_KEYS = ("ghost_fills", "ghost_fail_s", "forget_orders", "balance_lock_s", "market_resolved_messages",
                    "delayed_uncancellable", "sell_answer_net")
CANCELS = {("DELETE", "/order"), ("DELETE", "/orders"), ("DELETE", "/cancel-all"),
           ("DELETE", "/cancel-market-orders")}
FAULT_BODIES = {
    425: "the matching engine is restarting, please retry in a moment",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Trading is currently cancel-only. New orders are not accepted, but cancels are allowed.",
}
#: GET /prices-history (FACTS.md Part 0, 0.7, measured by others): a startTs..endTs window of at most 15 days, else
#: HTTP 400 with this text.
MAX_HISTORY_WINDOW_S = 15 * 86400
HISTORY_WINDOW_MESSAGE = "'startTs' and 'endTs' interval is too long"
#: ``interval`` values (FACTS.md Part 0, 0.7: max|all|1m|1w|1d|6h|1h) -> seconds back from now (None: everything).
#: "1m" is a month (FACTS.md: "``interval=1m`` (a month)"); taken as 30 days (an assumption: its exact span is not
#: recorded).
HISTORY_INTERVALS: dict[str, int | None] = {"max": None, "all": None, "1m": 30 * 86400, "1w": 7 * 86400,
                                            "1d": 86400, "6h": 6 * 3600, "1h": 3600}
#: FACTS.md Part 0, 0.7: "``interval=1m`` (a month) needs fidelity >= 10" (reported; the venue's refusal text is not
#: recorded: the one below is an assumption).
MIN_FIDELITY_1M = 10
#: py-clob-client issue 216 (FACTS.md Part 0, 0.7: resolved markets give empty history through ``interval``): a
#: resolved market's ``interval=max`` answered points at 12-hour fidelity and nothing finer.
RESOLVED_INTERVAL_MIN_FIDELITY = 12 * 60
#: JSON-RPC ``eth_call`` selectors the simulated chain answers (ERC-1155 ``isApprovedForAll``: 0xe985e9c5; ERC-20
#: ``allowance``: 0xdd62ed3e), as the unified SDK reads approvals (polymarket/_internal/actions/relayer/calls.py).
IS_APPROVED_FOR_ALL = keccak(text="isApprovedForAll(address,address)")[:4].hex()
ALLOWANCE = keccak(text="allowance(address,address)")[:4].hex()
CHAIN_ID = 137   # Polygon (polymarket/environments.py PRODUCTION chain_id)
_COLLAPSE = [
    (re.compile(r"^/data/order/[^/]+$"), "/data/order/{id}"),
    (re.compile(r"^/markets-by-token/[^/]+$"), "/markets-by-token/{token_id}"),
    (re.compile(r"^/clob-markets/[^/]+$"), "/clob-markets/{condition_id}"),
    (re.compile(r"^/markets/slug/[^/]+$"), "/markets/slug/{slug}"),
    (re.compile(r"^/markets/[^/]+$"), "/markets/{id}"),
]


class HttpError(Exception):
    def __init__(self, status: int, message: str, extra: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}


class PostOnlyMode(HttpError):
    """A non-post-only order while the engine is post-only after a restart (HTTP 503 on POST /order)."""

    def __init__(self, retry_after: int):
        super().__init__(503, POST_ONLY_MODE_MESSAGE, {"code": "post_only_mode", "retry_after_seconds": retry_after},
                         {"Retry-After": str(retry_after)})


def endpoint_key(method: str, path: str, gamma: bool = False) -> str:
    for pattern, name in _COLLAPSE:
        if pattern.match(path):
            path = name
            break
    return f"{'GAMMA ' if gamma else ''}{method} {path}"


def encode_cursor(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        value = int(base64.b64decode(cursor).decode())
    except Exception:
        raise HttpError(400, f"invalid next_cursor {cursor!r}") from None
    return value


def _num(value, what: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise HttpError(400, f"invalid {what}: {value!r}") from None


class SimState:
    """What the HTTP handlers share: engine, keys, counts, faults."""

    def __init__(self, engine: Engine, seed: int = 0, page_size: int = 500):
        self.engine = engine
        self.keys = ApiKeys(seed)
        self.page_size = page_size
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.faulted = 0
        self.faults: dict[str, Any] = {"rate": 0.0, "statuses": [429, 425, 500, 503], "paths": None, "delay_s": 0.0}
        self.fault_rng = random.Random(seed)
        self.makers: dict[str, str] = {}  # API-key address (signer) -> funder (maker) address
        self.refusals: dict[str, Any] = {"next": 0, "rate": 0.0, "message": REFUSAL_MESSAGE}
        self.refusal_rng = random.Random(seed)
        self.sparse_answers = False
        self.restart: tuple[float, float] | None = None  # (425 until, post-only until) on the engine's clock
        # The simulated chain's deposit wallets (lower case): wallet -> {"owner", "deployed"}; owner -> wallet.
        self.deposit_wallets: dict[str, dict] = {}
        self.wallet_of_owner: dict[str, str] = {}
        self.set_rate_limits(None)
        self.arrivals: OrderedDict[str, float] = OrderedDict()   # order id -> time.time() its post was read

    # -- HTTP 200 refusals ------------------------------------------------------------------------

    def set_refusals(self, next=0, rate=0.0, message=None, seed=None) -> None:  # noqa: A002
        with self.lock:
            self.refusals = {"next": int(next or 0), "rate": float(rate or 0), "message": message or REFUSAL_MESSAGE}
            if seed is not None:
                self.refusal_rng = random.Random(seed)

    def pick_refusal(self) -> str | None:
        """The errorMsg of a 200 refusal for this order post, or None to process it."""
        with self.lock:
            r = self.refusals
            if r["next"] > 0:
                r["next"] -= 1
            elif r["rate"] <= 0 or self.refusal_rng.random() >= r["rate"]:
                return None
            return r["message"]

    # -- the matching engine's restart window -----------------------------------------------------

    def restart_engine(self, seconds_425: float = 90, post_only_seconds: float = 120) -> dict:
        now = self.engine.clock.time()
        with self.lock:
            until_425 = now + float(seconds_425)
            self.restart = (until_425, until_425 + float(post_only_seconds))
        return {"restarting_until": self.restart[0], "post_only_until": self.restart[1]}

    def engine_phase(self) -> tuple[str, int]:
        """("restarting" | "post_only" | "normal", whole seconds until that phase ends)."""
        with self.lock:
            window = self.restart
        if window is None:
            return "normal", 0
        now = self.engine.clock.time()
        if now < window[0]:
            return "restarting", max(1, math.ceil(window[0] - now))
        if now < window[1]:
            return "post_only", max(1, math.ceil(window[1] - now))
        return "normal", 0

    # -- the venue's rate limits (off unless asked) -------------------------------------------------

    def set_rate_limits(self, limits: dict[str, tuple[int, float]] | None) -> None:
        """Enforce ``{"POST /orders": (count, window_s), ...}`` (keys as in request_counts) over sliding windows
        of the engine's clock, answering 429 beyond them; None turns them off."""
        with self.lock:
            self.rate_limits = {k: (int(n), float(w)) for k, (n, w) in (limits or {}).items()}
            self.rate_log: dict[str, deque[float]] = {k: deque() for k in self.rate_limits}
            self.rate_limited = 0

    def over_limit(self, key: str) -> bool:
        """True (and counted) when this request goes beyond its endpoint's limit."""
        with self.lock:
            limit = self.rate_limits.get(key)
            if limit is None:
                return False
            now, sent = self.engine.clock.time(), self.rate_log[key]
            while sent and sent[0] <= now - limit[1]:
                sent.popleft()
            if len(sent) >= limit[0]:
                self.rate_limited += 1
                return True
            sent.append(now)
            return False

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def request_counts(self) -> dict:
        with self.lock:
            return {"total": sum(self.counts.values()), "by_endpoint": dict(self.counts), "faults": self.faulted,
                    "rate_limited": self.rate_limited}

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.faulted = self.rate_limited = 0

    def set_faults(self, rate=0.0, statuses=None, paths=None, delay_s=0.0, seed=None, after=False) -> None:
        """``after``: the request is carried out and THEN answered with the fault (an answer lost on its way
        back: the order rests or traded although the client saw a 5xx)."""
        with self.lock:
            self.faults = {"rate": float(rate), "statuses": list(statuses or [429, 425, 500, 503]),
                           "paths": list(paths) if paths else None, "delay_s": float(delay_s or 0),
                           "after": bool(after)}
            if seed is not None:
                self.fault_rng = random.Random(seed)

    def pick_fault(self, path: str):
        """(status or None, delay) for this request, by the configured rate."""
        with self.lock:
            f = self.faults
            if f["rate"] <= 0 or (f["paths"] and not any(path.startswith(p) for p in f["paths"])):
                return None, 0.0
            if self.fault_rng.random() >= f["rate"]:
                return None, 0.0
            self.faulted += 1
            if f["delay_s"] > 0 and not f["statuses"]:
                return None, f["delay_s"]
            return self.fault_rng.choice(f["statuses"]), f["delay_s"]

    def add_deposit_wallet(self, wallet: str, owner: str, deployed: bool) -> None:
        with self.lock:
            rec = self.deposit_wallets.setdefault(wallet.lower(), {"owner": owner.lower(), "deployed": False})
            rec["deployed"] = rec["deployed"] or bool(deployed)
            self.wallet_of_owner[owner.lower()] = wallet.lower()

    def deploy_deposit_wallet(self, wallet: str) -> None:
        with self.lock:
            rec = self.deposit_wallets.get(wallet.lower())
            if rec is None:
                raise ValueError(f"no deposit wallet {wallet}: create it with new_deposit_wallet first")
            rec["deployed"] = True

    def deployed_wallets(self) -> set[str]:
        with self.lock:
            return {w for w, rec in self.deposit_wallets.items() if rec["deployed"]}

    def is_deployed(self, address: str) -> bool:
        with self.lock:
            rec = self.deposit_wallets.get(address.lower())
            return bool(rec and rec["deployed"])

    # -- order arrival times (the latency benchmark: book change -> order at the venue) ---------------

    def record_arrival(self, order_id: str, arrived: float) -> None:
        with self.lock:
            self.arrivals[order_id] = arrived
            self.arrivals.move_to_end(order_id)
            while len(self.arrivals) > MAX_ARRIVALS:
                self.arrivals.popitem(last=False)

    def order_arrivals(self) -> dict[str, float]:
        with self.lock:
            return dict(self.arrivals)

    def clear_order_arrivals(self) -> None:
        with self.lock:
            self.arrivals.clear()

    def accounts_of_owner(self, address: str) -> set[str]:
        """Every account (lower case) an API key's EOA trades from: itself, the funder (maker) of its orders,
        its deposit wallet. The user channel sends the events of their orders."""
        owner = address.lower()
        return {a for a in (owner, self.makers.get(owner), self.wallet_of_owner.get(owner)) if a}

    def account_of(self, key_record: dict, signature_type=None) -> str:
        """The account (funder) an L2 request acts for: the maker of the key's orders; for a key whose
        owner has a deposit wallet, that wallet when the request says signature_type 3 (balance reads do),
        or before the key's first order."""
        owner = key_record["address"]
        wallet = self.wallet_of_owner.get(owner)
        if wallet and (str(signature_type) == "3" or (signature_type is None and owner not in self.makers)):
            return wallet
        return self.makers.get(owner, owner)


# ---------------------------------------------------------------------------------------------------
# JSON views shared with the Python control API


def market_info_json(m: SimMarket) -> dict:
    """``GET /clob-markets/{condition_id}``: the market's outcome ids in ``t`` are the ids its orders carry, the
    position ids of a Protocol V2 market (FACTS.md Part 0, 0.8)."""
    tokens = [{"t": m.token_ids[0], "o": m.outcomes[0]}, {"t": m.token_ids[1], "o": m.outcomes[1]}]
    info = {"c": m.condition_id, "t": tokens,
            "mts": float(m.tick_size), "mos": float(m.min_order_size),
            "fd": {"r": float(m.fee_rate), "e": m.fee_exponent, "to": True}, "mbf": 0, "tbf": 0, "rfqe": False,
            "ibce": False, "oas": 0, "gst": None, "r": {}}
    if m.neg_risk:
        info["nr"] = True  # the venue omits it when false
    return info


def _decoy_ids(m: SimMarket) -> list[str]:
    """What a Protocol V2 market's ``clobTokenIds`` hold here: CTF-shaped token ids the CLOB does not trade for it
    (FACTS.md Part 0, 0.8: "choose the ID field by version, even when both fields are present"; existing CTF
    holdings are not converted), so a client that reads the wrong field is caught at once. Hashes of the position
    ids (251 bits, never V2-shaped, so the unified SDK takes them for V1 ids)."""
    decoys = []
    for token in m.token_ids:
        seed, value = token, 0
        while value == 0 or is_v2_position_id(value):
            seed = hashlib.sha256(f"ctf-decoy-{seed}".encode()).hexdigest()
            value = int(seed, 16) >> 5 | (1 << 250)
        decoys.append(str(value))
    return decoys


def gamma_market_json(engine: Engine, m: SimMarket) -> dict:
    yes, no = m.token_ids
    bid, ask = engine.best_bid(yes), engine.best_ask(yes)
    yes_price = engine.midpoint(yes) or m.yes_mid
    if m.closed and m.winner:
        yes_price = Decimal(1) if m.winner.lower() == m.outcomes[0].lower() else Decimal(0)
    liquidity = Decimal(0)
    for token in m.token_ids:
        book = engine.book(token)
        liquidity += sum((Decimal(lv["price"]) * Decimal(lv["size"]) for lv in book["bids"] + book["asks"]), Decimal(0))
    iso = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    return {
        "id": m.id, "question": m.question, "conditionId": m.condition_id, "slug": m.slug,
        "endDate": iso(m.end_date), "startDate": iso(m.start_date), "endDateIso": m.end_date.strftime("%Y-%m-%d"),
        "startDateIso": m.start_date.strftime("%Y-%m-%d"),
        "liquidity": dec_str(liquidity.quantize(Decimal("0.0001"))), "volume": dec_str(m.volume),
        "outcomes": json.dumps(list(m.outcomes)),
        "outcomePrices": json.dumps([dec_str(yes_price), dec_str(Decimal(1) - yes_price)]),
        "clobTokenIds": json.dumps([yes, no] if not m.is_v2 else _decoy_ids(m)), "active": True,
        "closed": m.closed, "archived": False,
        "acceptingOrders": m.accepting_orders, "enableOrderBook": True, "questionID": m.question_id,
        "liquidityNum": float(liquidity), "volumeNum": float(m.volume), "volume24hr": float(m.volume),
        "bestBid": float(bid) if bid is not None else None, "bestAsk": float(ask) if ask is not None else None,
        "spread": float(ask - bid) if bid is not None and ask is not None else None,
        "lastTradePrice": float(engine.last_trade_price(yes)),
        "orderPriceMinTickSize": float(m.tick_size),
        "orderMinSize": int(m.min_order_size) if m.min_order_size == int(m.min_order_size) else float(m.min_order_size),
        "negRisk": m.neg_risk, "makerBaseFee": 0, "takerBaseFee": 0, "feesEnabled": m.fee_rate > 0,
        **({"secondsDelay": int(m.seconds_delay) if m.seconds_delay == int(m.seconds_delay) else m.seconds_delay}
           if m.seconds_delay > 0 else {}),
        **({"version": m.version} if m.version is not None else {}),
        **({"positionIds": [yes, no]} if m.is_v2 else {}),   # FACTS.md Part 0, 0.8: "v2" -> positionIds
        # A resolved market: when it closed and that it resolved, in the shapes of the recorded closed markets
        # (recorded/http/gamma_market_closed_binary_accepting_false.json: "closedTime": "2026-03-19 23:20:15+00",
        # "umaResolutionStatus": "resolved"); its outcomePrices above are the resolution (["1", "0"] or ["0", "1"]).
        **({"closedTime": datetime.fromtimestamp(m.closed_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S+00"),
            "umaResolutionStatus": "resolved"} if m.closed and m.closed_at is not None else {}),
    }


GAMMA_ORDER_FIELDS = {"volumeNum", "volume24hr", "liquidityNum", "endDate", "startDate", "id"}


# ---------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "bot-sim/1"
    sim: SimState  # set on the subclass per server
    gamma = False
    arrived = 0.0  # time.time() when the current request had been read (order arrival times)

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def sim_server(self) -> SimHTTPServer:
        """The server this request came to (make_server's, which knows the SimExchange it serves)."""
        if not isinstance(self.server, SimHTTPServer):
            raise TypeError(f"handler served by {type(self.server).__name__}, not make_server's SimHTTPServer")
        return self.server

    # -- plumbing ---------------------------------------------------------------------------------

    def _send(self, status: int, payload, headers: dict | None = None) -> None:
        self._send_raw(status, json.dumps(payload, separators=(",", ":")).encode(), "application/json", headers)

    def _send_raw(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        path = url.path.rstrip("/") or "/"
        query = {k: v for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self._body()
        self.arrived = time.time()
        try:
            if path.startswith("/_sim"):
                self._send(200, self._control(method, path, query, raw))
                return
            key = endpoint_key(method, path, self.gamma)
            self.sim.count(key)
            if self.sim.over_limit(key):
                raise HttpError(429, FAULT_BODIES[429])
            status, delay = self.sim.pick_fault(path)
            if delay:
                time.sleep(delay)
            lost_answer = status is not None and self.sim.faults.get("after")
            if status is not None and not lost_answer:
                raise HttpError(status, FAULT_BODIES.get(status, "error"))
            if not self.gamma and ((method, path) in ORDER_POSTS or (method, path) in CANCELS):
                phase, left = self.sim.engine_phase()
                if phase == "restarting":
                    raise HttpError(425, FAULT_BODIES[425], headers={"Retry-After": str(left)})
            self.sim.engine.advance()
            result = self._gamma(method, path, query) if self.gamma else self._clob(method, path, query, raw)
            if lost_answer and status == 200:   # carried out, answered with a body no client can parse
                self._send_raw(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
                return
            if lost_answer:
                raise HttpError(status, FAULT_BODIES.get(status, "error"))
            self._send(200, result)
        except HttpError as exc:
            self._send(exc.status, {"error": exc.message, **exc.extra}, exc.headers)
        except AuthError as exc:
            self._send(exc.status, {"error": exc.message})
        except SimReject as exc:
            body = {"error": exc.message}
            if exc.order_id:
                body["orderID"] = exc.order_id
            self._send(exc.status, body)
        except Exception as exc:  # a simulator bug must not hang the client
            self._send(500, {"error": f"sim internal error: {type(exc).__name__}: {exc}"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _q(query: dict, name: str, default=None):
        values = query.get(name)
        return unquote(values[0]) if values else default

    def _json(self, raw: bytes):
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise HttpError(400, "invalid JSON body") from None

    def _l2(self, method: str, path: str, raw: bytes) -> dict:
        return self.sim.keys.verify_l2(self.headers, method, path, raw)

    def _market_of_token(self, token_id: str | None) -> SimMarket:
        m = self.sim.engine.market_by_token(token_id) if token_id else None
        if m is None:
            raise HttpError(404, "market not found" if token_id else "Invalid token id")
        return m

    def _page(self, items: list, query: dict) -> dict:
        start = decode_cursor(self._q(query, "next_cursor"))
        if start < 0:
            start = len(items)
        size = self.sim.page_size
        chunk = items[start:start + size]
        end = start + size
        return {"data": chunk, "next_cursor": encode_cursor(end) if end < len(items) else "LTE=",
                "limit": size, "count": len(chunk)}

    # -- CLOB -------------------------------------------------------------------------------------

    def _clob(self, method: str, path: str, query: dict, raw: bytes):
        e = self.sim.engine
        route = (method, path)
        if route == ("GET", "/ok") or route == ("GET", "/"):
            return "OK"
        if route == ("GET", "/time"):
            return int(e.clock.time())
        if route == ("GET", "/version"):
            return {"version": 2}
        if route == ("POST", "/auth/api-key") or route == ("GET", "/auth/derive-api-key"):
            address, nonce = verify_l1(self.headers)
            return self.sim.keys.creds_for(address, nonce)
        if route == ("GET", "/tick-size"):
            return {"minimum_tick_size": float(self._market_of_token(self._q(query, "token_id")).tick_size)}
        if route == ("GET", "/neg-risk"):
            return {"neg_risk": self._market_of_token(self._q(query, "token_id")).neg_risk}
        if route == ("GET", "/fee-rate"):
            m = self._market_of_token(self._q(query, "token_id"))
            return {"base_fee": int(m.fee_rate_bps) if m.fee_rate_bps.isdigit() else 0}
        if method == "GET" and path.startswith("/markets-by-token/"):
            m = self._market_of_token(path.rsplit("/", 1)[1])
            return {"condition_id": m.condition_id, "primary_token_id": m.token_ids[0],
                    "secondary_token_id": m.token_ids[1]}
        if method == "GET" and path.startswith("/clob-markets/"):
            market = e.market_by_condition(path.rsplit("/", 1)[1])
            if market is None:
                raise HttpError(404, "market not found")
            return market_info_json(market)
        if route == ("GET", "/book"):
            token = self._q(query, "token_id")
            self._market_of_token(token)
            return e.book(token)
        if route == ("POST", "/books"):
            body = self._json(raw) or []
            if not isinstance(body, list):
                raise HttpError(400, "invalid payload: expected a list of {token_id}")
            return [e.book(str(p.get("token_id"))) for p in body
                    if isinstance(p, dict) and e.market_by_token(str(p.get("token_id")))]
        if route == ("GET", "/midpoint"):
            token = self._q(query, "token_id")
            self._market_of_token(token)
            mid = e.midpoint(token)
            return {"mid": dec_str(mid) if mid is not None else None}
        if route == ("POST", "/midpoints"):
            mids: dict[str, str | None] = {}
            for p in self._json(raw) or []:
                token = str(p.get("token_id"))
                if e.market_by_token(token):
                    mid = e.midpoint(token)
                    mids[token] = dec_str(mid) if mid is not None else None
            return mids
        if route == ("GET", "/price"):
            token, side = self._q(query, "token_id"), str(self._q(query, "side", "")).upper()
            self._market_of_token(token)
            if side not in ("BUY", "SELL"):
                raise HttpError(400, "invalid side")
            price = e.best_bid(token) if side == "BUY" else e.best_ask(token)
            return {"price": dec_str(price) if price is not None else None}
        if route == ("POST", "/prices"):
            prices: dict[str, dict[str, str | None]] = {}
            for p in self._json(raw) or []:
                token = str(p.get("token_id"))
                if e.market_by_token(token):
                    side = str(p.get("side", "BUY")).upper()
                    price = e.best_bid(token) if side == "BUY" else e.best_ask(token)
                    prices.setdefault(token, {})[side] = dec_str(price) if price is not None else None
            return prices
        if route == ("GET", "/spread"):
            token = self._q(query, "token_id")
            self._market_of_token(token)
            bid, ask = e.best_bid(token), e.best_ask(token)
            return {"spread": dec_str(ask - bid) if bid is not None and ask is not None else None}
        if route == ("GET", "/prices-history"):
            return self._prices_history(query)
        if route == ("GET", "/last-trade-price"):
            token = self._q(query, "token_id")
            self._market_of_token(token)
            return {"price": dec_str(e.last_trade_price(token)), "side": "BUY"}
        if route == ("POST", "/order"):
            rec = self._l2(method, path, raw)
            return self._post_order(rec, self._json(raw))
        if route == ("POST", "/orders"):
            rec = self._l2(method, path, raw)
            body = self._json(raw)
            if not isinstance(body, list):
                raise HttpError(400, "invalid payload: expected a list of orders")
            if len(body) > MAX_BATCH_ORDERS:
                raise HttpError(400, f"Too many orders in payload: {len(body)}, max allowed: {MAX_BATCH_ORDERS}")
            results = []
            for envelope in body:
                try:
                    results.append(self._post_order(rec, envelope))
                except PostOnlyMode as exc:   # documented per-order element (success true, no order id)
                    results.append({"errorMsg": exc.message, "orderID": "", "takingAmount": "", "makingAmount": "",
                                    "status": "", "success": True})
                except (SimReject, AuthError, HttpError) as exc:
                    results.append({"success": False, "errorMsg": exc.message, "orderID": getattr(exc, "order_id", "")
                                    or "", "status": "", "makingAmount": "", "takingAmount": "",
                                    "transactionsHashes": [], "tradeIDs": []})
            return results
        if route == ("DELETE", "/order"):
            rec = self._l2(method, path, raw)
            body = self._json(raw) or {}
            oid = body.get("orderID") or body.get("orderId")
            if not oid:
                raise HttpError(400, "invalid payload: orderID is required")
            return e.cancel(self.sim.account_of(rec), [str(oid)])
        if route == ("DELETE", "/orders"):
            rec = self._l2(method, path, raw)
            body = self._json(raw) or []
            if not isinstance(body, list):
                raise HttpError(400, "invalid payload: expected a list of order ids")
            return e.cancel(self.sim.account_of(rec), [str(x) for x in body])
        if route == ("DELETE", "/cancel-all"):
            rec = self._l2(method, path, raw)
            return e.cancel_all(self.sim.account_of(rec))
        if route == ("DELETE", "/cancel-market-orders"):
            rec = self._l2(method, path, raw)
            body = self._json(raw) or {}
            return e.cancel_market(self.sim.account_of(rec), body.get("market"), body.get("asset_id"))
        if method == "GET" and path.startswith("/data/order/"):
            rec = self._l2(method, path, raw)
            oid = path.rsplit("/", 1)[1]
            view = e.order_view(oid)
            if view is None or e.order_account(oid) != self.sim.account_of(rec):
                return None
            return view
        if route == ("GET", "/data/orders"):
            rec = self._l2(method, path, raw)
            orders = e.open_orders(self.sim.account_of(rec), market=self._q(query, "market"),
                                   asset_id=self._q(query, "asset_id"), order_id=self._q(query, "id"))
            return self._page(orders, query)
        if route == ("GET", "/data/trades"):
            rec = self._l2(method, path, raw)
            trades = e.trades(self.sim.account_of(rec), trade_id=self._q(query, "id"), market=self._q(query, "market"),
                              asset_id=self._q(query, "asset_id"), after=self._q(query, "after"),
                              before=self._q(query, "before"))
            return self._page(trades, query)
        if route in (("GET", "/balance-allowance"), ("GET", "/balance-allowance/update")):
            rec = self._l2(method, path, raw)
            if path.endswith("/update"):
                return None
            return self._balance_allowance(rec, query)
        if route == ("GET", "/deployed"):   # Polymarket's relayer (relayer-v2), served here too
            address = self._q(query, "address")
            if not address:
                raise HttpError(400, "address is required")
            return {"deployed": self.sim.is_deployed(address)}
        if route == ("POST", "/v1/heartbeats"):
            self._l2(method, path, raw)
            return {"heartbeat_id": str(uuid.uuid4())}
        if route == ("POST", "/"):   # the chain's JSON-RPC (see the module doc)
            return self._json_rpc(raw)
        raise HttpError(404, f"no route for {method} {path}")

    # -- price history ------------------------------------------------------------------------------

    def _int_param(self, query: dict, name: str) -> int | None:
        raw = self._q(query, name)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            # (The venue's wording for a malformed number is not recorded: an assumption.)
            raise HttpError(400, f"invalid {name}: {raw!r}, expected an integer") from None

    def _prices_history(self, query: dict) -> dict:
        """``GET /prices-history`` (FACTS.md Part 0, 0.7): ``market`` (a token id), then either ``startTs`` and
        ``endTs`` (unix seconds; a window over 15 days is refused with HTTP 400 ``'startTs' and 'endTs' interval is
        too long``) or ``interval`` (counted back from now); ``fidelity`` in minutes, 1 by default (docs.polymarket.com
        api-reference/markets/get-prices-history: "Default is 1 minute"). Answers ``{"history": [{"t": unix seconds,
        "p": price}]}``, ``p`` the token's mid forward-filled (engine ``prices_history``)."""
        e = self.sim.engine
        token = self._q(query, "market")
        if not token:   # (the venue's answer without a market is not recorded: an assumption)
            raise HttpError(400, "market is required")
        fidelity = self._int_param(query, "fidelity")
        fidelity = 1 if fidelity is None else fidelity
        if fidelity < 1:   # (assumption: the venue's answer to fidelity 0 or below is not recorded)
            raise HttpError(400, f"invalid fidelity: {fidelity}, expected a whole number of minutes >= 1")
        start, end = self._int_param(query, "startTs"), self._int_param(query, "endTs")
        interval = self._q(query, "interval")
        now = int(e.clock.time())
        # (Assumption: a window given by startTs/endTs takes precedence over an interval; not recorded.)
        if start is not None or end is not None:
            if start is None:   # (assumption: not recorded)
                raise HttpError(400, "startTs is required with endTs")
            end = now if end is None else end
            if end - start > MAX_HISTORY_WINDOW_S:   # FACTS.md Part 0, 0.7
                raise HttpError(400, HISTORY_WINDOW_MESSAGE)
            if end < start:   # (assumption: not recorded)
                raise HttpError(400, "'startTs' must not be after 'endTs'")
        elif interval:
            if interval not in HISTORY_INTERVALS:   # (the refusal's wording is an assumption)
                raise HttpError(400, f"invalid interval {interval!r}: expected one of {', '.join(HISTORY_INTERVALS)}")
            if interval == "1m" and fidelity < MIN_FIDELITY_1M:   # FACTS.md Part 0, 0.7 (wording: assumption)
                raise HttpError(400, f"invalid fidelity {fidelity} for interval 1m: at least {MIN_FIDELITY_1M}")
            span = HISTORY_INTERVALS[interval]
            start, end = (0 if span is None else now - span), now   # counts back from now (FACTS.md Part 0, 0.7)
            market = e.market_by_token(token)
            if market is not None and market.closed and fidelity < RESOLVED_INTERVAL_MIN_FIDELITY:
                return {"history": []}   # py-clob-client issues 189, 216 (FACTS.md Part 0, 0.7)
        else:   # (assumption: the venue's answer without either is not recorded)
            raise HttpError(400, "startTs and endTs, or interval, are required")
        points = e.prices_history(token, start, end, fidelity)
        # A token the venue does not know: {"history": []}, an assumption (no recorded answer for an unknown token;
        # the venue answers an empty history, HTTP 200, for tokens it has nothing for: py-clob-client issue 189).
        return {"history": [{"t": t, "p": float(p)} for t, p in points or ()]}

    # -- the chain's JSON-RPC (approvals only) ------------------------------------------------------

    def _json_rpc(self, raw: bytes):
        """A JSON-RPC 2.0 request or batch (the SDK's approval reads send ``eth_call`` batches); errors are JSON-RPC
        errors in an HTTP 200, as a node answers them."""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return _rpc_error(None, -32700, "parse error")
        if isinstance(body, list):
            return [self._rpc_call(call) for call in body] if body else _rpc_error(None, -32600, "empty batch")
        return self._rpc_call(body)

    def _rpc_call(self, call) -> dict:
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return _rpc_error(call.get("id") if isinstance(call, dict) else None, -32600, "invalid request")
        rid, method, params = call.get("id"), call["method"], call.get("params") or []
        if method == "eth_chainId":
            return {"jsonrpc": "2.0", "id": rid, "result": hex(CHAIN_ID)}
        if method != "eth_call":
            return _rpc_error(rid, -32601, f"the method {method} does not exist/is not available")
        try:
            tx = params[0]
            to = to_checksum_address(str(tx["to"]))
            data = str(tx.get("data") or tx.get("input") or "").removeprefix("0x").lower()
            words = [data[8 + i:8 + i + 64] for i in range(0, len(data) - 8, 64)]
            args = [to_checksum_address("0x" + w[24:]) for w in words[:2]] if len(words) >= 2 else []
        except (IndexError, KeyError, TypeError, ValueError, AttributeError):
            return _rpc_error(rid, -32602, "invalid params: expected [{\"to\", \"data\"}, block]")
        approvals = self.sim.engine.approvals
        if data[:8] == IS_APPROVED_FOR_ALL and to in (CONDITIONAL_TOKENS, POSITION_MANAGER) and args:
            value = int(approvals.approved(args[0], to, args[1]))
        elif data[:8] == ALLOWANCE and to == COLLATERAL_TOKEN and args:
            value = MAX_UINT256 if approvals.approved(args[0], to, args[1]) else 0
        else:
            return _rpc_error(rid, 3, "execution reverted (the simulated chain answers isApprovedForAll on the "
                                      "conditional tokens and the PositionManager, and allowance on pUSD)")
        return {"jsonrpc": "2.0", "id": rid, "result": "0x" + format(value, "064x")}

    def _balance_allowance(self, rec: dict, query: dict) -> dict:
        """``GET /balance-allowance``. ``asset_type`` COLLATERAL (pUSD), CONDITIONAL (a CTF token: V1 markets) or
        CONDITIONAL-V2 (a position of the PositionManager: Protocol V2 markets; FACTS.md Part 0, 0.8: "CLOB
        balance/allowance for V2 positions uses CONDITIONAL-V2"). The two kinds of holdings are apart, as their
        contracts are: CONDITIONAL for a V2 position id, or CONDITIONAL-V2 for a V1 token id, answers 0 ("existing
        CTF holdings are not converted"). Allowances name each spender, set or not per account (engine.Approvals)."""
        e = self.sim.engine
        asset_type = str(self._q(query, "asset_type", "COLLATERAL")).upper()
        if asset_type not in BALANCE_ASSET_TYPES:
            raise HttpError(400, f"invalid asset_type {asset_type!r}: expected one of {', '.join(BALANCE_ASSET_TYPES)}")
        token = self._q(query, "token_id")
        if asset_type != "COLLATERAL" and not token:
            raise HttpError(400, f"token_id is required for {asset_type} balances")
        acct = self.sim.account_of(rec, self._q(query, "signature_type"))
        if asset_type == "COLLATERAL":
            bal = e.balance(acct, "COLLATERAL")
        else:
            market = e.market_by_token(token)
            v2 = market.is_v2 if market is not None else is_v2_position_id(token)
            bal = e.balance(acct, token) if v2 == (asset_type == "CONDITIONAL-V2") else Decimal(0)
        # One pUSD allowance per spender (FACTS.md Part 2, get_balance_allowance: "allowances": {"<exchange>",
        # "<negrisk exchange>", "<negrisk adapter>"}; ExchangeV3 too, FACTS.md Part 0, 0.8), whatever the asset type,
        # as before (what the venue lists for CONDITIONAL/CONDITIONAL-V2 is not recorded).
        allowances = {spender: str(MAX_UINT256) if ok else "0"
                      for spender, ok in e.approvals.collateral_allowances(acct).items()}
        return {"balance": str(int((bal * BASE).to_integral_value(rounding="ROUND_DOWN"))), "allowances": allowances}

    def _post_order(self, rec: dict, envelope) -> dict:
        e = self.sim.engine
        if not isinstance(envelope, dict) or not isinstance(envelope.get("order"), dict):
            raise HttpError(400, "invalid payload: expected {order, owner, orderType}")
        order = envelope["order"]
        if envelope.get("owner") != rec["apiKey"]:
            raise HttpError(400, "the order owner has to be the owner of the API KEY")
        market = e.market_by_token(str(order.get("tokenId")))
        if market is None:
            raise HttpError(400, "Invalid token id")
        # Signed for the domain of the market's kind (FACTS.md Part 0, 0.8): ExchangeV3 "3" for a V2 market.
        order_id = verify_order(order, market.neg_risk, rec["address"], deployed_wallets=self.sim.deployed_wallets(),
                                v2=market.is_v2)
        self.sim.record_arrival(order_id, self.arrived)
        phase, left = self.sim.engine_phase()
        if phase == "post_only" and not envelope.get("postOnly"):
            raise PostOnlyMode(left)
        refusal = self.sim.pick_refusal()
        if refusal is not None:   # the venue's HTTP 200 refusal: nothing is created
            return {"success": False, "orderID": None, "errorMsg": refusal, "status": ""}
        maker = str(order["maker"]).lower()
        self.sim.makers.setdefault(rec["address"], maker)
        try:
            maker_amount = Decimal(int(order["makerAmount"])) / BASE
            taker_amount = Decimal(int(order["takerAmount"])) / BASE
            expiration = int(order.get("expiration") or 0)
        except (TypeError, ValueError):
            raise HttpError(400, "invalid amounts") from None
        answer = e.place_order(order_id=order_id, owner=rec["apiKey"], account=maker,
                               token_id=str(order["tokenId"]), side=str(order["side"]), maker_amount=maker_amount,
                               taker_amount=taker_amount, order_type=str(envelope.get("orderType", "GTC")),
                               post_only=bool(envelope.get("postOnly", False)), expiration=expiration)
        if self.sim.sparse_answers:
            answer = {k: answer[k] for k in ("success", "orderID", "errorMsg", "status")}
        return answer

    # -- Gamma ------------------------------------------------------------------------------------

    def _gamma(self, method: str, path: str, query: dict):
        e = self.sim.engine
        if method != "GET":
            raise HttpError(405, "method not allowed")
        if path == "/markets":
            return self._gamma_list(query)
        if path.startswith("/markets/slug/"):
            m = e.market_by_slug(path.rsplit("/", 1)[1])
        elif path.startswith("/markets/"):
            m = e.market_by_id(path.rsplit("/", 1)[1])
        else:
            raise HttpError(404, "not found")
        if m is None:
            raise HttpError(404, "market not found")
        return gamma_market_json(e, m)

    def _gamma_list(self, query: dict) -> list:
        e = self.sim.engine
        q = lambda name, default=None: self._q(query, name, default)  # noqa: E731
        try:
            limit = int(q("limit", 100))
            offset = int(q("offset", 0))
        except ValueError:
            raise HttpError(422, "limit and offset must be integers") from None
        order = q("order")
        if order and any(f not in GAMMA_ORDER_FIELDS for f in order.split(",")):
            raise HttpError(422, "order fields are not valid", {"type": "validation error"})
        closed = q("closed", "false").lower() == "true"
        markets = [gamma_market_json(e, m) for m in e.markets()]
        out = []
        ids = set(query.get("id", []))
        tokens = set(query.get("clob_token_ids", []))
        conds = set(query.get("condition_ids", []))
        for m in markets:
            if m["closed"] != closed:
                continue
            if q("active") == "false":
                continue
            if ids and m["id"] not in ids:
                continue
            if q("slug") and m["slug"] != q("slug"):
                continue
            if tokens and not tokens & set(json.loads(m["clobTokenIds"])):
                continue
            if conds and m["conditionId"] not in conds:
                continue
            if not self._in_range(m["liquidityNum"], q("liquidity_num_min"), q("liquidity_num_max")):
                continue
            if not self._in_range(m["volumeNum"], q("volume_num_min"), q("volume_num_max")):
                continue
            if q("end_date_min") and m["endDate"] < self._iso(q("end_date_min")):
                continue
            if q("end_date_max") and m["endDate"] > self._iso(q("end_date_max")):
                continue
            out.append(m)
        if order:
            field = order.split(",")[0]
            asc = q("ascending", "false").lower() == "true"
            out.sort(key=lambda m: (m.get(field) is None, m.get(field) or 0), reverse=not asc)
        return out[offset:offset + limit]

    @staticmethod
    def _in_range(value, low, high) -> bool:
        if low is not None and value < float(low):
            return False
        if high is not None and value > float(high):
            return False
        return True

    @staticmethod
    def _iso(text: str) -> str:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- control ----------------------------------------------------------------------------------

    @staticmethod
    def _set_faults(ctl: SimExchange, body) -> None:
        """``POST /_sim/faults`` (see the module doc): HTTP faults and venue behaviours, in any combination."""
        if not isinstance(body, dict):
            raise HttpError(400, "invalid payload: expected an object")
        unknown = sorted(set(body) - set(HTTP_FAULT_KEYS) - set(VENUE_FAULT_KEYS))
        if unknown:
            raise HttpError(400, f"unknown fault keys: {', '.join(unknown)}")
        if "ghost_fail_s" in body and "ghost_fills" not in body:
            raise HttpError(400, "ghost_fail_s goes with ghost_fills")
        try:
            if not any(k in body for k in VENUE_FAULT_KEYS) or any(k in body for k in HTTP_FAULT_KEYS):
                ctl.set_faults(**{k: body[k] for k in HTTP_FAULT_KEYS if k in body})
            if "ghost_fills" in body:
                ctl.ghost_fills(int(body["ghost_fills"]), float(body.get("ghost_fail_s", 1.0)))
            if "balance_lock_s" in body:
                ctl.balance_lock(float(body["balance_lock_s"]))
            for key in ("forget_orders", "market_resolved_messages", "delayed_uncancellable", "sell_answer_net"):
                if key in body:
                    if not isinstance(body[key], bool):
                        raise HttpError(400, f"{key} must be true or false")
                    getattr(ctl, key)(body[key])
        except (TypeError, ValueError) as exc:
            raise HttpError(400, f"invalid fault settings: {exc}") from None

    def _control(self, method: str, path: str, query: dict, raw: bytes):
        ctl = self.sim_server.control
        body = self._json(raw) or {}
        route = (method, path)
        if route == ("POST", "/_sim/markets"):
            if "question" not in body:
                raise HttpError(400, "question is required")
            return ctl.create_market(**body)
        if route == ("POST", "/_sim/fund"):
            ctl.fund(body["address"], usdc=body.get("usdc"), token_id=body.get("token_id"), shares=body.get("shares"),
                     allowance=body.get("allowance"))
            return {"ok": True}
        if route == ("GET", "/_sim/balances"):
            return ctl.balances(self._q(query, "address"))
        if route == ("POST", "/_sim/book"):
            ctl.set_book(body["token_id"], body.get("bids", []), body.get("asks", []))
            return {"ok": True}
        if route == ("POST", "/_sim/price"):
            ctl.set_price(body["token_id"], body["price"])
            return {"ok": True}
        if route == ("POST", "/_sim/history"):
            if "token_id" not in body or not isinstance(body.get("points"), list):
                raise HttpError(400, "token_id and points (a list of [unix seconds, price]) are required")
            return ctl.record_history(body["token_id"], body["points"])
        if route == ("POST", "/_sim/resolve"):
            ctl.resolve(body["condition_id"], body["winner"])
            return {"ok": True}
        if route == ("POST", "/_sim/faults"):
            self._set_faults(ctl, body)
            return {"ok": True}
        if route == ("POST", "/_sim/market-options"):
            if "market" not in body:
                raise HttpError(400, "market is required")
            return ctl.set_market_options(**body)
        if route == ("POST", "/_sim/refusals"):
            ctl.refuse_orders(**body)
            return {"ok": True}
        if route == ("POST", "/_sim/sparse-answers"):
            ctl.set_sparse_answers(body.get("on", True))
            return {"ok": True}
        if route == ("POST", "/_sim/restart"):
            return ctl.restart_engine(**body)
        if route == ("GET", "/_sim/restart"):
            return ctl.engine_phase()
        if route == ("POST", "/_sim/advance"):
            ctl.advance()
            return {"ok": True}
        if route == ("POST", "/_sim/deposit_wallets"):
            if "owner" not in body:
                raise HttpError(400, "owner is required")
            try:
                return ctl.new_deposit_wallet(body["owner"], deployed=body.get("deployed", True))
            except ValueError as exc:
                raise HttpError(400, f"invalid owner: {exc}") from None
        if route == ("POST", "/_sim/deposit_wallets/deploy"):
            try:
                ctl.deploy_deposit_wallet(body["address"])
            except ValueError as exc:
                raise HttpError(404, str(exc)) from None
            return {"ok": True}
        if route in (("POST", "/_sim/feeds/drop"), ("POST", "/_sim/feeds/silence")):
            try:
                (ctl.drop_feeds if path.endswith("/drop") else ctl.silence_feeds)(body.get("channel"))
            except ValueError as exc:
                raise HttpError(400, str(exc)) from None
            return {"ok": True}
        if route == ("POST", "/_sim/feeds/stop-subscription"):
            if "token_id" not in body:
                raise HttpError(400, "token_id is required")
            ctl.stop_subscription(body["token_id"])
            return {"ok": True}
        if route == ("GET", "/_sim/feeds"):
            return ctl.feed_stats()
        if route == ("GET", "/_sim/order-arrivals"):
            return ctl.order_arrivals()
        if route == ("DELETE", "/_sim/order-arrivals"):
            ctl.clear_order_arrivals()
            return {"ok": True}
        if route == ("POST", "/_sim/approvals"):
            if "address" not in body or "spender" not in body:
                raise HttpError(400, "address and spender are required")
            if not isinstance(body.get("approved", True), bool):
                raise HttpError(400, "approved must be true or false")
            return ctl.set_approval(body["address"], body["spender"], body.get("approved", True), body.get("token"))
        if route == ("GET", "/_sim/approvals"):
            address = self._q(query, "address")
            if not address:
                raise HttpError(400, "address is required")
            return ctl.approvals(address)
        if route == ("GET", "/_sim/requests"):
            return ctl.request_counts()
        if route == ("DELETE", "/_sim/requests"):
            ctl.reset_request_counts()
            return {"ok": True}
        raise HttpError(404, f"no control route {method} {path}")


def _rpc_error(rid, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    control: SimExchange   # what the /_sim/ routes drive


def make_server(state: SimState, control: SimExchange, port: int, gamma: bool) -> SimHTTPServer:
    handler = type("GammaHandler" if gamma else "ClobHandler", (_Handler,), {"sim": state, "gamma": gamma})
    server = SimHTTPServer(("127.0.0.1", port), handler)
    server.control = control
    return server
