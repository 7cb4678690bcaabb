"""The simulated venue's matching engine, accounts and living market.

Rules enforced as on Polymarket's CLOB V2 (its documentation at docs.polymarket.com, its answers to real
orders, and /work/shared/polymarket/FACTS.md, whose Part 0 overrules the rest), because a simulator that
accepts anything hides the bugs that lose money:
- every order is a limit order; a marketable one executes at once at the RESTING orders' prices
  (price-time priority), so a SELL below the best bid fills at the bid;
- GTC/GTD remainders rest; FOK fills fully or is killed; FAK fills what it can; post-only rejects when
  it would cross; no self-trade (an account's own resting orders are skipped and left resting);
- open orders reserve what they may spend: a SELL its shares, a BUY its USDC, so a second full-size
  SELL on the same shares is refused with ``not enough balance / allowance``;
- prices on the tick within [tick, 1 - tick]; resting orders at least ``min_order_size`` shares;
  marketable BUYs at least $1; share amounts of limit orders with at most 2 decimals;
- taker fees, V2 (FACTS.md Part 0, 0.1): each trade (one taker against one maker at price p) costs the
  TAKER ``shares x fee_rate x (p(1-p))^fee_exponent`` USDC, floored to 5 decimals, on BUY and SELL alike:
  a taker BUY receives every share it bought and pays notional + fee, a taker SELL receives notional - fee;
  makers pay nothing. An order that can take (FOK/FAK, or a crossing BUY) needs its USDC plus the largest
  fee it could cost;
- trades are MATCHED, then CONFIRMED (at once, or after ``settlement_delay_s``) (FACTS.md Part 0, 0.2);
- ``GET /data/order/{id}`` knows only live orders (FACTS.md Part 0, 0.3): ``order_view`` answers None for an
  order no longer LIVE or DELAYED while ``forget_orders`` is on (the default);
- resolution cancels resting orders with status ``CANCELED_MARKET_RESOLVED`` (FACTS.md Part 0, 0.5);
- optional settlement lag: shares just bought cannot be sold for ``settlement_delay_s`` seconds;
- Protocol V2 markets (``version="v2"``, FACTS.md Part 0, 0.8) trade position ids (``v2_market_ids``: bits 40..103
  zero, the unified SDK's test of a V2 id) instead of CTF token ids; their orders are verified against ExchangeV3's
  EIP-712 domain (bot.sim.auth) and their holdings read as ``CONDITIONAL-V2`` (bot.sim.server). Holdings are kept
  per outcome id, so the two kinds never mix.

Per-market options that reproduce the real venue's harder answers (all off by default):
- ``seconds_delay`` (Gamma ``secondsDelay``, sports markets): a marketable order (FOK/FAK, or a GTC/GTD
  that crosses) is accepted as ``delayed`` with no amounts, reserves its balance, shows ``DELAYED`` in
  ``/data/order`` and ``/data/orders``, and is matched only once the delay has passed on the clock
  (at the next ``advance``, i.e. the next request). Then it is MATCHED (a FAK's unfilled rest is
  killed), LIVE for a GTC remainder, or UNMATCHED when nothing could be matched;
- ``dynamic_tick``: the tick becomes 0.001 while the Yes price is above 0.96 or below 0.04, and goes
  back to the market's own tick inside; orders off the current tick are refused;
- ``fee_rate_bps``: the string trades report in ``fee_rate_bps`` (V2 sends ``""``, the default; it is not
  the rate charged, FACTS.md Part 0, 0.1).

Engine-wide switches for what the venue does only sometimes:
- ``ghost_fills(n, fail_after_s)`` (FACTS.md Part 0, 0.2): the next n executions with a user on either side
  match as usual for the book and the orders, move no balance, and their trades turn FAILED after
  ``fail_after_s`` on the clock (never CONFIRMED);
- ``forget_orders`` (default True, FACTS.md Part 0, 0.3): False answers every known order;
- ``balance_lock(seconds)`` (FACTS.md Part 0, 0.4): every user order placement is refused with ``not enough
  balance / allowance: the sum of matched orders exceeds the balance`` while balances read right;
- ``market_resolved_messages`` (default True, FACTS.md Part 0, 0.5): False sends no ``market_resolved``;
- ``delayed_uncancellable`` (default False, FACTS.md Part 0, 0.5): a cancel of a DELAYED order answers
  ``cannot cancel because the order is in pending/delayed status`` and the order stays;
- ``sell_answer_net`` (default False): whether a taker SELL's ``takingAmount`` in the POST answer is the notional
  less the fee (True) or the notional (False). FACTS.md Part 0, 0.1 says this is **unknown**: both are served.

Price history (``GET /prices-history``, FACTS.md Part 0, 0.7: "``p`` follows the midpoint"): every market keeps its
mid over time (``_MidHistory``: at most one point per minute, only changes, at most HISTORY_MAX_POINTS, so memory stays
flat in a sim that runs for days), recorded wherever the mid moves; ``prices_history`` answers buckets of ``fidelity``
minutes, each forward-filled from the last mid at or before it; ``record_history`` loads a hand-made path (tests).

Push feeds (the WebSocket channels of ``bot.sim.feeds``): nothing of this runs until a feed client
subscribes. While one does, every public operation that can change books records the tokens it touched
(``_touch``) and the user events it caused, in the order they happened; at the end of the outermost
operation (still under the lock) the touched books are diffed against what was last published and the
messages handed to ``feed.publish``, which only queues them (the sockets are written by other threads).
A token that traded in the operation also gets a full ``book`` after its other messages (FACTS.md Part 0,
0.5: ``book`` is also sent after trades).

Simplifications: the YES and NO books are separate (the real CLOB mirrors them); their prices are kept
consistent by quoting NO around 1 - YES. Trades carry a transaction hash at once (no MINED/RETRYING step).
Market maker ("other traders") orders never trade with each other.
"""
from __future__ import annotations

import bisect
import hashlib
import heapq
import json
import math
import random
import threading
import uuid
from array import array
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Protocol

from eth_utils import to_checksum_address

from bot.clock import Clock, SystemClock
from bot.sim.auth import EXCHANGE_V2, EXCHANGE_V3, NEG_RISK_EXCHANGE_V2

MM_ACCOUNT = "0x000000000000000000000000000000000000beef"
MM_OWNER = "sim-market-maker"
BASE = Decimal("0.000001")
SHARES_2DP = Decimal("0.01")
ONE = Decimal(1)
FINE_TICK = Decimal("0.001")
EDGE_HIGH, EDGE_LOW = Decimal("0.96"), Decimal("0.04")
FEE_STEP = Decimal("0.00001")   # fees are floored to 5 decimals (FACTS.md Part 0, 0.1)
HALF = Decimal("0.5")
LIVE_STATUSES = ("LIVE", "DELAYED")
RESOLVED_STATUS = "CANCELED_MARKET_RESOLVED"
BALANCE_LOCK_MESSAGE = "not enough balance / allowance: the sum of matched orders exceeds the balance"
DELAYED_CANCEL_MESSAGE = "cannot cancel because the order is in pending/delayed status"


