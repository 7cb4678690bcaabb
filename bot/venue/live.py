"""The live venue: the only module that imports ``py_clob_client_v2``.

It turns the SDK's calls into the bot's data types and its exceptions into the bot's own:
``TemporaryVenueError`` (retry later), ``OrderRejected`` (refused, nothing happened),
``UnknownOutcome`` (an order may or may not have been taken) and ``MalformedResponse``.
It also counts every HTTP request it causes, implicit SDK calls included, by endpoint.
"""
from __future__ import annotations

import logging
import random
import re
import threading
from collections import Counter
from contextlib import contextmanager
from decimal import Decimal
from typing import Callable, Iterable, Iterator, TypeVar
from urllib.parse import urlparse

import httpx
from py_clob_client_v2 import (
    ApiCreds,
    AssetType,
    BalanceAllowanceParams,
    BookParams,
    ClobClient,
    MarketOrderArgs,
    OrderArgs,
    OrderPayload,
    OrderType,
    PartialCreateOrderOptions,
)
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.exceptions import PolyApiException, PolyException
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2
from py_clob_client_v2.http_helpers import helpers as _sdk_http

from bot.clock import Clock, SystemClock
from bot.errors import MalformedResponse, OrderRejected, TemporaryVenueError, UnknownOutcome, VenueError
from bot.money import USDC_QUANTUM, to_decimal, to_sdk_float
from bot.venue.base import Book, CancelResult, Fill, MarketInfo, OrderState

log = logging.getLogger("bot.venue.live")

#: Tokens per POST /books request. The venue documents no limit; 500 keeps reads at one per loop up to
#: 500 positions while bodies stay small (about 40 kB).
BOOKS_CHUNK = 500
#: Statuses that mean "not now" rather than "no".
TEMPORARY_STATUSES = {425, 429, 500, 502, 503, 504}
#: Base units per USDC / share on chain.
BASE_UNITS = Decimal(1_000_000)
#: Reads are retried this many times on temporary errors, with capped exponential backoff and jitter.
READ_RETRIES = 3
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 5.0
#: 425 (engine restart, ~90 s) and 503 (cancel-only) are windows to wait out, not blips to hammer.
WINDOW_STATUSES = {425, 503}
#: Start-up calls keep retrying temporary refusals this long (an engine restart answers 425 for about 90 s).
STARTUP_RETRY_S = 180.0

T = TypeVar("T")

_ID_SEGMENT = re.compile(r"^(0x[0-9a-fA-F]+|\d{6,}|[0-9a-f-]{20,})$")
_current = threading.local()


def _endpoint_key(method: str, url: str) -> str:
    """'GET /data/order/{id}' style key: path only, ids collapsed."""
    parts = urlparse(url).path.rstrip("/").split("/")
    parts = ["{id}" if _ID_SEGMENT.match(p or "") else p for p in parts]
    return f"{method.upper()} {'/'.join(parts) or '/'}"


def _count_request(request: httpx.Request) -> None:
    counter = getattr(_current, "counter", None)
    if counter is not None:
        with counter[1]:
            counter[0][_endpoint_key(request.method, str(request.url))] += 1


def install_http_client(timeout_s: float) -> None:
    """Replace the SDK's process-wide httpx client: our timeout, and a hook that counts requests."""
    _sdk_http._http_client = httpx.Client(
        http2=True, timeout=httpx.Timeout(timeout_s), event_hooks={"request": [_count_request]}
    )


class _Client(ClobClient):
    """The SDK client without its post-order settlement polling (up to 30 s of blocking per order).
    The bot confirms fills itself from the order and the trades."""

    def _resolve_transactions_hashes(self, response):  # noqa: D401 - SDK hook
        return response


def _error_text(exc: PolyApiException) -> str:
    msg = exc.error_msg
    if isinstance(msg, dict):
        return str(msg.get("error") or msg.get("errorMsg") or msg)
    return str(msg or "no message")