class SimReject(Exception):
    """A refusal by the venue's rules: ``message`` is the venue's error text, ``status`` the HTTP status."""

    def __init__(self, message: str, status: int = 400, order_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.order_id = order_id


def dec_str(value: Decimal) -> str:
    """Decimal as the venue writes numbers: no exponent, no needless trailing zeros."""
    text = format(value.normalize(), "f") if value != 0 else "0"
    return text


def base_units(value: Decimal) -> int:
    return int((value / BASE).to_integral_value(rounding=ROUND_DOWN))


#: Bits 40..103 of a uint256 outcome id: all zero in a Protocol V2 position id (FACTS.md Part 0, 0.8; the unified
#: SDK's ``polymarket._internal.protocol.is_v2_position_id``, which picks ExchangeV3 and ``CONDITIONAL-V2`` by it).
V2_RESERVED_BITS = ((1 << 64) - 1) << 40
#: The first byte of a Protocol V2 structural market id: its module (inferred from the unified SDK: it accepts module
#: ids 1, 2, 3 (``_SUPPORTED_V2_MODULE_IDS``), makes combo ids with 0x03, and its environment names a
#: ``binary_module`` 0x1000…, a ``neg_risk_module`` 0x2000…, a ``combinatorial_module`` 0x3000…; not documented).
V2_BINARY_MODULE, V2_NEG_RISK_MODULE = 0x01, 0x02


def is_v2_position_id(token_id) -> bool:
    """Whether an outcome id is a Protocol V2 position id (FACTS.md Part 0, 0.8): bits 40..103 of the uint256 all
    zero, the unified SDK's rule. CTF (V1) token ids are hashes: practically never so."""
    try:
        value = int(str(token_id))
    except ValueError:
        return False
    return 0 <= value < (1 << 256) and value & V2_RESERVED_BITS == 0


def v2_market_ids(seed: str, neg_risk: bool = False) -> tuple[str, tuple[str, str]]:
    """(condition id, (YES, NO) position ids) of a Protocol V2 market (FACTS.md Part 0, 0.8), in the layout the
    unified SDK decodes (``decode_v2_outcome_position_id``, ``derive_combo_outcome_position_ids``,
    ``to_market_condition_id``): a 31-byte structural market id (module byte: 0x01 binary, 0x02 neg-risk; 16 bytes
    of hash of ``seed``; 14 zero bytes, a zero run that covers bits 40..103 of the position ids), then one outcome
    byte (0 YES, 1 NO). The market's 32-byte condition id is the structural id padded with a zero byte, as
    ``to_market_condition_id`` pads it (so the YES position id is the condition id as an integer)."""
    module = V2_NEG_RISK_MODULE if neg_risk else V2_BINARY_MODULE
    structural = bytes([module]) + hashlib.sha256(seed.encode()).digest()[:16] + bytes(14)
    yes, no = (int.from_bytes(structural + bytes([outcome]), "big") for outcome in (0, 1))
    return "0x" + (structural + b"\0").hex(), (str(yes), str(no))


@dataclass
class SimMarket:
    id: str
    condition_id: str
    question_id: str
    question: str
    slug: str
    token_ids: tuple[str, str]
    tick_size: Decimal
    min_order_size: Decimal
    neg_risk: bool
    fee_rate: Decimal
    fee_exponent: int
    volatility: Decimal
    end_date: datetime
    start_date: datetime
    yes_mid: Decimal
    outcomes: tuple[str, str] = ("Yes", "No")
    closed: bool = False
    accepting_orders: bool = True
    winner: str | None = None
    closed_at: float | None = None   # when ``resolve`` closed it (the clock's unix seconds): Gamma's ``closedTime``
    volume: Decimal = Decimal(0)
    liquidity_depth: int = 5
    seconds_delay: float = 0
    dynamic_tick: bool = False
    base_tick: Decimal = Decimal("0.01")
    fee_rate_bps: str = ""
    #: Gamma's ``version`` (FACTS.md Part 0, 0.8): "v1" markets trade CTF token ids (``clobTokenIds``), "v2" ones
    #: (Protocol V2) position ids (``positionIds``, see ``v2_market_ids``), whose orders are signed for ExchangeV3
    #: (EIP-712 domain version "3") and whose balances are ``CONDITIONAL-V2``; None: Gamma sends no version (the
    #: bot must skip it; its ids are CTF token ids).
    version: str | None = "v1"

    @property
    def is_v2(self) -> bool:
        """A Protocol V2 market (FACTS.md Part 0, 0.8): position ids, ExchangeV3, CONDITIONAL-V2 balances."""
        return self.version == "v2"

    def mid_of(self, token_id: str) -> Decimal:
        return self.yes_mid if token_id == self.token_ids[0] else ONE - self.yes_mid

    def outcome_of(self, token_id: str) -> str:
        return self.outcomes[0] if token_id == self.token_ids[0] else self.outcomes[1]


@dataclass
class Order:
    id: str
    owner: str
    account: str
    token_id: str
    side: str
    price: Decimal
    size: Decimal
    order_type: str
    created_at: int
    seq: int
    expiration: int = 0
    matched: Decimal = Decimal(0)
    status: str = "LIVE"
    trade_ids: list[str] = field(default_factory=list)
    budget: Decimal | None = None  # a market BUY's USDC to spend (it is sized by what that buys)

    @property
    def remaining(self) -> Decimal:
        return self.size - self.matched

    @property
    def is_mm(self) -> bool:
        return self.account == MM_ACCOUNT


@dataclass
class Trade:
    id: str
    taker_order_id: str
    taker_account: str
    taker_owner: str
    maker_order_id: str
    maker_account: str
    maker_owner: str
    token_id: str
    market: str
    outcome: str
    taker_side: str
    price: Decimal
    size: Decimal
    fee: Decimal   # USDC paid by the taker (0 for a ghost fill: nothing moved)
    match_time: int
    tx_hash: str
    status: str = "MATCHED"   # MATCHED -> CONFIRMED, or MATCHED -> FAILED for a ghost fill
    last_update: int = 0      # when the status last changed (unix seconds)
    ghost: bool = False       # matched but never settled (FACTS.md Part 0, 0.2): no balance moved


#: A market-channel message: (the tokens it is about, only for custom-feature subscribers?, the message).
MarketEvent = tuple[tuple[str, ...], bool, dict]
#: A user-channel message: (the account whose order it is about, that order's owner (API key), the message).
UserEvent = tuple[str, str, dict]


class FeedSink(Protocol):
    """Where the engine hands its push messages (bot.sim.feeds.FeedServer). Called under the engine's lock:
    it must only queue them, never write to a socket."""

    def publish(self, market: list[MarketEvent], user: list[UserEvent]) -> None:
        """Route the messages of one engine operation, in order, to the subscribed connections."""


@dataclass
class _Published:
    """What the market channel last said about a token's book: aggregated levels, tick and best prices."""

    bids: dict[Decimal, Decimal]
    asks: dict[Decimal, Decimal]
    tick: Decimal
    best_bid: str
    best_ask: str


class _Operation:
    """``with engine._operation:`` takes the engine's lock for a public operation that can change books; when
    the outermost one ends, what it changed is published to the feeds (before the lock is released, so
    messages are queued in the order the operations happened)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def __enter__(self) -> None:
        e = self.engine
        e.lock.acquire()
        e._depth += 1

    def __exit__(self, *exc) -> None:
        e = self.engine
        try:
            e._depth -= 1
            if e._depth == 0 and (e._dirty or e._market_tail or e._user_out or e._status_now):
                e._flush()
        finally:
            e.lock.release()


class _Side:
    """One side of a book: price levels (FIFO queues) with a sorted price list."""

    def __init__(self, best_is_max: bool):
        self.best_is_max = best_is_max
        self.prices: list[Decimal] = []
        self.levels: dict[Decimal, deque[Order]] = {}

    def add(self, order: Order) -> None:
        q = self.levels.get(order.price)
        if q is None:
            q = self.levels[order.price] = deque()
            bisect.insort(self.prices, order.price)
        q.append(order)

    def remove(self, order: Order) -> None:
        q = self.levels.get(order.price)
        if q is None:
            return
        try:
            q.remove(order)
        except ValueError:
            return
        if not q:
            del self.levels[order.price]
            i = bisect.bisect_left(self.prices, order.price)
            del self.prices[i]

    def best_first(self):
        return reversed(self.prices) if self.best_is_max else iter(self.prices)

    def best(self, exclude_account: str | None = None) -> Decimal | None:
        for price in self.best_first():
            if exclude_account is None or any(o.account != exclude_account for o in self.levels[price]):
                return price
        return None


class _Book:
    def __init__(self):
        self.bids = _Side(best_is_max=True)
        self.asks = _Side(best_is_max=False)
        self.last_trade_price = Decimal("0.5")

    def side(self, side: str) -> _Side:
        return self.bids if side == "BUY" else self.asks


# -- price history (GET /prices-history; FACTS.md Part 0, 0.7) -------------------------------------------------------
#: ``fidelity`` counts minutes (FACTS.md Part 0, 0.7; docs.polymarket.com api-reference/markets/get-prices-history:
#: "Accuracy of the data expressed in minutes"), so no answer needs more than the last mid of each minute.
HISTORY_STEP_S = 60
#: Points kept per market (34.7 days with a change every minute); beyond it the oldest go (8 bytes a point).
HISTORY_MAX_POINTS = 50_000
#: Prices are kept in millionths (the sim's ticks are 0.01 and 0.001; a hand-made path may have 6 decimals).
HISTORY_UNITS = 1_000_000
_HISTORY_UNITS_DEC = Decimal(HISTORY_UNITS)


class _MidHistory:
    """One market's YES mid over time (its NO token's is 1 - it: the sim quotes NO around 1 - YES).

    Entries are (minute, price in millionths), minutes ascending. The minute of a change at ``t`` is ``ceil(t / 60)``:
    the first whole minute at which it is the latest mid; changes within one minute keep the last. So the mid at or
    before a whole minute ``m`` is the entry with the greatest minute <= m, which is all a bucket of ``fidelity``
    minutes needs (buckets fall on whole minutes). Only changes are recorded. Memory is bounded: past
    HISTORY_MAX_POINTS (plus a tenth, so trimming is rare) the oldest entries are dropped."""

    __slots__ = ("minutes", "prices")

    def __init__(self) -> None:
        self.minutes = array("q")
        self.prices = array("q")

    def note(self, t: float, units: int) -> None:
        """The mid is ``units`` millionths from ``t`` on."""
        minute = math.ceil(t / HISTORY_STEP_S)
        if self.minutes and self.minutes[-1] >= minute:
            if self.minutes[-1] == minute:
                self.prices[-1] = units
            else:   # before the last entry (a loaded path that reaches past now): it replaces that minute only
                self.load([(minute, units)])
            return
        if self.prices and self.prices[-1] == units:
            return
        self.minutes.append(minute)
        self.prices.append(units)
        self._trim()

    def load(self, entries: list[tuple[int, int]]) -> None:
        """Replace every entry from the first minute of ``entries`` to its last (sorted, one per minute) by them."""
        if not entries:
            return
        i = bisect.bisect_left(self.minutes, entries[0][0])
        j = bisect.bisect_right(self.minutes, entries[-1][0])
        self.minutes[i:j] = array("q", (m for m, _ in entries))
        self.prices[i:j] = array("q", (u for _, u in entries))
        self._trim()

    def _trim(self) -> None:
        extra = len(self.minutes) - HISTORY_MAX_POINTS
        if extra > HISTORY_MAX_POINTS // 10:
            del self.minutes[:extra]
            del self.prices[:extra]

    def series(self, first: int, last: int, step: int) -> list[tuple[int, int]]:
        """(minute, units) at minutes first, first + step, ... <= last, each the entry at or before it (forward-
        filled); minutes before the first entry have none (the market had no mid yet)."""
        minutes, prices = self.minutes, self.prices
        n, out = len(minutes), []
        i = bisect.bisect_right(minutes, first) - 1
        for m in range(first, last + 1, step):
            while i + 1 < n and minutes[i + 1] <= m:
                i += 1
            if i >= 0:
                out.append((m, prices[i]))
        return out


# -- approvals (what an account let Polymarket's contracts move) -------------------------------------------------
#: The contracts, as polymarket-client 0.14.0 configures them for Polygon (polymarket/environments.py, ``PRODUCTION``:
#: ``neg_risk_adapter``, ``auto_redeem_operator``, ``conditional_tokens``, ``position_manager``,
#: ``collateral_token``; the exchanges are bot.sim.auth's, from the same config).
#: The current neg-risk adapter is the config's ``neg_risk_collateral_adapter`` (the SDK's list of trading approvals
#: names it); ``neg_risk_adapter`` there is the CLOB V1 one, retired on 2026-07-17 (approved by nobody new).
NEG_RISK_ADAPTER = "0xadA2005600Dec949baf300f4C6120000bDB6eAab"
OLD_NEG_RISK_ADAPTER = "0xd91E80cF2E7be2e162c6513ceD06f1dD0dA35296"
AUTO_REDEEM_OPERATOR = "0xa1200000d0002264C9a1698e001292D00E1b00af"
CONDITIONAL_TOKENS = "0x4D97DCd97eC945f40cF65F87097ACe5EA0476045"   # the CTF: V1 shares (ERC-1155)
POSITION_MANAGER = "0x006F54F7f9A22e0000CC2AB60031000000ae9fEF"     # V2 shares (ERC-1155; FACTS.md Part 0, 0.8)
COLLATERAL_TOKEN = "0xC011a7E12a19f7B1f670d46F03B03f3342E82DFB"     # pUSD (ERC-20)
#: Contract names (those of LiveVenue.contracts(), i.e. the SDK config's) the sim's control accepts for an address.
CONTRACTS = {"ctf_exchange": EXCHANGE_V2, "neg_risk_exchange": NEG_RISK_EXCHANGE_V2,
             "neg_risk_adapter": NEG_RISK_ADAPTER, "old_neg_risk_adapter": OLD_NEG_RISK_ADAPTER,
             "exchange_v3": EXCHANGE_V3,
             "auto_redeem_operator": AUTO_REDEEM_OPERATOR,
             "conditional_tokens": CONDITIONAL_TOKENS, "position_manager": POSITION_MANAGER,
             "collateral_token": COLLATERAL_TOKEN}
#: What is approved on each token: "collateral" (pUSD allowances, ERC-20 ``approve``), "conditional_tokens" and
#: "position_manager" (ERC-1155 ``setApprovalForAll``).
APPROVAL_TOKENS = {"collateral": COLLATERAL_TOKEN, "conditional_tokens": CONDITIONAL_TOKENS,
                   "position_manager": POSITION_MANAGER}
#: The pUSD spenders ``GET /balance-allowance`` names: the CTF exchange, the neg-risk exchange and the neg-risk
#: adapter (FACTS.md Part 2, the get_balance_allowance row: ``"allowances": {"<exchange>", "<negrisk exchange>",
#: "<negrisk adapter>"}``), and ExchangeV3 (FACTS.md Part 0, 0.8: V2 orders settle through ExchangeV3 "with new
#: approval targets").
COLLATERAL_SPENDERS = (EXCHANGE_V2, NEG_RISK_EXCHANGE_V2, NEG_RISK_ADAPTER, EXCHANGE_V3)
#: The share operators of each kind: the V1 exchanges and the adapter on the conditional tokens, ExchangeV3 on the
#: PositionManager (FACTS.md Part 0, 0.8: "V2 balances live in the PositionManager"; the SDK's required trading
#: approvals, polymarket/_internal/actions/relayer/approvals.py, pair ExchangeV3 with the PositionManager).
SHARE_OPERATORS = {CONDITIONAL_TOKENS: (EXCHANGE_V2, NEG_RISK_EXCHANGE_V2, NEG_RISK_ADAPTER),
                   POSITION_MANAGER: (EXCHANGE_V3,)}
#: What a new wallet has approved: every spender and operator above (as before this table: a funded wallet could
#: trade everything), but NOT the auto-redeem operator, which an account grants apart (FACTS.md Part 0, 0.8: "for
#: accounts that approved its auto-redeem operator"); ``set_approval(address, "auto_redeem_operator", True)``.
DEFAULT_APPROVALS = frozenset(
    [(COLLATERAL_TOKEN.lower(), s.lower()) for s in COLLATERAL_SPENDERS]
    + [(token.lower(), op.lower()) for token, ops in SHARE_OPERATORS.items() for op in ops])
MAX_UINT256 = 2**256 - 1


def order_contracts(market: SimMarket) -> tuple[str, ...]:
    """The contracts whose approval an order on ``market`` needs: ExchangeV3 for a Protocol V2 market, the neg-risk
    exchange for a V1 neg-risk one, else the CTF exchange (the unified SDK's ``resolve_order_exchange_address``,
    FACTS.md Part 0, 0.8). A V1 neg-risk order also needs the neg-risk adapter: whether the venue refuses an order
    when only the adapter lacks its approval is unknown; the sim refuses it (conservative: a bot right under the
    sim's refusal is right under the venue's acceptance)."""
    if market.is_v2:
        return (EXCHANGE_V3,)
    return (NEG_RISK_EXCHANGE_V2, NEG_RISK_ADAPTER) if market.neg_risk else (EXCHANGE_V2,)


def contract_address(name_or_address: str) -> str:
    """A contract's checksummed address, from its name in CONTRACTS or an address."""
    text = str(name_or_address)
    if text in CONTRACTS:
        return CONTRACTS[text]
    try:
        return to_checksum_address(text)
    except ValueError:
        raise SimReject(f"unknown contract {text!r}: an address or one of {', '.join(CONTRACTS)}") from None


class Approvals:
    """Per account, which (token, spender/operator) pairs are approved: DEFAULT_APPROVALS unless set otherwise."""

    def __init__(self, lock: threading.RLock):
        self.lock = lock
        self._set: dict[str, dict[tuple[str, str], bool]] = {}   # account -> (token, spender) -> approved

    def set(self, address: str, spender: str, approved: bool, token: str | None = None) -> list[tuple[str, str]]:
        """Approve (or revoke) ``spender`` (a CONTRACTS name or an address) for ``address`` on ``token`` ("collateral",
        "conditional_tokens", "position_manager" or a token address; None: every token polymarket.com's setup
        approves it on: pUSD and the shares of its kind, both share contracts for the auto-redeem operator, pUSD and
        the conditional tokens for a contract the sim does not know). Returns the (token, spender) pairs set."""
        who = contract_address(spender)
        if token is None:
            tokens = [t for t, s in DEFAULT_APPROVALS if s == who.lower()]
            if who == AUTO_REDEEM_OPERATOR:
                tokens = [CONDITIONAL_TOKENS.lower(), POSITION_MANAGER.lower()]
            elif not tokens:
                tokens = [COLLATERAL_TOKEN.lower(), CONDITIONAL_TOKENS.lower()]
        else:
            tokens = [contract_address(APPROVAL_TOKENS.get(token, token)).lower()]
        pairs = [(t, who.lower()) for t in tokens]
        with self.lock:
            mine = self._set.setdefault(address.lower(), {})
            for pair in pairs:
                mine[pair] = bool(approved)
        return pairs

    def set_all(self, address: str, approved: bool) -> None:
        """Every default pair at once (``fund(..., allowance=...)``); the auto-redeem operator is left as it is."""
        with self.lock:
            mine = self._set.setdefault(address.lower(), {})
            for pair in DEFAULT_APPROVALS:
                mine[pair] = bool(approved)

    def approved(self, address: str, token: str, spender: str) -> bool:
        pair = (token.lower(), spender.lower())
        with self.lock:
            return self._set.get(address.lower(), {}).get(pair, pair in DEFAULT_APPROVALS)

    def collateral_allowances(self, address: str) -> dict[str, bool]:
        """pUSD spender -> approved, as ``GET /balance-allowance`` names them: COLLATERAL_SPENDERS, then any other
        spender the account approved (whether the venue lists such a one is unknown; the sim does, so that an
        approval of another contract, e.g. an older neg-risk adapter, can be told from the one the venue checks)."""
        out = {s: self.approved(address, COLLATERAL_TOKEN, s) for s in COLLATERAL_SPENDERS}
        with self.lock:
            extra = [s for (t, s), ok in self._set.get(address.lower(), {}).items()
                     if ok and t == COLLATERAL_TOKEN.lower() and s not in {x.lower() for x in COLLATERAL_SPENDERS}]
        out.update({to_checksum_address(s): True for s in extra})
        return out

    def missing_for_order(self, address: str, market: SimMarket, side: str) -> list[str]:
        """The contracts of ``order_contracts(market)`` an order of ``side`` lacks: pUSD allowances for a BUY, the
        share approval (conditional tokens for V1, PositionManager for V2) for a SELL."""
        token = COLLATERAL_TOKEN if side == "BUY" else (POSITION_MANAGER if market.is_v2 else CONDITIONAL_TOKENS)
        return [c for c in order_contracts(market) if not self.approved(address, token, c)]

    def table(self, address: str) -> dict[str, dict[str, bool]]:
        """Everything an account approved, by token name: {"collateral": {spender: bool}, "conditional_tokens":
        {operator: bool}, "position_manager": {operator: bool}} (the auto-redeem operator on both share tokens)."""
        shares = {token: (*ops, AUTO_REDEEM_OPERATOR) for token, ops in SHARE_OPERATORS.items()}
        return {"collateral": self.collateral_allowances(address),
                **{name: {op: self.approved(address, token, op) for op in shares[token]}
                   for name, token in APPROVAL_TOKENS.items() if token in shares}}