class LiveVenue:
    """Polymarket's CLOB through py-clob-client-v2 (works the same against bot/sim)."""

    name = "live"
    log_prefix = ""

    def __init__(
        self,
        host: str,
        chain_id: int = 137,
        private_key: str | None = None,
        funder: str | None = None,
        signature_type: int = 0,
        api_creds: tuple[str, str, str] | None = None,
        timeout_s: float = 5.0,
        clock: Clock | None = None,
        max_requests_per_second: float = 20.0,
        seed: int | None = None,
    ):
        install_http_client(timeout_s)
        self.host = host.rstrip("/")
        self.clock = clock or SystemClock()
        self._rng = random.Random(seed)
        self._rate = max_requests_per_second
        self._tokens = max_requests_per_second  # a token bucket: bursts of up to one second's worth
        self._refilled_at = self.clock.time()
        self.retries = 0
        self._counts: Counter[str] = Counter()
        self._counter = (self._counts, threading.Lock())
        self._info: dict[str, MarketInfo] = {}
        self._chain_id = chain_id
        self._client = _Client(
            self.host, chain_id=chain_id, key=private_key, signature_type=signature_type, funder=funder
        )
        self.address = self._client.get_address() if private_key else None
        self.funder = funder or self.address
        if private_key:
            if api_creds:
                creds = ApiCreds(api_key=api_creds[0], api_secret=api_creds[1], api_passphrase=api_creds[2])
            else:
                creds = self._call_at_startup("POST /auth/api-key", self._client.create_or_derive_api_key)
            self._client.set_api_creds(creds)

    def _call_at_startup(self, endpoint: str, fn: Callable[[], T]) -> T:
        """A start-up call (deriving the API key): temporary refusals (429, 425 engine restart, 503
        cancel-only, 5xx, transport errors) are retried with the reads' backoff for up to STARTUP_RETRY_S,
        so a venue that is busy for a while does not stop the bot; a definite refusal (a bad key) does."""
        deadline = self.clock.time() + STARTUP_RETRY_S
        while True:
            try:
                return self._call(endpoint, fn, read=True)
            except TemporaryVenueError as exc:
                if self.clock.time() >= deadline:
                    raise TemporaryVenueError(f"{exc.message}; still refused after {STARTUP_RETRY_S:.0f} s of "
                                              "retries at start-up: try again later",
                                              endpoint=exc.endpoint, status=exc.status) from None
                log.warning("Venue busy at start-up (%s): retrying in %.0f s", exc, BACKOFF_CAP_S)
                self.retries += 1
                self.clock.sleep(BACKOFF_CAP_S)
            except OrderRejected as exc:
                raise OrderRejected(f"the venue refused to create or derive API credentials for this key: "
                                    f"{exc.message} (check POLY_PRIVATE_KEY, POLY_FUNDER_ADDRESS and "
                                    "api.signature_type)", endpoint=exc.endpoint, status=exc.status) from None

    # -- plumbing ---------------------------------------------------------------------------------

    @contextmanager
    def _tracking(self) -> Iterator[None]:
        previous = getattr(_current, "counter", None)
        _current.counter = self._counter
        try:
            yield
        finally:
            _current.counter = previous

    def _throttle(self) -> None:
        """Self-imposed rate limit, far below the venue's: a token bucket of max_requests_per_second."""
        now = self.clock.time()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now
        if self._tokens < 1:
            wait = (1 - self._tokens) / self._rate
            self.clock.sleep(wait)
            self._refilled_at += wait
            self._tokens = 1.0
        self._tokens -= 1

    def _call(self, endpoint: str, fn: Callable[..., T], *args, posts_order: bool = False, read: bool = False,
              **kwargs) -> T:
        """Run one SDK call, mapping its exceptions to the bot's. ``read``: retried on temporary errors
        with capped exponential backoff and jitter. ``posts_order``: a transport error or 5xx leaves the
        outcome unknown (never retried blindly: the caller looks for the order first)."""
        attempt = 0
        while True:
            try:
                return self._call_once(endpoint, fn, *args, posts_order=posts_order, **kwargs)
            except TemporaryVenueError as exc:
                if not read or attempt >= READ_RETRIES:
                    raise
                delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt)
                if exc.status in WINDOW_STATUSES:
                    delay = BACKOFF_CAP_S
                delay *= 0.5 + self._rng.random()  # jitter: do not retry in lockstep with everyone else
                log.debug("%s: %s; retry %d in %.2f s", endpoint, exc, attempt + 1, delay)
                self.retries += 1
                attempt += 1
                self.clock.sleep(delay)

    def _call_once(self, endpoint: str, fn: Callable[..., T], *args, posts_order: bool = False, **kwargs) -> T:
        self._throttle()
        with self._tracking():
            try:
                return fn(*args, **kwargs)
            except PolyApiException as exc:
                status = exc.status_code
                text = _error_text(exc)
                # 425 (engine restarting), 429 and 503 (cancel-only) refuse before anything happens;
                # another 5xx or a transport error after an order was sent leaves its fate unknown.
                if status is None or (posts_order and status >= 500 and status not in WINDOW_STATUSES):
                    cls = UnknownOutcome if posts_order else TemporaryVenueError
                    cause = type(exc.__context__).__name__ if exc.__context__ else "transport error"
                    raise cls(f"{text} ({cause})" if status is None else text,
                              endpoint=endpoint, status=status) from None
                if status in TEMPORARY_STATUSES:
                    raise TemporaryVenueError(text, endpoint=endpoint, status=status) from None
                raise OrderRejected(text, endpoint=endpoint, status=status) from None
            except PolyException as exc:
                raise OrderRejected(str(getattr(exc, "msg", exc)), endpoint=endpoint) from None
            except VenueError:
                raise
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise MalformedResponse(f"unexpected response shape: {type(exc).__name__}: {exc}",
                                        endpoint=endpoint) from None
            except Exception as exc:  # e.g. the SDK's plain Exception('no match')
                raise OrderRejected(f"{type(exc).__name__}: {exc}", endpoint=endpoint) from None

    def api_calls(self) -> dict[str, int]:
        with self._counter[1]:
            return dict(self._counts)

    # -- market data ------------------------------------------------------------------------------

    def get_books(self, token_ids: Iterable[str]) -> dict[str, Book]:
        tokens = list(dict.fromkeys(token_ids))
        books: dict[str, Book] = {}
        for start in range(0, len(tokens), BOOKS_CHUNK):
            chunk = tokens[start:start + BOOKS_CHUNK]
            raw = self._call("POST /books", self._client.get_order_books, [BookParams(token_id=t) for t in chunk],
                             read=True)
            if not isinstance(raw, list):
                raise MalformedResponse(f"expected a list of books, got {type(raw).__name__}", endpoint="POST /books")
            for entry in raw:
                try:
                    book = Book.from_venue(entry)
                except ValueError as exc:
                    log.warning("Skipping malformed book from POST /books: %s", exc)
                    continue
                books[book.token_id] = book
        return books

    def get_market_info(self, token_id: str, condition_id: str = "") -> MarketInfo:
        cached = self._info.get(token_id)
        if cached:
            return cached
        if not condition_id:
            raw = self._call("GET /markets-by-token", self._client._get,
                             f"{self.host}/markets-by-token/{token_id}", read=True)
            condition_id = str((raw or {}).get("condition_id") or "")
            if not condition_id:
                raise MalformedResponse(f"no condition_id for token {token_id}", endpoint="GET /markets-by-token")
        # One call fills the SDK's tick/neg-risk caches for both tokens of the market.
        raw = self._call("GET /clob-markets", self._client.get_clob_market_info, condition_id, read=True)
        try:
            tick = to_decimal(raw["mts"], "clob-markets mts")
            mos = to_decimal(raw.get("mos", 5), "clob-markets mos")
            neg_risk = bool(raw.get("nr", False))
            tokens = [str(t["t"]) for t in raw["t"] if t]
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponse(f"clob market {condition_id}: {exc}", endpoint="GET /clob-markets") from None
        for tid in tokens:
            self._info[tid] = MarketInfo(tid, condition_id, tick, mos, neg_risk)
        if token_id not in self._info:
            raise MalformedResponse(f"token {token_id} not in market {condition_id}", endpoint="GET /clob-markets")
        return self._info[token_id]

    # -- orders -----------------------------------------------------------------------------------

    @staticmethod
    def _options(info: MarketInfo) -> PartialCreateOrderOptions:
        return PartialCreateOrderOptions(tick_size=format(info.tick_size.normalize(), "f"), neg_risk=info.neg_risk)

    @staticmethod
    def _fill(raw: object, side: str, endpoint: str) -> Fill:
        if not isinstance(raw, dict) or not raw.get("orderID"):
            raise MalformedResponse(f"order response without orderID: {str(raw)[:200]!r}", endpoint=endpoint)
        if raw.get("success") is False or raw.get("error"):
            raise OrderRejected(str(raw.get("errorMsg") or raw.get("error") or "order failed"), endpoint=endpoint)
        making = raw.get("makingAmount") or "0"
        taking = raw.get("takingAmount") or "0"
        try:
            making_d, taking_d = to_decimal(making, "makingAmount"), to_decimal(taking, "takingAmount")
        except ValueError as exc:
            raise MalformedResponse(str(exc), endpoint=endpoint) from None
        shares, usdc = (taking_d, making_d) if side == "BUY" else (making_d, taking_d)
        return Fill(order_id=str(raw["orderID"]), status=str(raw.get("status", "")).lower(),
                    filled_shares=shares, usdc=usdc.quantize(USDC_QUANTUM))

    def _fill_and_kill(self, token_id: str, side: str, amount: Decimal, worst_price: Decimal, info: MarketInfo) -> Fill:
        """A marketable FAK order. ``amount`` is USDC for a BUY and shares for a SELL (the SDK's market-order
        semantics); ``worst_price`` is the cap or the floor. The posted type is the keyword, not the args'."""
        args = MarketOrderArgs(token_id=token_id, amount=to_sdk_float(amount), side=side,
                               price=to_sdk_float(worst_price), order_type=OrderType.FAK)
        raw = self._call("POST /order", self._client.create_and_post_market_order, args,
                         options=self._options(info), order_type=OrderType.FAK, posts_order=True)
        return self._fill(raw, side, "POST /order")

    def market_buy(self, token_id: str, usdc: Decimal, max_price: Decimal, info: MarketInfo) -> Fill:
        return self._fill_and_kill(token_id, "BUY", usdc, max_price, info)

    def limit_sell(self, token_id: str, price: Decimal, shares: Decimal, info: MarketInfo,
                   before_post: Callable[[str], None] | None = None) -> Fill:
        """A resting GTC SELL. The order is signed first so that its id (the EIP-712 order hash, which the
        venue returns as orderID) is known, and handed to ``before_post`` to be saved, before it is sent."""
        args = OrderArgs(token_id=token_id, price=to_sdk_float(price), size=to_sdk_float(shares), side="SELL")
        signed = self._call("sign order", self._client.create_order, args, options=self._options(info))
        if before_post is not None:
            before_post(self._order_hash(signed, info.neg_risk))
        raw = self._call("POST /order", self._client.post_order, signed, OrderType.GTC, posts_order=True)
        return self._fill(raw, "SELL", "POST /order")

    def _order_hash(self, signed, neg_risk: bool) -> str:
        config = get_contract_config(self._chain_id)
        contract = config.neg_risk_exchange_v2 if neg_risk else config.exchange_v2
        builder = ExchangeOrderBuilderV2(contract, self._chain_id, self._client.signer)
        return builder.build_order_hash(builder.build_order_typed_data(signed))

    def market_sell(self, token_id: str, shares: Decimal, min_price: Decimal, info: MarketInfo) -> Fill:
        return self._fill_and_kill(token_id, "SELL", shares, min_price, info)

    def cancel(self, order_id: str) -> CancelResult:
        raw = self._call("DELETE /order", self._client.cancel_order, OrderPayload(orderID=order_id))
        if not isinstance(raw, dict):
            raise MalformedResponse(f"cancel answer is not an object: {str(raw)[:200]!r}", endpoint="DELETE /order")
        canceled = raw.get("canceled") or []
        not_canceled = raw.get("not_canceled") or {}
        return CancelResult(frozenset(str(c) for c in canceled), {str(k): str(v) for k, v in dict(not_canceled).items()})

    def get_order(self, order_id: str) -> OrderState | None:
        raw = self._call("GET /data/order", self._client.get_order, order_id, read=True)
        if raw in (None, "", "null") or (isinstance(raw, dict) and not raw):
            return None
        try:
            return OrderState.from_venue(raw)
        except ValueError as exc:
            raise MalformedResponse(str(exc), endpoint="GET /data/order") from None

    def open_orders(self) -> list[OrderState]:
        raw = self._call("GET /data/orders", self._client.get_open_orders, read=True)
        out = []
        for entry in raw or []:
            try:
                out.append(OrderState.from_venue(entry))
            except ValueError as exc:
                log.warning("Skipping malformed order from GET /data/orders: %s", exc)
        return out

    # -- balances ---------------------------------------------------------------------------------

    def _balance(self, params: BalanceAllowanceParams, refresh: bool) -> Decimal:
        if refresh:
            self._call("GET /balance-allowance/update", self._client.update_balance_allowance, params, read=True)
        raw = self._call("GET /balance-allowance", self._client.get_balance_allowance, params, read=True)
        try:
            return to_decimal(raw["balance"], "balance") / BASE_UNITS
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponse(f"balance: {exc}", endpoint="GET /balance-allowance") from None

    def token_balance(self, token_id: str, refresh: bool = False) -> Decimal:
        return self._balance(BalanceAllowanceParams(asset_type=AssetType.CONDITIONAL, token_id=token_id), refresh)

    def collateral_balance(self) -> Decimal:
        return self._balance(BalanceAllowanceParams(asset_type=AssetType.COLLATERAL), False)

    def collateral_allowances(self) -> dict[str, Decimal]:
        """Allowance per spender contract of the account's collateral (0 = the exchange cannot trade it)."""
        raw = self._call("GET /balance-allowance", self._client.get_balance_allowance,
                         BalanceAllowanceParams(asset_type=AssetType.COLLATERAL), read=True)
        try:
            allowances = raw.get("allowances")
            if allowances is None and "allowance" in raw:   # older single-value shape
                allowances = {"exchange": raw["allowance"]}
            return {str(k): to_decimal(v, "allowance") / BASE_UNITS for k, v in (allowances or {}).items()}
        except (AttributeError, TypeError, ValueError) as exc:
            raise MalformedResponse(f"allowances: {exc}", endpoint="GET /balance-allowance") from None

    def ping(self) -> None:
        """GET /ok: the CLOB answers."""
        self._call("GET /ok", self._client.get_ok, read=False)

    def recent_fills(self, token_id: str, since: float, side: str) -> list[Fill]:
        """This account's taker fills on ``token_id`` since ``since`` (unix s), one Fill per order, from the
        trade history, which, unlike the balance cache, does not lag a fresh fill."""
        from py_clob_client_v2 import TradeParams

        raw = self._call("GET /data/trades", self._client.get_trades,
                         TradeParams(asset_id=token_id, after=max(int(since) - 5, 1)), read=True)
        by_order: dict[str, list[Decimal]] = {}
        for t in raw or []:
            try:
                if (str(t.get("side", "")).upper() != side or str(t.get("trader_side", "TAKER")).upper() != "TAKER"
                        or str(t.get("status", "")).upper() == "FAILED"):
                    continue
                size, price = to_decimal(t["size"], "trade size"), to_decimal(t["price"], "trade price")
            except (KeyError, ValueError) as exc:
                log.warning("Skipping malformed trade from GET /data/trades: %s", exc)
                continue
            acc = by_order.setdefault(str(t.get("taker_order_id", "")), [Decimal(0), Decimal(0)])
            acc[0] += size
            acc[1] += size * price
        return [Fill(oid, "matched", sh, usdc.quantize(USDC_QUANTUM)) for oid, (sh, usdc) in by_order.items()]

    def server_time(self) -> int:
        """The venue's clock (unix seconds)."""
        raw = self._call("GET /time", self._client.get_server_time, read=True)
        return int(raw)