class Engine:
    """Matching engine, balances and the living market of the simulated exchange (thread-safe)."""

    def __init__(self, *, seed: int = 0, clock: Clock | None = None, default_volatility: Decimal = Decimal("0.004"),
                 step_seconds: float = 1.0, settlement_delay_s: float = 0.0):
        self.lock = threading.RLock()
        self.clock = clock or SystemClock()
        self.rng = random.Random(seed)
        self.default_volatility = Decimal(str(default_volatility))
        self.step_seconds = step_seconds
        self.settlement_delay_s = settlement_delay_s
        self._markets: dict[str, SimMarket] = {}
        self._by_token: dict[str, SimMarket] = {}
        self._by_condition: dict[str, SimMarket] = {}
        self._by_slug: dict[str, SimMarket] = {}
        self._books: dict[str, _Book] = {}
        self._history: dict[str, _MidHistory] = {}   # market id -> its mid over time (GET /prices-history)
        self._orders: dict[str, Order] = {}
        self._open_by_account: dict[str, set[str]] = {}
        self._trades: list[Trade] = []
        self._trades_by_account: dict[str, list[Trade]] = {}
        self._usdc: dict[str, Decimal] = {}
        self._tokens: dict[str, dict[str, Decimal]] = {}
        self._unsettled: dict[tuple[str, str], list[tuple[float, Decimal]]] = {}
        self.approvals = Approvals(self.lock)
        self._seq = 0
        self._last_advance = self.clock.time()
        self._next_market_id = 100001
        self._delayed: list[tuple[float, int, str]] = []  # (due time, seq, order id) of DELAYED orders
        # Push feeds (see the module doc). All empty/False while no feed client is subscribed.
        self.feed: FeedSink | None = None
        self._operation = _Operation(self)
        self._depth = 0
        self._watched: dict[str, _Published] = {}   # market-channel tokens -> what was last published
        self._watch_users = False
        self._dirty: dict[str, None] = {}           # watched tokens changed in this operation (ordered set)
        self._market_tail: list[MarketEvent] = []   # last_trade_price / market_resolved, after the book diffs
        self._traded: dict[str, None] = {}          # watched tokens that traded in this operation (get a book)
        self._user_out: list[UserEvent] = []
        # Trade statuses: (trade, new status) at the end of this operation, and (due time, seq, trade, status)
        # on the clock (a settlement lag, a ghost fill's failure). Kept whether or not anyone listens: REST
        # reports them too.
        self._status_now: list[tuple[Trade, str]] = []
        self._status_due: list[tuple[float, int, Trade, str]] = []
        self._next_status = 0
        # Switches for what the venue does only sometimes (see the module doc).
        self.forget_orders = True
        self.market_resolved_messages = True
        self.delayed_uncancellable = False
        self.sell_answer_net = False
        self._ghosts = 0
        self._ghost_fail_s = 1.0
        self._balance_locked_until: float | None = None   # see balance_lock
        self._fee_factors: dict[tuple[Decimal, int, Decimal], Decimal] = {}

    # -- markets ------------------------------------------------------------------------------------

    def add_market(self, question: str, yes_price=Decimal("0.5"), tick_size="0.01", min_order_size=5,
                   neg_risk=False, volatility=None, end_date=None, fee_rate=None, fee_exponent=None,
                   liquidity_depth=None, seconds_delay=0, dynamic_tick=False, fee_rate_bps=None,
                   version="v1") -> SimMarket:
        with self._operation:
            base_tick = Decimal(str(tick_size))
            tick, mid = self._tick_and_mid(Decimal(str(yes_price)), base_tick, bool(dynamic_tick))
            mid_int = self._next_market_id
            self._next_market_id += 1
            rnd = random.Random(f"{mid_int}-{question}")
            now = datetime.fromtimestamp(self.clock.time(), tz=UTC)
            condition_id = "0x" + hashlib.sha256(f"cond-{mid_int}-{question}".encode()).hexdigest()
            if version is not None and str(version) == "v2":   # position ids (FACTS.md Part 0, 0.8)
                condition_id, tokens = v2_market_ids(f"v2-{mid_int}-{question}", bool(neg_risk))
            else:                 # CTF token ids: 251/252-bit hashes, never V2-shaped
                tokens = ("", "")
                while not all(tokens) or any(is_v2_position_id(t) for t in tokens):
                    tokens = (str(rnd.getrandbits(250) | (1 << 250)), str(rnd.getrandbits(250) | (1 << 251)))
            slug = "-".join("".join(ch for ch in w.lower() if ch.isalnum()) for w in question.split())[:60].strip("-")
            market = SimMarket(
                id=str(mid_int), condition_id=condition_id,
                question_id="0x" + hashlib.sha256(f"q-{mid_int}".encode()).hexdigest(), question=question,
                slug=f"{slug or 'market'}-{mid_int}", token_ids=tokens, tick_size=tick,
                min_order_size=Decimal(str(min_order_size)), neg_risk=bool(neg_risk),
                fee_rate=Decimal(str(fee_rate)) if fee_rate is not None else Decimal("0.02"),
                fee_exponent=int(fee_exponent) if fee_exponent is not None else 2,
                volatility=Decimal(str(volatility)) if volatility is not None else self.default_volatility,
                end_date=end_date or (now + timedelta(days=30)), start_date=now - timedelta(days=1), yes_mid=mid,
                liquidity_depth=int(liquidity_depth) if liquidity_depth else 5,
                seconds_delay=float(seconds_delay or 0), dynamic_tick=bool(dynamic_tick), base_tick=base_tick,
                fee_rate_bps="" if fee_rate_bps is None else str(fee_rate_bps),
                version=None if version is None else str(version),
            )
            self._markets[market.id] = market
            self._by_condition[market.condition_id] = market
            self._by_slug[market.slug] = market
            for t in tokens:
                self._by_token[t] = market
                self._books[t] = _Book()
                self._books[t].last_trade_price = market.mid_of(t)
            self._history[market.id] = _MidHistory()
            self._note_mid(market)
            self._requote(market)
            return market

    def set_market_options(self, market: SimMarket, seconds_delay=None, dynamic_tick=None,
                           fee_rate_bps=None) -> None:
        """Switch the per-market options of an existing market (None leaves one as it is)."""
        with self._operation:
            if seconds_delay is not None:
                market.seconds_delay = float(seconds_delay)
            if fee_rate_bps is not None:
                market.fee_rate_bps = str(fee_rate_bps)
            if dynamic_tick is not None:
                market.dynamic_tick = bool(dynamic_tick)
                tick, mid = self._tick_and_mid(market.yes_mid, market.base_tick, market.dynamic_tick)
                if (tick, mid) != (market.tick_size, market.yes_mid):
                    market.tick_size, market.yes_mid = tick, mid
                    self._note_mid(market)
                    self._requote(market)

    def _tick_and_mid(self, yes_price: Decimal, base_tick: Decimal, dynamic: bool) -> tuple[Decimal, Decimal]:
        """The tick a market has at ``yes_price`` and the price snapped to it. With a dynamic tick the
        venue quotes 0.001 above 0.96 and below 0.04 (its tick changes there, and orders on the old tick are
        refused), the market's own tick inside."""
        if not dynamic or base_tick <= FINE_TICK:
            return base_tick, self._snap(yes_price, base_tick, 2)

        def tick_at(p: Decimal) -> Decimal:
            return FINE_TICK if (p > EDGE_HIGH or p < EDGE_LOW) else base_tick

        tick = tick_at(yes_price)
        mid = self._snap(yes_price, tick, 2)
        if tick_at(mid) != tick:  # snapping crossed the edge: use the tick of where it landed
            tick = tick_at(mid)
            mid = self._snap(mid, tick, 2)
        return tick, mid

    def markets(self) -> list[SimMarket]:
        with self.lock:
            return list(self._markets.values())

    def market_by_token(self, token_id) -> SimMarket | None:
        return self._by_token.get(str(token_id))

    def market_by_condition(self, condition_id) -> SimMarket | None:
        return self._by_condition.get(str(condition_id).lower()) or self._by_condition.get(str(condition_id))

    def market_by_id(self, gamma_id) -> SimMarket | None:
        return self._markets.get(str(gamma_id))

    def market_by_slug(self, slug) -> SimMarket | None:
        return self._by_slug.get(str(slug))

    # -- accounts -----------------------------------------------------------------------------------

    def fund(self, address, usdc=None, token_id=None, shares=None, allowance=None) -> None:
        """Set an account's balances (USDC and/or shares of one token) and, optionally, whether it has
        approved the exchanges (``allowance`` False: every spender and share operator of every kind revoked, so
        every order is refused, as on-chain; True: all approved again; ``set_approval`` sets one)."""
        acct = address.lower()
        with self.lock:
            if allowance is not None:
                self.approvals.set_all(acct, bool(allowance))
            if usdc is not None:
                self._usdc[acct] = Decimal(str(usdc))
            if token_id is not None and shares is not None:
                self._tokens.setdefault(acct, {})[str(token_id)] = Decimal(str(shares))

    def has_allowance(self, address, market: SimMarket | None = None, side: str = "BUY") -> bool:
        """Whether ``address`` may place a ``side`` order on ``market`` as far as approvals go (``order_contracts``);
        without a market: whether every pUSD spender is approved."""
        if market is None:
            return all(self.approvals.collateral_allowances(address)[s] for s in COLLATERAL_SPENDERS)
        return not self.approvals.missing_for_order(address, market, side.upper())

    def balance(self, address, asset: str) -> Decimal:
        acct = address.lower()
        with self.lock:
            if asset == "COLLATERAL":
                return self._usdc.get(acct, Decimal(0))
            return self._tokens.get(acct, {}).get(str(asset), Decimal(0))

    def _unsettled_qty(self, acct: str, token_id: str) -> Decimal:
        lots = self._unsettled.get((acct, token_id))
        if not lots:
            return Decimal(0)
        now = self.clock.time()
        lots[:] = [(t, q) for t, q in lots if t > now]
        return sum((q for _, q in lots), Decimal(0))

    def available(self, address, asset: str) -> Decimal:
        """Balance minus what open orders reserve (and, for shares, what has not settled yet)."""
        acct = address.lower()
        with self.lock:
            reserved = Decimal(0)
            for oid in self._open_by_account.get(acct, ()):
                o = self._orders[oid]
                if asset == "COLLATERAL" and o.side == "BUY":
                    reserved += o.remaining * o.price
                elif asset != "COLLATERAL" and o.side == "SELL" and o.token_id == asset:
                    reserved += o.remaining
            unsettled = Decimal(0) if asset == "COLLATERAL" else self._unsettled_qty(acct, str(asset))
            return self.balance(acct, asset) - reserved - unsettled

    def balances(self, address) -> dict:
        acct = address.lower()
        with self.lock:
            return {"usdc": self._usdc.get(acct, Decimal(0)), "tokens": dict(self._tokens.get(acct, {})),
                    "open_orders": len(self._open_by_account.get(acct, ()))}

    def _credit(self, acct: str, asset: str, qty: Decimal) -> None:
        if acct == MM_ACCOUNT:
            return
        if asset == "COLLATERAL":
            self._usdc[acct] = self._usdc.get(acct, Decimal(0)) + qty
        else:
            toks = self._tokens.setdefault(acct, {})
            toks[asset] = toks.get(asset, Decimal(0)) + qty

    # -- orders -------------------------------------------------------------------------------------

    @staticmethod
    def _snap(price: Decimal, tick: Decimal, edge_ticks: int = 1) -> Decimal:
        steps = (price / tick).to_integral_value()
        steps = max(Decimal(edge_ticks), min(steps, (ONE / tick) - edge_ticks))
        return (steps * tick).quantize(tick)

    def _fee(self, market: SimMarket, shares: Decimal, price: Decimal) -> Decimal:
        """The taker's fee in USDC for one trade of ``shares`` at ``price`` (FACTS.md Part 0, 0.1): shares x r x
        (p(1-p))^e with the market's rate r and exponent e, floored to 5 decimals (NautilusTrader's
        compute_commission). Charged to the taker on BUY and SELL alike; makers pay none."""
        if market.fee_rate <= 0 or shares <= 0:
            return Decimal(0)
        key = (market.fee_rate, market.fee_exponent, price)
        factor = self._fee_factors.get(key)
        if factor is None:   # r x (p(1-p))^e, once per rate, exponent and price
            factor = self._fee_factors[key] = market.fee_rate * (price * (ONE - price)) ** market.fee_exponent
        return (shares * factor).quantize(FEE_STEP, rounding=ROUND_FLOOR)

    def _max_taker_fee(self, market: SimMarket, shares: Decimal, limit: Decimal) -> Decimal:
        """The largest fee a BUY of ``shares`` can cost at prices up to ``limit`` (FACTS.md Part 0, 0.1; p(1-p)
        peaks at 0.5): what an order that can take needs on top of its USDC. The sum of the trades' floored
        fees never exceeds it."""
        return self._fee(market, shares, min(limit, HALF))

    def place_order(self, *, order_id: str, owner: str, account: str, token_id: str, side: str,
                    maker_amount: Decimal, taker_amount: Decimal, order_type: str, post_only: bool = False,
                    expiration: int = 0) -> dict:
        """Validate and match an order whose signature the server already checked (see module doc)."""
        with self._operation:
            acct = account.lower()
            token_id = str(token_id)
            market = self._by_token.get(token_id)
            if market is None:
                raise SimReject("Invalid token id", 400)
            if market.closed or not market.accepting_orders:
                raise SimReject("the market is not yet ready to process new orders" if not market.closed
                                else "market is closed, orders are not accepted", 400)
            if order_id in self._orders:
                raise SimReject(f"order {order_id} is invalid. Duplicated.")
            side = side.upper()
            order_type = order_type.upper()
            if order_type not in ("GTC", "GTD", "FOK", "FAK"):
                raise SimReject(f"invalid order type {order_type}")
            if post_only and order_type not in ("GTC", "GTD"):
                raise SimReject("invalid post-only order: only GTC and GTD orders can be post-only")
            if maker_amount <= 0 or taker_amount <= 0:
                raise SimReject("invalid amounts, the maker and taker amounts must be positive")
            tick = market.tick_size
            marketable_type = order_type in ("FOK", "FAK")
            if side == "BUY":
                shares, usdc = taker_amount, maker_amount
                raw_price = usdc / shares
                # A market BUY's ratio sits a hair above its cap (the SDK truncates the share count).
                exponent = tick.normalize().as_tuple().exponent   # an int for a finite tick
                decimals = -exponent if isinstance(exponent, int) and tick < 1 else 0
                price = raw_price.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR) \
                    if marketable_type else raw_price
            else:
                shares, usdc = maker_amount, taker_amount
                price = usdc / shares
            if price % tick != 0 or price < tick or price > ONE - tick:
                raise SimReject(f"order {order_id} is invalid. Price ({dec_str(price)}) breaks minimum tick size "
                                f"rule: {dec_str(tick)}")
            price = price.quantize(tick)
            if not marketable_type and shares != shares.quantize(SHARES_2DP):
                raise SimReject("invalid amounts, the share amount supports a max accuracy of 2 decimals")
            if order_type == "GTD":
                if expiration <= self.clock.time() + 60:
                    raise SimReject("invalid expiration")
            opposite = self._books[token_id].side("SELL" if side == "BUY" else "BUY")
            best_opp = opposite.best(exclude_account=acct)
            crosses = best_opp is not None and (best_opp <= price if side == "BUY" else best_opp >= price)
            if post_only and crosses:
                raise SimReject("invalid post-only order: order crosses book")
            if side == "BUY" and (marketable_type or crosses) and usdc < ONE:
                raise SimReject(f"invalid amount for a marketable BUY order (${dec_str(usdc.quantize(SHARES_2DP))}),"
                                f" min size: $1")
            if order_type in ("GTC", "GTD") and shares < market.min_order_size and not crosses:
                raise SimReject(f"order {order_id} is invalid. Size ({dec_str(shares)}) lower than the minimum: "
                                f"{dec_str(market.min_order_size)}")
            if order_type in ("GTC", "GTD") and shares < market.min_order_size:
                # a marketable limit may fill, but its remainder could not rest: refuse as the venue does
                raise SimReject(f"order {order_id} is invalid. Size ({dec_str(shares)}) lower than the minimum: "
                                f"{dec_str(market.min_order_size)}")
            missing = self.approvals.missing_for_order(acct, market, side) if acct != MM_ACCOUNT else []
            if missing:   # the exchange of the order's kind only (order_contracts): other kinds are not asked
                what = "an allowance on this account's pUSD" if side == "BUY" else "approval for this account's shares"
                raise SimReject(f"not enough balance / allowance: {', '.join(missing)} has no {what}")
            lock_until = self._balance_locked_until
            if lock_until is not None and acct != MM_ACCOUNT and self.clock.time() < lock_until:
                raise SimReject(BALANCE_LOCK_MESSAGE)   # FACTS.md Part 0, 0.4 (see balance_lock)
            if acct != MM_ACCOUNT:
                asset = "COLLATERAL" if side == "BUY" else token_id
                need = usdc if side == "BUY" else shares
                if side == "BUY" and (marketable_type or crosses):   # it may take: its fee on top (0.1)
                    need += self._max_taker_fee(market, usdc / price if marketable_type else shares, price)
                avail = self.available(acct, asset)
                if need > avail:
                    raise SimReject(f"not enough balance / allowance: the balance is not enough -> balance: "
                                    f"{base_units(max(avail, Decimal(0)))}, order amount: {base_units(need)}")
            budget = usdc if (side == "BUY" and marketable_type) else None
            if market.seconds_delay > 0 and (marketable_type or crosses):
                return self._accept_delayed(market, order_id, owner, acct, token_id, side, price, shares,
                                            order_type, expiration, budget)
            if order_type == "FOK":
                fillable = self._walk(opposite, acct, side, price, shares, budget, dry=True)
                complete = (budget - fillable[1] < Decimal("0.01")) if budget is not None else fillable[0] >= shares
                if not complete:
                    reason = "order couldn't be fully filled. FOK orders are fully filled or killed."
                    self._emit_killed(Order(order_id, owner, acct, token_id, side, price, shares, order_type,
                                            int(self.clock.time()), 0, expiration), reason)
                    raise SimReject(reason, order_id=order_id)
            if order_type == "FAK" and self._walk(opposite, acct, side, price, shares, budget, dry=True)[0] <= 0:
                raise SimReject("no orders found to match with FAK order. FAK orders are partially filled or "
                                "killed if no match is found.", order_id=order_id)
            self._seq += 1
            order = Order(order_id, owner, acct, token_id, side, price, shares, order_type,
                          int(self.clock.time()), self._seq, expiration)
            self._orders[order_id] = order
            got, paid = self._match(order, market, budget)
            if order_type in ("GTC", "GTD") and order.remaining > 0:
                self._books[token_id].side(side).add(order)
                self._open_by_account.setdefault(acct, set()).add(order_id)
                order.status = "LIVE"
                self._touch(token_id)
                self._emit_order(order, "PLACEMENT")
            else:
                order.status = "MATCHED" if order.matched > 0 else "CANCELED"
                if budget is not None:
                    order.size = order.matched  # a market BUY is sized by what its budget bought
            trade_ids = list(order.trade_ids)
            hashes = [self._trade_hash(t) for t in trade_ids]
            making, taking = ((paid, got) if side == "BUY" else (got, paid))
            if side == "SELL" and self.sell_answer_net and trade_ids:   # (unknown: FACTS.md Part 0, 0.1)
                taking -= sum((t.fee for t in self._trades[-len(trade_ids):] if t.taker_order_id == order_id),
                              Decimal(0))
            return {"success": True, "errorMsg": "", "orderID": order_id,
                    "status": "matched" if order.status == "MATCHED" else "live",
                    "makingAmount": dec_str(making) if got > 0 else "",
                    "takingAmount": dec_str(taking) if got > 0 else "",
                    "transactionsHashes": hashes, "tradeIDs": trade_ids}

    def _accept_delayed(self, market: SimMarket, order_id: str, owner: str, acct: str, token_id: str, side: str,
                        price: Decimal, shares: Decimal, order_type: str, expiration: int,
                        budget: Decimal | None) -> dict:
        """A marketable order on a ``secondsDelay`` market: accepted now, matched once the delay has
        passed. It reserves its balance meanwhile (it is listed with the open orders as DELAYED)."""
        self._seq += 1
        now = self.clock.time()
        order = Order(order_id, owner, acct, token_id, side, price, shares, order_type, int(now), self._seq,
                      expiration, status="DELAYED", budget=budget)
        self._orders[order_id] = order
        self._open_by_account.setdefault(acct, set()).add(order_id)
        heapq.heappush(self._delayed, (now + market.seconds_delay, order.seq, order_id))
        self._emit_order(order, "PLACEMENT", "LIVE")   # the venue has taken it; it shows DELAYED over REST
        return {"success": True, "errorMsg": "", "orderID": order_id, "status": "delayed",
                "makingAmount": "", "takingAmount": "", "transactionsHashes": [], "tradeIDs": []}

    def run_due(self) -> None:
        """Match the delayed orders whose delay has passed on the clock (oldest first)."""
        with self._operation:
            now = self.clock.time()
            if self._status_due:
                self._run_due_statuses()
            while self._delayed and self._delayed[0][0] <= now:
                _, _, oid = heapq.heappop(self._delayed)
                order = self._orders.get(oid)
                if order is not None and order.status == "DELAYED":
                    self._match_delayed(order)

    def _match_delayed(self, order: Order) -> None:
        """Match a delayed order now; the user channel then hears how it ended (it had its PLACEMENT)."""
        self._settle_delayed(order)
        if order.status == "UNMATCHED":
            self._emit_order(order, "CANCELLATION", "CANCELED")
        elif order.matched > 0:
            self._emit_order(order, "UPDATE")

    def _settle_delayed(self, order: Order) -> None:
        market = self._by_token[order.token_id]
        self._open_by_account.get(order.account, set()).discard(order.id)
        order.status = "UNMATCHED"
        if market.closed or not market.accepting_orders:
            return
        asset = "COLLATERAL" if order.side == "BUY" else order.token_id
        need = order.remaining * order.price if order.side == "BUY" else order.remaining
        if order.budget is not None:
            need = order.budget
        if order.side == "BUY":   # it takes now: the largest fee it can cost on top (FACTS.md Part 0, 0.1)
            shares = order.budget / order.price if order.budget is not None else order.remaining
            need += self._max_taker_fee(market, shares, order.price)
        if need > self.available(order.account, asset):   # the funds went elsewhere meanwhile
            return
        opposite = self._books[order.token_id].side("SELL" if order.side == "BUY" else "BUY")
        if order.order_type == "FOK":
            got, paid = self._walk(opposite, order.account, order.side, order.price, order.size, order.budget,
                                   dry=True)
            complete = (order.budget - paid < Decimal("0.01")) if order.budget is not None else got >= order.size
            if not complete:
                return
        self._match(order, market, order.budget)
        if order.order_type in ("GTC", "GTD") and order.remaining > 0:
            self._books[order.token_id].side(order.side).add(order)
            self._open_by_account.setdefault(order.account, set()).add(order.id)
            order.status = "LIVE"
            self._touch(order.token_id)
        elif order.matched > 0:
            order.status = "MATCHED"
            if order.budget is not None:
                order.size = order.matched
        # else: nothing matched after the delay -> UNMATCHED (the venue's terminal status for this case)

    def _trade_hash(self, trade_id: str) -> str:
        return "0x" + hashlib.sha256(trade_id.encode()).hexdigest()

    def _walk(self, side_book: _Side, acct: str, taker_side: str, limit: Decimal, shares: Decimal,
              budget: Decimal | None, dry: bool):
        """Yield (shares, usdc) that would fill against ``side_book`` (best first, no self-trade)."""
        got, paid = Decimal(0), Decimal(0)
        for price in list(side_book.best_first()):
            if (taker_side == "BUY" and price > limit) or (taker_side == "SELL" and price < limit):
                break
            for maker in list(side_book.levels.get(price, ())):
                if maker.account == acct or (acct == MM_ACCOUNT and maker.is_mm):
                    continue
                qty = self._fill_qty(maker, price, budget - paid if budget is not None else None, shares - got)
                if qty <= 0:
                    return got, paid
                got += qty
                paid += (qty * price).quantize(BASE, rounding=ROUND_DOWN)
        return got, paid

    @staticmethod
    def _fill_qty(maker: Order, price: Decimal, budget_left: Decimal | None, wanted: Decimal) -> Decimal:
        """Shares to take from one resting order: by budget for a market BUY, else by size. A budget
        remainder worth less than 0.01 share buys nothing (it stays with the buyer)."""
        if budget_left is None:
            return min(maker.remaining, wanted)
        qty = min(maker.remaining, (budget_left / price).quantize(BASE, rounding=ROUND_DOWN))
        return qty if qty >= SHARES_2DP else Decimal(0)

    def _match(self, taker: Order, market: SimMarket, budget: Decimal | None) -> tuple[Decimal, Decimal]:
        """Execute ``taker`` against resting orders at their prices; returns (shares, usdc) filled."""
        book = self._books[taker.token_id]
        opposite = book.side("SELL" if taker.side == "BUY" else "BUY")
        got, paid = Decimal(0), Decimal(0)
        for price in list(opposite.best_first()):
            if (taker.side == "BUY" and price > taker.price) or (taker.side == "SELL" and price < taker.price):
                break
            for maker in list(opposite.levels.get(price, ())):
                if maker.account == taker.account or (taker.is_mm and maker.is_mm):
                    continue  # no self-trade: the resting order stays
                qty = self._fill_qty(maker, price, budget - paid if budget is not None else None, taker.remaining)
                if qty <= 0:
                    return got, paid
                self._execute(taker, maker, qty, price, market)
                got += qty
                paid += (qty * price).quantize(BASE, rounding=ROUND_DOWN)
                if budget is None and taker.remaining <= 0:
                    return got, paid
        return got, paid

    def _execute(self, taker: Order, maker: Order, qty: Decimal, price: Decimal, market: SimMarket) -> None:
        """One trade: ``taker`` against the resting ``maker``, ``qty`` shares at the maker's ``price``.

        Balances move V2's way (FACTS.md Part 0, 0.1): the buyer pays the notional and gets every share, the
        seller gives the shares and gets the notional, and the taker alone pays the fee in USDC on top (a
        BUY) or out of the proceeds (a SELL). A ghost fill (FACTS.md Part 0, 0.2; see ``ghost_fills``) moves
        nothing at all, although the orders, the book and the trade record see a match; its trade turns
        FAILED later instead of CONFIRMED."""
        notional = (qty * price).quantize(BASE, rounding=ROUND_DOWN)
        token = taker.token_id
        now = self.clock.time()
        ghost = self._ghosts > 0 and not (taker.is_mm and maker.is_mm)
        if ghost:
            self._ghosts -= 1
            fee = Decimal(0)
        else:
            fee = self._fee(market, qty, price)
            buyer, seller = (taker, maker) if taker.side == "BUY" else (maker, taker)
            self._credit(buyer.account, "COLLATERAL", -notional)
            self._credit(buyer.account, token, qty)
            self._credit(seller.account, token, -qty)
            self._credit(seller.account, "COLLATERAL", notional)
            if fee > 0:
                self._credit(taker.account, "COLLATERAL", -fee)
            if self.settlement_delay_s > 0 and buyer.account != MM_ACCOUNT:
                self._unsettled.setdefault((buyer.account, token), []).append(
                    (now + self.settlement_delay_s, qty))
            market.volume += notional
        taker.matched += qty
        maker.matched += qty
        trade = Trade(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), taker.id, taker.account, taker.owner,
                      maker.id, maker.account, maker.owner, token, market.condition_id, market.outcome_of(token),
                      taker.side, price, qty, fee, int(now), "", last_update=int(now), ghost=ghost)
        trade.tx_hash = self._trade_hash(trade.id)
        self._trades.append(trade)
        for acct in {taker.account, maker.account}:
            if acct != MM_ACCOUNT:
                self._trades_by_account.setdefault(acct, []).append(trade)
        taker.trade_ids.append(trade.id)
        maker.trade_ids.append(trade.id)
        if maker.remaining <= 0:
            self._close_order(maker, "MATCHED")
        self._books[token].last_trade_price = price
        self._touch(token)
        if ghost:
            self._schedule_status(trade, "FAILED", self._ghost_fail_s)
        else:
            self._schedule_status(trade, "CONFIRMED", self.settlement_delay_s)
        if self._watched or self._watch_users:
            self._published_trade(trade, maker)

    def _schedule_status(self, trade: Trade, status: str, after_s: float) -> None:
        """``trade`` becomes ``status`` after ``after_s`` seconds on the clock (run at the next ``run_due``), or
        at the end of this operation for 0 (FACTS.md Part 0, 0.2: MATCHED, then CONFIRMED or FAILED)."""
        if after_s > 0:
            heapq.heappush(self._status_due, (self.clock.time() + after_s, self._next_status, trade, status))
            self._next_status += 1
        elif self._watch_users:
            self._status_now.append((trade, status))   # its event follows MATCHED at the end of the operation
        else:
            trade.status = status   # nobody can look before the operation ends (the lock is held)

    def _set_status(self, trade: Trade, status: str) -> None:
        trade.status = status
        trade.last_update = int(self.clock.time())
        self._emit_trade(trade, status)

    def _close_order(self, order: Order, status: str) -> None:
        self._books[order.token_id].side(order.side).remove(order)
        self._open_by_account.get(order.account, set()).discard(order.id)
        order.status = status
        self._touch(order.token_id)

    def cancel(self, account: str, order_ids: list[str]) -> dict:
        """Cancel ``account``'s orders: {"canceled": [ids], "not_canceled": {id: reason}}. With
        ``delayed_uncancellable`` on, a DELAYED order is not cancelled (FACTS.md Part 0, 0.5: crypto up-or-down
        markets from June 2026) and matches when its delay is over."""
        acct = account.lower()
        with self._operation:
            canceled, not_canceled = [], {}
            for oid in order_ids:
                order = self._orders.get(oid)
                if order is None or order.account != acct:
                    not_canceled[oid] = "order not found"
                elif order.status not in LIVE_STATUSES:
                    not_canceled[oid] = "already canceled or matched"
                elif order.status == "DELAYED" and self.delayed_uncancellable:   # FACTS.md Part 0, 0.5
                    not_canceled[oid] = DELAYED_CANCEL_MESSAGE
                else:
                    self._close_order(order, "CANCELED")
                    self._emit_order(order, "CANCELLATION")
                    canceled.append(oid)
            return {"canceled": canceled, "not_canceled": not_canceled}

    def cancel_all(self, account) -> dict:
        with self._operation:
            return self.cancel(account, sorted(self._open_by_account.get(account.lower(), ())))

    def cancel_market(self, account, market: str | None = None, asset_id: str | None = None) -> dict:
        with self._operation:
            ids = []
            for oid in self._open_by_account.get(account.lower(), ()):
                o = self._orders[oid]
                m = self._by_token[o.token_id]
                if (market is None or m.condition_id == market) and (asset_id is None or o.token_id == asset_id):
                    ids.append(oid)
            return self.cancel(account, sorted(ids))

    # -- views --------------------------------------------------------------------------------------

    def _order_json(self, o: Order) -> dict:
        m = self._by_token[o.token_id]
        return {"id": o.id, "status": o.status, "owner": o.owner, "maker_address": o.account,
                "market": m.condition_id, "asset_id": o.token_id, "side": o.side,
                "original_size": dec_str(o.size), "size_matched": dec_str(o.matched), "price": dec_str(o.price),
                "outcome": m.outcome_of(o.token_id), "expiration": str(o.expiration), "order_type": o.order_type,
                "associate_trades": list(o.trade_ids), "created_at": o.created_at}

    def order_view(self, order_id, include_forgotten: bool = False) -> dict | None:
        """``GET /data/order/{id}``'s answer: None for an unknown order and, while ``forget_orders`` is on (the
        default), for every order no longer live (FACTS.md Part 0, 0.3: only LIVE and DELAYED orders are
        answered; a filled, cancelled, killed or unmatched one is known from ``/data/trades``).
        ``include_forgotten``: the simulator's own record of any known order (tests, inspection)."""
        with self.lock:
            o = self._orders.get(order_id)
            if o is None or (self.forget_orders and not include_forgotten and o.status not in LIVE_STATUSES):
                return None
            return self._order_json(o)

    def order_account(self, order_id) -> str | None:
        o = self._orders.get(order_id)
        return o.account if o else None

    def open_orders(self, account, market=None, asset_id=None, order_id=None) -> list[dict]:
        with self.lock:
            out = []
            for oid in self._open_by_account.get(account.lower(), ()):
                o = self._orders[oid]
                if order_id and oid != order_id:
                    continue
                if asset_id and o.token_id != str(asset_id):
                    continue
                if market and self._by_token[o.token_id].condition_id != market:
                    continue
                out.append(o)
            out.sort(key=lambda o: o.seq)
            return [self._order_json(o) for o in out]

    def trades(self, account, trade_id=None, market=None, asset_id=None, after=None, before=None) -> list[dict]:
        acct = account.lower()
        with self.lock:
            out = []
            for t in self._trades_by_account.get(acct, ()):
                if trade_id and t.id != trade_id:
                    continue
                if asset_id and t.token_id != str(asset_id):
                    continue
                if market and t.market != market:
                    continue
                if after is not None and t.match_time < int(after):
                    continue
                if before is not None and t.match_time > int(before):
                    continue
                out.append(self._trade_json(t, acct))
            return out

    def _trade_json(self, t: Trade, acct: str) -> dict:
        """A trade as ``GET /data/trades`` reports it to ``acct``, in the shape of trades recorded from the venue,
        with its current status (MATCHED, CONFIRMED or FAILED: FACTS.md Part 0, 0.2).

        The top level is always the TAKER's side of the match (its order id, side, size and price);
        ``trader_side`` says which side the account was on. An account that was the MAKER finds its own
        fill in ``maker_orders`` (order id, matched amount, price and its own side)."""
        is_taker = t.taker_account == acct
        maker_side = "SELL" if t.taker_side == "BUY" else "BUY"
        fee_bps = self._by_token[t.token_id].fee_rate_bps
        return {
            "id": t.id, "taker_order_id": t.taker_order_id, "market": t.market, "asset_id": t.token_id,
            "side": t.taker_side, "size": dec_str(t.size), "fee_rate_bps": fee_bps, "price": dec_str(t.price),
            "status": t.status, "match_time": str(t.match_time), "last_update": str(t.last_update),
            "outcome": t.outcome, "bucket_index": 0, "owner": t.taker_owner if is_taker else t.maker_owner,
            "maker_address": acct, "transaction_hash": t.tx_hash, "trader_side": "TAKER" if is_taker else "MAKER",
            "maker_orders": [{"order_id": t.maker_order_id, "owner": t.maker_owner, "maker_address": t.maker_account,
                              "matched_amount": dec_str(t.size), "price": dec_str(t.price), "fee_rate_bps": fee_bps,
                              "asset_id": t.token_id, "outcome": t.outcome, "side": maker_side}],
        }

    def book(self, token_id) -> dict:
        token_id = str(token_id)
        with self.lock:
            market = self._by_token.get(token_id)
            if market is None:
                raise SimReject("No orderbook exists for the requested token id", 404)
            b = self._books[token_id]

            def levels(side: _Side, ascending: bool) -> list[dict]:
                prices = side.prices if ascending else list(reversed(side.prices))
                return [{"price": dec_str(p), "size": dec_str(sum((o.remaining for o in side.levels[p]), Decimal(0)))}
                        for p in prices]

            data = {"market": market.condition_id, "asset_id": token_id,
                    "timestamp": str(int(self.clock.time() * 1000)), "hash": "",
                    "bids": levels(b.bids, True), "asks": levels(b.asks, False),
                    "min_order_size": dec_str(market.min_order_size), "tick_size": dec_str(market.tick_size),
                    "neg_risk": market.neg_risk, "last_trade_price": dec_str(b.last_trade_price)}
            data["hash"] = hashlib.sha1(json.dumps(data, separators=(",", ":")).encode()).hexdigest()
            return data

    def best_bid(self, token_id) -> Decimal | None:
        with self.lock:
            return self._books[str(token_id)].bids.best()

    def best_ask(self, token_id) -> Decimal | None:
        with self.lock:
            return self._books[str(token_id)].asks.best()

    def midpoint(self, token_id) -> Decimal | None:
        with self.lock:
            bid, ask = self.best_bid(token_id), self.best_ask(token_id)
            if bid is None or ask is None:
                return None
            return (bid + ask) / 2

    def last_trade_price(self, token_id) -> Decimal:
        with self.lock:
            return self._books[str(token_id)].last_trade_price

    # -- push feeds (see the module doc) ------------------------------------------------------------

    def watch_books(self, token_ids) -> list[dict]:
        """Publish the book changes of ``token_ids`` from now on; returns their ``book`` snapshots (unknown
        token ids are skipped). The feed server calls this under the lock and queues the snapshots before
        releasing it, so a subscriber gets the snapshot and then every change after it, in order."""
        with self.lock:
            out, seen = [], set()
            for token in map(str, token_ids):
                market = self._by_token.get(token)
                if market is None or token in seen:
                    continue
                seen.add(token)
                if token not in self._watched:
                    b = self._books[token]
                    self._watched[token] = _Published(self._levels(b.bids), self._levels(b.asks), market.tick_size,
                                                      *self._bests(b))
                out.append(self._book_message(token))
            return out

    def unwatch_books(self, keep) -> None:
        """Stop publishing the tokens not in ``keep`` (the ones no feed client subscribes to any more)."""
        with self.lock:
            for token in [t for t in self._watched if t not in keep]:
                del self._watched[token]
                self._dirty.pop(token, None)
                self._traded.pop(token, None)

    def watch_users(self, on: bool) -> None:
        """Build user-channel events (orders and trades of users) while ``on``."""
        with self.lock:
            self._watch_users = bool(on)

    def _ms(self) -> str:
        return str(int(self.clock.time() * 1000))

    def _touch(self, token: str) -> None:
        """``token``'s book changed in this operation (recorded only while the market channel watches it)."""
        if token in self._watched:
            self._dirty[token] = None

    @staticmethod
    def _levels(side: _Side) -> dict[Decimal, Decimal]:
        return {p: sum((o.remaining for o in side.levels[p]), Decimal(0)) for p in side.prices}

    @staticmethod
    def _bests(b: _Book) -> tuple[str, str]:
        """(best bid, best ask) as the market channel writes them, "" for an empty side."""
        return (dec_str(b.bids.prices[-1]) if b.bids.prices else "",
                dec_str(b.asks.prices[0]) if b.asks.prices else "")

    def _book_message(self, token: str) -> dict:
        """A market-channel ``book`` message: the REST book's levels (best LAST), tick and last trade price."""
        data = self.book(token)
        return {"event_type": "book", **{k: data[k] for k in ("market", "asset_id", "timestamp", "hash", "bids",
                                                               "asks", "tick_size", "last_trade_price")}}

    def _diff_book(self, token: str, out: list[MarketEvent]) -> None:
        """Append the messages that bring a subscriber from what was last published about ``token`` to its book
        now: tick_size_change, one price_change listing every changed level, best_bid_ask (custom feature)."""
        pub = self._watched.get(token)
        if pub is None:
            return
        market, b = self._by_token[token], self._books[token]
        bids, asks = self._levels(b.bids), self._levels(b.asks)
        best_bid, best_ask = self._bests(b)
        ts, key, cond = self._ms(), (token,), market.condition_id
        if market.tick_size != pub.tick:
            out.append((key, False, {"event_type": "tick_size_change", "market": cond, "asset_id": token,
                                     "old_tick_size": dec_str(pub.tick), "new_tick_size": dec_str(market.tick_size),
                                     "timestamp": ts}))
        changes = [(price, side, new.get(price, Decimal(0)))
                   for side, new, old in (("BUY", bids, pub.bids), ("SELL", asks, pub.asks))
                   for price in sorted(new.keys() | old.keys())
                   if new.get(price, Decimal(0)) != old.get(price, Decimal(0))]
        if changes:
            digest = hashlib.sha1(repr((token, sorted(bids.items()), sorted(asks.items()))).encode()).hexdigest()
            out.append((key, False, {"event_type": "price_change", "market": cond, "price_changes": [
                {"asset_id": token, "price": dec_str(price), "size": dec_str(size), "side": side, "hash": digest,
                 "best_bid": best_bid, "best_ask": best_ask} for price, side, size in changes], "timestamp": ts}))
        if (best_bid, best_ask) != (pub.best_bid, pub.best_ask):
            spread = dec_str(Decimal(best_ask) - Decimal(best_bid)) if best_bid and best_ask else ""
            out.append((key, True, {"event_type": "best_bid_ask", "market": cond, "asset_id": token,
                                    "best_bid": best_bid, "best_ask": best_ask, "spread": spread, "timestamp": ts}))
        pub.bids, pub.asks, pub.tick, pub.best_bid, pub.best_ask = bids, asks, market.tick_size, best_bid, best_ask

    def _flush(self) -> None:
        """End of an operation: diff the touched books, then the trades and resolutions, the books of traded
        tokens, then the user events (the trades' CONFIRMED/FAILED last), handed to the feed in one call."""
        market: list[MarketEvent] = []
        for token in self._dirty:
            self._diff_book(token, market)
        self._dirty.clear()
        market.extend(self._market_tail)
        self._market_tail.clear()
        for token in self._traded:   # FACTS.md Part 0, 0.5: a book after trades, after their other messages
            if token in self._watched:
                market.append(((token,), False, self._book_message(token)))
        self._traded.clear()
        for trade, status in self._status_now:
            self._set_status(trade, status)
        self._status_now.clear()
        user, self._user_out = self._user_out, []
        if self.feed is not None and (market or user):
            self.feed.publish(market, user)

    def _order_event(self, o: Order, kind: str, status: str | None = None) -> dict:
        """A user-channel ``order`` event (PLACEMENT, UPDATE or CANCELLATION) in the venue's shape."""
        m = self._by_token[o.token_id]
        return {"event_type": "order", "type": kind, "id": o.id, "owner": o.owner, "order_owner": o.owner,
                "market": m.condition_id, "asset_id": o.token_id, "side": o.side, "original_size": dec_str(o.size),
                "size_matched": dec_str(o.matched), "price": dec_str(o.price),
                "associate_trades": list(o.trade_ids) or None, "outcome": m.outcome_of(o.token_id),
                "created_at": str(o.created_at), "expiration": str(o.expiration), "order_type": o.order_type,
                "status": status or o.status, "maker_address": o.account, "timestamp": self._ms()}

    def _emit_order(self, o: Order, kind: str, status: str | None = None) -> None:
        if self._watch_users and not o.is_mm:
            self._user_out.append((o.account, o.owner, self._order_event(o, kind, status)))

    def _emit_killed(self, o: Order, reason: str) -> None:
        """The CANCELLATION the venue sends for a killed FOK (status ``CANCELED_`` + the reason, no fills)."""
        if self._watch_users:
            event = self._order_event(o, "CANCELLATION", "CANCELED_" + reason)
            event.update(size_matched="", outcome="", created_at="", associate_trades=[])
            self._user_out.append((o.account, o.owner, event))

    def _emit_trade(self, t: Trade, status: str) -> None:
        """The trade as a user-channel ``trade`` event to each user side of it (its ``_trade_json`` view)."""
        if not self._watch_users:
            return
        for acct, owner in ((t.taker_account, t.taker_owner), (t.maker_account, t.maker_owner)):
            if acct != MM_ACCOUNT:
                event = self._trade_json(t, acct)
                event.update(event_type="trade", type="TRADE", status=status, trade_owner=owner,
                             timestamp=self._ms(), last_update=str(int(self.clock.time())))
                self._user_out.append((acct, owner, event))

    def _published_trade(self, t: Trade, maker: Order) -> None:
        """The feeds' part of a fill: last_trade_price (and a ``book`` at the end of the operation), trade
        MATCHED (CONFIRMED or FAILED later), the maker's UPDATE."""
        if t.token_id in self._watched:
            market = self._by_token[t.token_id]
            self._market_tail.append(((t.token_id,), False, {
                "event_type": "last_trade_price", "asset_id": t.token_id, "market": t.market,
                "price": dec_str(t.price), "side": t.taker_side, "size": dec_str(t.size),
                "fee_rate_bps": market.fee_rate_bps, "timestamp": self._ms()}))
            self._traded[t.token_id] = None
        if not self._watch_users:
            return
        self._emit_trade(t, "MATCHED")
        self._emit_order(maker, "UPDATE")

    def _run_due_statuses(self) -> None:
        now = self.clock.time()
        while self._status_due and self._status_due[0][0] <= now:
            _, _, trade, status = heapq.heappop(self._status_due)
            self._set_status(trade, status)

    # -- the living market and control --------------------------------------------------------------

    def _mm_order(self, token_id: str, side: str, price: Decimal, size: Decimal) -> Order:
        self._seq += 1
        oid = f"0xmm{self._seq:060x}"
        order = Order(oid, MM_OWNER, MM_ACCOUNT, token_id, side, price, size, "GTC", int(self.clock.time()), self._seq)
        self._orders[oid] = order
        return order

    def _clear_mm(self, token_id: str) -> None:
        self._touch(token_id)
        b = self._books[token_id]
        for side in (b.bids, b.asks):
            for price in list(side.prices):
                for o in list(side.levels[price]):
                    if o.is_mm:
                        side.remove(o)
                        o.status = "CANCELED"
                        del self._orders[o.id]  # MM orders are not queried; keep memory flat

    def _requote(self, market: SimMarket) -> None:
        """Other traders' ladder around the mid on both tokens (never crossing users' resting orders)."""
        tick = market.tick_size
        for token in market.token_ids:
            self._clear_mm(token)
            mid = market.mid_of(token)
            b = self._books[token]
            for k in range(1, market.liquidity_depth + 1):
                bid_p, ask_p = mid - tick * k, mid + tick * k
                if bid_p >= tick:
                    user_ask = b.asks.best()
                    if user_ask is None or bid_p < user_ask:
                        b.bids.add(self._mm_order(token, "BUY", bid_p, Decimal(self.rng.randint(50, 300))))
                if ask_p <= ONE - tick:
                    user_bid = b.bids.best(exclude_account=MM_ACCOUNT)
                    if user_bid is None or ask_p > user_bid:
                        b.asks.add(self._mm_order(token, "SELL", ask_p, Decimal(self.rng.randint(50, 300))))

    def _sweep_users(self, market: SimMarket, token: str, mid: Decimal) -> None:
        """Other traders trade through users' resting orders the new price has crossed, at their prices."""
        b = self._books[token]
        for price in list(b.asks.prices):
            if price > mid:
                break
            for o in list(b.asks.levels.get(price, ())):
                if not o.is_mm:
                    self._execute(self._mm_order(token, "BUY", price, o.remaining), o, o.remaining, price, market)
        for price in list(reversed(b.bids.prices)):
            if price < mid:
                break
            for o in list(b.bids.levels.get(price, ())):
                if not o.is_mm:
                    self._execute(self._mm_order(token, "SELL", price, o.remaining), o, o.remaining, price, market)

    def move_price(self, token_id, price) -> None:
        """Move the market to ``price`` (for ``token_id``), filling users' crossed orders on the way."""
        with self._operation:
            market = self._by_token[str(token_id)]
            p = Decimal(str(price))
            yes = p if str(token_id) == market.token_ids[0] else ONE - p
            market.tick_size, market.yes_mid = self._tick_and_mid(yes, market.base_tick, market.dynamic_tick) \
                if market.dynamic_tick else (market.tick_size, self._snap(yes, market.tick_size, 2))
            self._note_mid(market)
            for token in market.token_ids:
                self._sweep_users(market, token, market.mid_of(token))
            self._requote(market)

    def set_book(self, token_id, bids, asks) -> None:
        """Replace other traders' liquidity on a token; levels that cross users' orders trade with them."""
        with self._operation:
            token_id = str(token_id)
            market = self._by_token[token_id]
            self._clear_mm(token_id)
            b = self._books[token_id]
            for side, levels in (("BUY", bids), ("SELL", asks)):
                for price, size in levels:
                    order = self._mm_order(token_id, side, Decimal(str(price)), Decimal(str(size)))
                    self._match(order, market, None)
                    if order.remaining > 0:
                        b.side(side).add(order)
            self._touch(token_id)

    def resolve(self, condition_id, winner: str) -> None:
        """Close the market: cancel users' open orders with status ``CANCELED_MARKET_RESOLVED`` (a user-channel
        CANCELLATION each), send ``market_resolved`` unless ``market_resolved_messages`` is off (FACTS.md Part
        0, 0.5: it may never arrive), pay 1 USDC per winning share."""
        with self._operation:
            market = self.market_by_condition(condition_id)
            if market is None:
                raise SimReject("market not found", 404)
            for oid in [o.id for o in self._orders.values()
                        if o.token_id in market.token_ids and o.status in LIVE_STATUSES]:
                order = self._orders[oid]
                if order.is_mm:
                    continue
                self._close_order(order, RESOLVED_STATUS)
                self._emit_order(order, "CANCELLATION")
            for token in market.token_ids:
                self._clear_mm(token)
            market.closed, market.accepting_orders, market.winner = True, False, winner
            market.closed_at = self.clock.time()   # its history ends here (see prices_history)
            win_token = market.token_ids[0] if winner.lower() == market.outcomes[0].lower() else market.token_ids[1]
            if self.market_resolved_messages and any(t in self._watched for t in market.token_ids):
                self._market_tail.append((market.token_ids, True, {
                    "event_type": "market_resolved", "id": market.id, "market": market.condition_id,
                    "assets_ids": list(market.token_ids), "winning_asset_id": win_token,
                    "winning_outcome": market.outcome_of(win_token), "timestamp": self._ms(), "tags": []}))
            for acct, toks in self._tokens.items():
                for token in market.token_ids:
                    qty = toks.pop(token, Decimal(0))
                    if token == win_token and qty > 0:
                        self._usdc[acct] = self._usdc.get(acct, Decimal(0)) + qty

    # -- price history (GET /prices-history) ----------------------------------------------------------

    def _note_mid(self, market: SimMarket) -> None:
        """Record the market's mid now (under the lock; a closed market's history has ended)."""
        if not market.closed:
            self._history[market.id].note(self.clock.time(), int(market.yes_mid * HISTORY_UNITS))

    def record_history(self, token_id, points) -> int:
        """Load a price path into the history of ``token_id``'s market (what ``GET /prices-history`` serves), for
        tests that need a hand-made path: ``points`` are (unix seconds, price of ``token_id``), in any order, prices
        in [0, 1] with at most 6 decimals; the other token's price is 1 - it. The path replaces what the history
        held from its first minute to its last (the sim's own mid, recorded as it moves, stays outside that span);
        the market's current mid and book do not change. Returns the number of entries the path became (one per
        minute: within a minute the latest point counts, as for the sim's own moves)."""
        token_id = str(token_id)
        with self.lock:
            market = self._by_token.get(token_id)
        if market is None:
            raise SimReject(f"market not found for token {token_id}", 404)
        parsed: list[tuple[float, int]] = []
        for i, point in enumerate(points):
            try:
                t, p = point
                when, price = float(t), Decimal(str(p))
                units = price * HISTORY_UNITS
                if not (math.isfinite(when) and 0 <= price <= 1):
                    raise ValueError
            except (TypeError, ValueError, InvalidOperation):
                raise SimReject(f"history point {i}: expected (unix seconds, price in [0, 1]), got {point!r}") \
                    from None
            if units != units.to_integral_value():
                raise SimReject(f"history point {i}: price {p} has more than 6 decimals")
            yes = int(units) if token_id == market.token_ids[0] else HISTORY_UNITS - int(units)
            parsed.append((when, yes))
        parsed.sort(key=lambda tp: tp[0])
        by_minute = {math.ceil(t / HISTORY_STEP_S): units for t, units in parsed}
        with self.lock:
            self._history[market.id].load(sorted(by_minute.items()))
        return len(by_minute)

    def prices_history(self, token_id, start_ts: float, end_ts: float,
                       fidelity_min: int) -> list[tuple[int, Decimal]] | None:
        """``token_id``'s mid at each bucket of ``fidelity_min`` minutes in [start_ts, end_ts] (FACTS.md Part 0,
        0.7: "``p`` follows the midpoint, forward-filled"): [(unix seconds, price)], oldest first; None for a token
        the sim does not know. Buckets fall on whole multiples of ``fidelity_min`` minutes since the epoch (an
        assumption: how the venue places them is not recorded); each carries the last mid at or before it. No
        bucket before the market's first mid, after the clock's now, or after the market was resolved (also an
        assumption: the venue's answer after a resolution is not recorded)."""
        step = max(1, int(fidelity_min))
        with self.lock:
            market = self._by_token.get(str(token_id))
            if market is None:
                return None
            last_s = min(float(end_ts), self.clock.time(),
                         market.closed_at if market.closed_at is not None else math.inf)
            first = math.ceil(float(start_ts) / (HISTORY_STEP_S * step)) * step
            last = math.floor(last_s / HISTORY_STEP_S)
            rows = self._history[market.id].series(first, last, step) if last >= first else []
        no = str(token_id) != market.token_ids[0]
        prices: dict[int, Decimal] = {}
        out = []
        for minute, units in rows:
            if no:
                units = HISTORY_UNITS - units
            price = prices.get(units)
            if price is None:
                price = prices[units] = Decimal(units) / _HISTORY_UNITS_DEC
            out.append((minute * HISTORY_STEP_S, price))
        return out

    def ghost_fills(self, n: int, fail_after_s: float = 1.0) -> None:
        """The next ``n`` executions with a user account on either side are ghost fills (FACTS.md Part 0, 0.2:
        matched, answered ``matched`` with transaction hashes, shown in ``size_matched``, never settled): the
        book and the orders see the match (a fully matched maker leaves the book and stops reserving), the
        user channel gets the trade MATCHED and the maker's UPDATE, but no balance moves (no USDC, shares,
        fee or volume). Each ghost trade turns FAILED ``fail_after_s`` seconds later on the clock (at the next
        ``advance``/``run_due``; 0: at the end of the operation that matched it), never CONFIRMED. ``n`` 0 ends
        it; a new call replaces the count."""
        with self.lock:
            self._ghosts = max(0, int(n))
            self._ghost_fail_s = max(0.0, float(fail_after_s))

    def balance_lock(self, seconds: float) -> None:
        """For ``seconds`` on the clock from now, refuse every order placement of every user account with
        ``not enough balance / allowance: the sum of matched orders exceeds the balance`` (HTTP 400) while
        balance reads, cancels and other reads work (FACTS.md Part 0, 0.4: the venue's matched-orders
        counter, observed after some tens of FAK fills, until the venue resets it). 0 ends a lock."""
        with self.lock:
            s = float(seconds)
            self._balance_locked_until = self.clock.time() + s if s > 0 else None

    def advance(self) -> None:
        """Catch the living market up with the clock: a seeded random walk with occasional jumps."""
        with self._operation:
            self.run_due()
            now = self.clock.time()
            steps = int((now - self._last_advance) // self.step_seconds)
            if steps <= 0:
                return
            self._last_advance += steps * self.step_seconds
            moving = [m for m in self._markets.values() if m.volatility > 0 and not m.closed]
            if not moving:
                return
            # Long gaps are walked in at most 600 coarser steps (same variance, bounded cost).
            n = min(steps, 600)
            scale = math.sqrt(steps / n)
            for _ in range(n):
                for m in moving:
                    sigma = float(m.volatility) * scale
                    if self.rng.random() < 0.02:
                        sigma *= 5
                    target = m.yes_mid + Decimal(str(round(self.rng.gauss(0, sigma), 6)))
                    snapped = self._snap(target, m.tick_size, 2)
                    if snapped != m.yes_mid:
                        self.move_price(m.token_ids[0], snapped)
