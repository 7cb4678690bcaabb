"""The live venue: Polymarket's CLOB through the official unified SDK (``polymarket-client``, by way of
bot/venue/sdk.py, the only module that imports it).

It turns the venue's answers into the bot's data types and its failures into the bot's own exceptions:
``TemporaryVenueError`` (retry later), ``OrderRejected`` (refused, nothing happened), ``UnknownOutcome`` (an order
may or may not have been taken) and ``MalformedResponse``. It also counts every HTTP request it sends, by endpoint.
V1 markets (CTF token ids) and Protocol V2 markets (position ids) go through the same calls: the SDK signs each
order for its market's exchange, and balances are read as the id's kind.
"""
from __future__ import annotations

import logging
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar
from urllib.parse import urlparse

import httpx

import bot.venue.sdk as sdk
from bot.clock import Clock, SystemClock, Waker
from bot.crashpoints import crashpoint
from bot.errors import MalformedResponse, OrderRejected, TemporaryVenueError, UnknownOutcome, VenueError
from bot.fees import taker_fee
from bot.money import USDC_QUANTUM, to_decimal
from bot.venue.base import Book, CancelResult, Fill, MarketInfo, OrderState, SellOrder
from bot.venue.limits import RateLimiter

log = logging.getLogger("bot.venue.live")

#: Tokens per POST /books request. The venue documents no limit; 500 keeps reads at one per loop up to
#: 500 positions while bodies stay small (about 40 kB).
BOOKS_CHUNK = 500
#: Orders per POST /orders request (the venue's documented maximum) and cancels per DELETE /orders request.
ORDERS_BATCH = 15
CANCELS_BATCH = 500
#: Requests a mass exit sends at once (reads, batches of orders).
CONCURRENCY = 16
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
#: The cursor of the last page of a paged answer (/data/orders, /data/trades); pages read at most per call.
END_CURSOR = "LTE="
MAX_PAGES = 100


def _endpoint_key(method: str, url: str) -> str:
    """'GET /data/order/{id}' style key: path only, ids collapsed."""
    parts = urlparse(url).path.rstrip("/").split("/")
    parts = ["{id}" if _ID_SEGMENT.match(p or "") else p for p in parts]
    return f"{method.upper()} {'/'.join(parts) or '/'}"


@dataclass
class _TradeSum:
    """One order's trades added up (``_sum_trades``)."""

    shares: Decimal = Decimal(0)
    usdc: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    failed: Decimal = Decimal(0)
    settled: bool = True


def _book_key(entry: object) -> tuple | None:
    """What makes a /books element the same book as another: its token, levels, tick and minimum size."""
    if not isinstance(entry, dict) or not entry.get("asset_id"):
        return None
    return (entry.get("bids"), entry.get("asks"), entry.get("tick_size"), entry.get("min_order_size"))


class LiveVenue:
    """Polymarket's CLOB through the unified SDK (works the same against bot/sim)."""

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
        max_requests_per_second: float | None = None,
        seed: int | None = None,
        rate_limits: dict[str, tuple[int, float]] | None = None,
        http_transport: httpx.BaseTransport | None = None,
    ):
        """``http_transport``: what carries the requests (tests script the venue's answers with one)."""
        self.host = host.rstrip("/")
        self.clock = clock or SystemClock()
        self._rng = random.Random(seed)
        self.limiter = RateLimiter(self.clock, rate_limits, overall_per_second=max_requests_per_second)
        self.retries = 0
        self._waker: Waker | None = None
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._info: dict[str, MarketInfo] = {}
        self._books: dict[str, tuple[tuple, Book]] = {}   # token -> (its levels as the venue wrote them, parsed)
        try:
            self._sdk = sdk.Session(self.host, chain_id=chain_id, timeout_s=timeout_s, on_request=self._count,
                                    private_key=private_key, funder=funder, signature_type=signature_type,
                                    transport=http_transport)
        except ValueError as exc:   # the wallet setup contradicts itself: nothing was sent
            raise OrderRejected(str(exc), endpoint="wallet") from None
        self.address = self._sdk.address
        self.funder = self._sdk.funder
        self.signature_type = self._sdk.signature_type
        if private_key:
            creds = api_creds or self._call_at_startup("POST /auth/api-key", self._sdk.derive_credentials)
            self._sdk.use_credentials(*creds)

    def _count(self, request: httpx.Request) -> None:
        with self._lock:
            self._counts[_endpoint_key(request.method, str(request.url))] += 1

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

    def _throttle(self, endpoint: str) -> list[float] | None:
        """Self-imposed rate limit: the venue's published per-endpoint limits with a margin (bot/venue/limits.py),
        and api.max_requests_per_second over everything when set. Local work (signing) is not a request."""
        return None if endpoint == "sign order" else self.limiter.acquire(endpoint)

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
                if self._wait_woken(delay):
                    # Something the loop must handle now (a stop-loss the feed saw): nothing may hold it. The
                    # read fails as temporary and is tried again next loop.
                    raise TemporaryVenueError(f"{exc.message}; retry cut short: the loop has an event to handle",
                                              endpoint=exc.endpoint, status=exc.status) from None

    def interruptible(self, waker: Waker | None) -> None:
        """Retry waits inside reads end at once when ``waker`` is woken (the bot's loop has a feed event to
        handle: an exit must not wait behind a read's backoff); None: retries sleep their full delay."""
        self._waker = waker

    def _wait_woken(self, seconds: float) -> bool:
        """Sleep ``seconds`` before a retry; True when the waker was woken meanwhile (or before)."""
        waker = self._waker
        wait = getattr(self.clock, "wait", None)
        if waker is None or wait is None:
            self.clock.sleep(seconds)
            return False
        if not waker.woken():
            wait(seconds, waker)
        return waker.woken()

    def _call_once(self, endpoint: str, fn: Callable[..., T], *args, posts_order: bool = False, **kwargs) -> T:
        cell = self._throttle(endpoint)
        try:
            return fn(*args, **kwargs)
        except sdk.HttpError as exc:
            status = exc.status
            # 425 (engine restarting), 429 and 503 (cancel-only) refuse before anything happens;
            # another 5xx or a transport error after an order was sent leaves its fate unknown.
            if status is None or (posts_order and status >= 500 and status not in WINDOW_STATUSES):
                cls = UnknownOutcome if posts_order else TemporaryVenueError
                raise cls(f"{exc.text} ({exc.cause or 'transport error'})" if status is None else exc.text,
                          endpoint=endpoint, status=status) from None
            if status in TEMPORARY_STATUSES:
                raise TemporaryVenueError(exc.text, endpoint=endpoint, status=status) from None
            raise OrderRejected(self._explain(exc.text), endpoint=endpoint, status=status) from None
        except sdk.SigningError as exc:
            raise OrderRejected(f"the order could not be signed: {exc}", endpoint=endpoint) from None
        except sdk.BadAnswer as exc:
            if posts_order:   # the order may be on the book: look it up by its id
                raise UnknownOutcome(str(exc), endpoint=endpoint) from None
            raise MalformedResponse(str(exc), endpoint=endpoint) from None
        except VenueError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponse(f"unexpected response shape: {type(exc).__name__}: {exc}",
                                    endpoint=endpoint) from None
        finally:
            if cell is not None:
                self.limiter.done(cell)

    def _explain(self, text: str) -> str:
        """The venue's words, plus what they mean for this wallet setup when they are about the wallet."""
        low = text.lower()
        wallet = f"POLY_FUNDER_ADDRESS {self.funder}"
        if "maker address not allowed" in low:
            if self.signature_type == 3:
                hint = (f"{wallet} is not a deployed deposit wallet of the key's address {self.address} (it must be "
                        "the deposit address polymarket.com shows for this login, and be deployed)")
            else:
                hint = ("this account trades from a deposit wallet: set api.signature_type to 3 and "
                        "POLY_FUNDER_ADDRESS to the deposit address polymarket.com shows")
            return f"{text} -- {hint}; run python main_bot.py doctor"
        if low.startswith("invalid signature") or "signer address has to be" in low:
            return (f"{text} -- the order's signature does not match api.signature_type {self.signature_type} and "
                    f"{wallet} for the key's address {self.address}; run python main_bot.py doctor")
        return text

    def api_calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def api_calls_total(self) -> int:
        """The number of requests sent so far (cheaper than ``api_calls``: the meter asks around every position)."""
        with self._lock:
            return sum(self._counts.values())

    # -- market data ------------------------------------------------------------------------------

    def get_books(self, token_ids: Iterable[str]) -> dict[str, Book]:
        tokens = list(dict.fromkeys(token_ids))
        books: dict[str, Book] = {}
        for start in range(0, len(tokens), BOOKS_CHUNK):
            chunk = tokens[start:start + BOOKS_CHUNK]
            try:
                # (The SDK's own get_order_books builds this body through dataclasses.asdict per token: the
                # public endpoint is posted through its HTTP helper directly, with the same body.)
                raw = self._call("POST /books", self._sdk.request, "POST", "/books",
                                 body=[{"token_id": t} for t in chunk], read=True)
            except OrderRejected as exc:
                if len(chunk) == 1:
                    log.warning("No book for token %s: %s", chunk[0], exc)
                    continue
                # One token the venue does not know must not blind every other position: read one by one.
                log.warning("POST /books refused (%s); reading the %d books one by one", exc, len(chunk))
                for token in chunk:
                    books.update(self.get_books([token]))
                continue
            if not isinstance(raw, list):
                raise MalformedResponse(f"expected a list of books, got {type(raw).__name__}", endpoint="POST /books")
            for entry in raw:
                # A book whose levels are the ones read last time is the same book: parsed once (hundreds of
                # held tokens are read every loop, and most books do not change between two loops; comparing the
                # venue's strings is cheaper than making Decimals of them again).
                key = _book_key(entry)
                cached = self._books.get(str(entry.get("asset_id"))) if key is not None else None
                if cached is not None and cached[0] == key:
                    books[cached[1].token_id] = cached[1]
                    continue
                try:
                    book = Book.from_venue(entry)
                except ValueError as exc:
                    log.warning("Skipping malformed book from POST /books: %s", exc)
                    continue
                books[book.token_id] = book
                if key is not None:
                    self._books[book.token_id] = (key, book)
        return books

    def get_market_info(self, token_id: str, condition_id: str = "") -> MarketInfo:
        cached = self._info.get(token_id)
        if cached:
            return cached
        if not condition_id:
            raw = self._call("GET /markets-by-token", self._sdk.get, f"/markets-by-token/{token_id}", read=True)
            condition_id = str((raw or {}).get("condition_id") or "")
            if not condition_id:
                raise MalformedResponse(f"no condition_id for token {token_id}", endpoint="GET /markets-by-token")
        # One call fills the SDK's tick/neg-risk caches for both tokens of the market.
        raw = self._call("GET /clob-markets", self._sdk.get, f"/clob-markets/{condition_id}", read=True)
        try:
            tick = to_decimal(raw["mts"], "clob-markets mts")
            mos = to_decimal(raw.get("mos", 5), "clob-markets mos")
            neg_risk = bool(raw.get("nr", False))
            tokens = [str(t["t"]) for t in raw["t"] if t]
            fees = raw.get("fd") or {}
            fee_rate = to_decimal(fees.get("r", 0) or 0, "clob-markets fd.r")
            fee_exponent = int(fees.get("e", 0) or 0)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponse(f"clob market {condition_id}: {exc}", endpoint="GET /clob-markets") from None
        for tid in tokens:
            self._info[tid] = MarketInfo(tid, condition_id, tick, mos, neg_risk, fee_rate, fee_exponent)
        if token_id not in self._info:
            raise MalformedResponse(f"token {token_id} not in market {condition_id}", endpoint="GET /clob-markets")
        return self._info[token_id]

    # -- orders -----------------------------------------------------------------------------------

    @staticmethod
    def _fill(raw: object, side: str, endpoint: str, order_id: str, info: MarketInfo) -> Fill:
        """Read an order answer as the venue means it. ``success: false`` is a refusal; an answer that is
        not an object is an unknown outcome (the order may be on the book); ``delayed``, or a match without
        amounts (the venue may answer only success/orderID/errorMsg), is a Fill with ``settled=False``:
        not known yet, to be looked up by the order's id, never read as "nothing matched"."""
        if not isinstance(raw, dict):
            raise UnknownOutcome(f"order answer is not an object: {str(raw)[:200]!r}", endpoint=endpoint)
        if raw.get("success") is False or (raw.get("error") and not raw.get("orderID")):
            raise OrderRejected(str(raw.get("errorMsg") or raw.get("error") or "order refused without a message"),
                                endpoint=endpoint)
        venue_id = str(raw.get("orderID") or "") or order_id
        if venue_id != order_id:
            log.warning("Venue answered order id %s for the order signed as %s; using the venue's", venue_id, order_id)
        status = str(raw.get("status") or "").lower()
        making, taking = raw.get("makingAmount"), raw.get("takingAmount")
        if status in ("live", "unmatched") and making in (None, "") and taking in (None, ""):
            return Fill(order_id=venue_id, status=status)   # resting, or killed with nothing matched
        making_d: Decimal | None
        taking_d: Decimal | None
        try:
            making_d, taking_d = to_decimal(making, "makingAmount"), to_decimal(taking, "takingAmount")
        except ValueError:
            making_d = taking_d = None
        if status == "delayed" or making_d is None or taking_d is None:
            return Fill(order_id=venue_id, status=status or "unknown", settled=False)
        shares, usdc = (taking_d, making_d) if side == "BUY" else (making_d, taking_d)
        usdc = usdc.quantize(USDC_QUANTUM)
        fee = Decimal(0)
        if shares > 0:   # (booked again from the order's trades once they settle: the venue floors per trade)
            fee = taker_fee(shares, usdc / shares, info.fee_rate, info.fee_exponent)
        # "matched" is not a settlement (FACTS.md Part 0, 0.2): the fill is confirmed from its trades later.
        return Fill(order_id=venue_id, status=status, filled_shares=shares, usdc=usdc, fee=fee, confirmed=shares <= 0)

    def _sign_and_post(self, sign: Callable[[], sdk.Signed], info: MarketInfo, side: str,
                       before_post: Callable[[str], None] | None) -> Fill:
        """Sign first, so the order's id (the EIP-712 order hash, which the venue returns as orderID) is
        known and handed to ``before_post`` to be saved before the order leaves; then post it once."""
        self._tell_sdk(info)
        signed = self._call("sign order", sign)
        if before_post is not None:
            before_post(signed.order_id)
        crashpoint("before_send")
        try:
            raw = self._call("POST /order", self._sdk.post_order, signed, posts_order=True)
        except OrderRejected as exc:
            if "tick size" in exc.message.lower():   # the market's tick changed (near 0.04/0.96): read it again
                self._info.pop(info.token_id, None)
            raise
        return self._fill(raw, side, "POST /order", signed.order_id, info)

    def _tell_sdk(self, info: MarketInfo) -> None:
        """The SDK signs with the market as the bot knows it (the tick its prices are on, neg-risk, fee curve): it
        then sends no request of its own."""
        self._sdk.know_market([info.token_id], info.condition_id or f"token:{info.token_id}", info.tick_size,
                              info.neg_risk, info.fee_rate, info.fee_exponent)

    def _fill_and_kill(self, token_id: str, side: str, amount: Decimal, worst_price: Decimal, info: MarketInfo,
                       before_post: Callable[[str], None] | None = None) -> Fill:
        """A marketable FAK order. ``amount`` is USDC for a BUY and shares for a SELL (the SDK's market-order
        semantics); ``worst_price`` is the cap or the floor."""
        return self._sign_and_post(lambda: self._sdk.sign_market(token_id, side, amount, worst_price, info.neg_risk),
                                   info, side, before_post)

    def market_buy(self, token_id: str, usdc: Decimal, max_price: Decimal, info: MarketInfo,
                   before_post: Callable[[str], None] | None = None) -> Fill:
        return self._fill_and_kill(token_id, "BUY", usdc, max_price, info, before_post)

    def limit_sell(self, token_id: str, price: Decimal, shares: Decimal, info: MarketInfo,
                   before_post: Callable[[str], None] | None = None) -> Fill:
        """A resting GTC SELL. The order is signed first so that its id (the EIP-712 order hash, which the
        venue returns as orderID) is known, and handed to ``before_post`` to be saved, before it is sent."""
        return self._sign_and_post(lambda: self._sdk.sign_limit(token_id, price, shares, "SELL", info.neg_risk),
                                   info, "SELL", before_post)

    def market_sell(self, token_id: str, shares: Decimal, min_price: Decimal, info: MarketInfo,
                    before_post: Callable[[str], None] | None = None) -> Fill:
        return self._fill_and_kill(token_id, "SELL", shares, min_price, info, before_post)

    def cancel(self, order_id: str) -> CancelResult:
        raw = self._call("DELETE /order", self._sdk.cancel, [order_id])
        return self._cancel_answer(raw, "DELETE /order")

    @staticmethod
    def _cancel_answer(raw: object, endpoint: str) -> CancelResult:
        if not isinstance(raw, dict):
            raise MalformedResponse(f"cancel answer is not an object: {str(raw)[:200]!r}", endpoint=endpoint)
        canceled = raw.get("canceled") or []
        not_canceled = raw.get("not_canceled") or {}
        return CancelResult(frozenset(str(c) for c in canceled),
                            {str(k): str(v) for k, v in dict(not_canceled).items()})

    def cancel_many(self, order_ids: list[str]) -> CancelResult:
        """DELETE /orders (the SDK's cancel_orders), CANCELS_BATCH ids per request."""
        ids = list(dict.fromkeys(order_ids))
        canceled: set[str] = set()
        not_canceled: dict[str, str] = {}
        for start in range(0, len(ids), CANCELS_BATCH):
            chunk = ids[start:start + CANCELS_BATCH]
            one = self._cancel_answer(self._call("DELETE /orders", self._sdk.cancel, chunk, many=True),
                                      "DELETE /orders")
            canceled |= one.canceled
            not_canceled.update(one.not_canceled)
        return CancelResult(frozenset(canceled), not_canceled)

    concurrency = CONCURRENCY   # how many reads a mass exit may have in flight at once

    def market_sell_many(self, orders: list[SellOrder],
                         before_post: Callable[[list[str | None]], None]) -> list[Fill | VenueError]:
        """Sign every SELL (FAK), hand all their ids to ``before_post`` at once, then POST /orders in batches of
        ORDERS_BATCH, the batches concurrently. Each element of an answer is read as a single order's answer
        (``_fill``); a batch whose request failed gives its orders that request's error (a transport error or
        5xx: UnknownOutcome, looked up by id)."""
        signed: list[sdk.Signed | None] = []
        ids: list[str | None] = []
        errors: dict[int, VenueError] = {}
        for i, o in enumerate(orders):
            self._tell_sdk(o.info)
            try:
                one = self._call("sign order", self._sdk.sign_market, o.token_id, "SELL", o.shares, o.min_price,
                                 o.info.neg_risk)
            except VenueError as exc:
                errors[i] = exc
                signed.append(None)
                ids.append(None)
                continue
            signed.append(one)
            ids.append(one.order_id)
        before_post(list(ids))
        crashpoint("before_send")
        todo = [i for i in range(len(orders)) if signed[i] is not None]
        batches = [todo[k:k + ORDERS_BATCH] for k in range(0, len(todo), ORDERS_BATCH)]

        def post(batch: list[int]) -> list[Fill | VenueError]:
            try:
                raw = self._call("POST /orders", self._sdk.post_orders, [signed[i] for i in batch],
                                 posts_order=True)
            except VenueError as exc:
                return [exc for _ in batch]
            if not isinstance(raw, list) or len(raw) != len(batch):
                return [UnknownOutcome(f"batch answer is not a list of {len(batch)}: {str(raw)[:200]!r}",
                                       endpoint="POST /orders") for _ in batch]
            out: list[Fill | VenueError] = []
            for i, answer in zip(batch, raw, strict=True):
                try:
                    out.append(self._fill(answer, "SELL", "POST /orders", ids[i] or "", orders[i].info))
                except VenueError as exc:
                    out.append(exc)
            return out

        results: list[Fill | VenueError | None] = [errors.get(i) for i in range(len(orders))]
        if batches:
            with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(batches))) as pool:
                for batch, answers in zip(batches, pool.map(post, batches), strict=True):
                    for i, answer in zip(batch, answers, strict=True):
                        results[i] = answer
        return [r if r is not None else UnknownOutcome("no answer", endpoint="POST /orders") for r in results]

    def get_order(self, order_id: str) -> OrderState | None:
        try:
            raw = self._call("GET /data/order", self._sdk.get_order, order_id, read=True)
        except OrderRejected as exc:
            if exc.status == 404:   # "once cancelled, it 404s" (FACTS.md Part 0, 0.3): not live, not an error
                return None
            raise
        if raw in (None, "", "null") or (isinstance(raw, dict) and not raw):
            return None
        try:
            return OrderState.from_venue(raw)
        except ValueError as exc:
            raise MalformedResponse(str(exc), endpoint="GET /data/order") from None

    def open_orders(self) -> list[OrderState]:
        out = []
        for entry in self._pages("GET /data/orders", self._sdk.open_orders_page):
            try:
                out.append(OrderState.from_venue(entry))
            except ValueError as exc:
                log.warning("Skipping malformed order from GET /data/orders: %s", exc)
        return out

    def _pages(self, endpoint: str, page: Callable[[str | None], object]) -> list:
        """Every element of a paged answer ({"data": [...], "next_cursor"}), page after page (each a read, retried),
        until the last page's cursor; a bare list is one page."""
        out: list = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            raw = self._call(endpoint, page, cursor, read=True)
            if isinstance(raw, list):
                return out + raw
            if not isinstance(raw, dict) or not isinstance(raw.get("data", []), list):
                raise MalformedResponse(f"expected a page of results, got {str(raw)[:200]!r}", endpoint=endpoint)
            out += raw.get("data") or []
            cursor = raw.get("next_cursor")
            if not cursor or cursor == END_CURSOR:
                return out
        log.warning("%s: more than %d pages; reading the first %d only", endpoint, MAX_PAGES, MAX_PAGES)
        return out

    def prices_history(self, token_id: str, start_ts: int, end_ts: int, fidelity_min: int) -> list[tuple[int, Decimal]]:
        """A token's recorded prices, GET /prices-history (FACTS.md Part 0, 0.7): [(unix seconds, price)], oldest first.
        The venue takes a window of at most 15 days (longer: a refusal, HTTP 400 "interval is too long"); its prices
        follow the midpoint, forward-filled. Malformed points are skipped with a warning."""
        raw = self._call("GET /prices-history", self._sdk.get, "/prices-history",
                         {"market": token_id, "startTs": int(start_ts), "endTs": int(end_ts),
                          "fidelity": int(fidelity_min)}, read=True)
        if not isinstance(raw, dict) or not isinstance(raw.get("history", []), list):
            raise MalformedResponse(f"expected {{'history': [...]}}, got {str(raw)[:200]!r}",
                                    endpoint="GET /prices-history")
        out: list[tuple[int, Decimal]] = []
        for point in raw.get("history") or []:
            try:
                out.append((int(point["t"]), to_decimal(point["p"], "prices-history p")))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("Skipping malformed point of token %s from GET /prices-history: %s", token_id, exc)
        out.sort(key=lambda tp: tp[0])
        return out

    def contracts(self) -> dict[str, str]:
        """The contracts this account trades through (exchanges, adapters, operator), by name."""
        return self._sdk.contracts()

    # -- balances ---------------------------------------------------------------------------------

    def _balance(self, token_id: str | None, refresh: bool) -> Decimal:
        if refresh:
            self._call("GET /balance-allowance/update", self._sdk.balance, token_id, update=True, read=True)
        raw = self._call("GET /balance-allowance", self._sdk.balance, token_id, read=True)
        try:
            return to_decimal(raw["balance"], "balance") / BASE_UNITS
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponse(f"balance: {exc}", endpoint="GET /balance-allowance") from None

    def token_balance(self, token_id: str, refresh: bool = False) -> Decimal:
        """Shares of ``token_id`` held (CONDITIONAL for a CTF token, CONDITIONAL-V2 for a V2 position id)."""
        return self._balance(token_id, refresh)

    def collateral_balance(self) -> Decimal:
        return self._balance(None, False)

    def collateral_allowances(self) -> dict[str, Decimal]:
        """Allowance per spender contract of the account's collateral (0 = the exchange cannot trade it)."""
        raw = self._call("GET /balance-allowance", self._sdk.balance, None, read=True)
        try:
            allowances = raw.get("allowances")
            if allowances is None and "allowance" in raw:   # older single-value shape
                allowances = {"exchange": raw["allowance"]}
            return {str(k): to_decimal(v, "allowance") / BASE_UNITS for k, v in (allowances or {}).items()}
        except (AttributeError, TypeError, ValueError) as exc:
            raise MalformedResponse(f"allowances: {exc}", endpoint="GET /balance-allowance") from None

    def ping(self) -> None:
        """GET /ok: the CLOB answers."""
        self._call("GET /ok", self._sdk.get, "/ok", read=False)

    def order_trades(self, order_id: str, token_id: str, since: float) -> Fill:
        """What order ``order_id`` traded, from the trade history (which, unlike the balance cache, does not
        lag a fresh fill, and still knows orders that GET /data/order forgot): as taker (the order's id is the
        trade's taker_order_id; it pays the market's fee) and as maker (its fill sits in the trade's
        maker_orders, at its own price, no fee). FAILED trades are counted apart."""
        return self.orders_trades({order_id: token_id}, since)[order_id]

    def orders_trades(self, orders: dict[str, str], since: float) -> dict[str, Fill]:
        """``order_trades`` of several orders: the account's trades on each of their tokens, one read per token
        (concurrently). The read is by token, not by time: ``since`` is the bot's clock, and a window drawn on
        one clock to filter the venue's ``match_time`` would lose trades to any skew between them."""
        tokens = sorted(set(orders.values()))

        def read(token: str) -> object:
            return self._pages("GET /data/trades", lambda cursor: self._sdk.trades_page(token, cursor))

        if len(tokens) <= 1:
            raws = [read(t) for t in tokens]
        else:
            with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(tokens))) as pool:
                raws = list(pool.map(read, tokens))
        out: dict[str, Fill] = {}
        for token, raw in zip(tokens, raws, strict=True):
            out.update(self._sum_trades(raw, {oid: t for oid, t in orders.items() if t == token}))
        return out

    def _sum_trades(self, raw: object, orders: dict[str, str]) -> dict[str, Fill]:
        """Sum the trades of ``orders`` ({order id: token id}) into one Fill each. A trade counts once settled or
        on its way (MATCHED, MINED, CONFIRMED, RETRYING); ``confirmed`` only when all of them are MINED or
        CONFIRMED (FACTS.md Part 0, 0.2); FAILED ones go to ``failed_shares``. Fees by the market's curve,
        per taker trade (FACTS.md Part 0, 0.1: the trade's fee_rate_bps is not the rate charged)."""
        sums = {oid: _TradeSum() for oid in orders}
        for t in raw if isinstance(raw, list) else []:
            try:
                status = str(t.get("status", "")).upper()
                failed = status == "FAILED"
                settled = status in ("MINED", "CONFIRMED")
                mine: list[tuple[str, Decimal, Decimal, bool]] = []
                if str(t.get("trader_side", "TAKER")).upper() == "TAKER":
                    oid = str(t.get("taker_order_id", ""))
                    if oid in sums:
                        mine.append((oid, to_decimal(t["size"], "trade size"), to_decimal(t["price"], "trade price"),
                                     True))
                else:
                    for mo in t.get("maker_orders") or []:
                        oid = str(mo.get("order_id", ""))
                        if oid in sums:
                            mine.append((oid, to_decimal(mo["matched_amount"], "maker matched_amount"),
                                         to_decimal(mo["price"], "maker price"), False))
                for oid, size, price, taker in mine:
                    acc = sums[oid]
                    if failed:
                        acc.failed += size
                        continue
                    acc.shares += size
                    acc.usdc += size * price
                    if taker:
                        info = self.get_market_info(orders[oid])   # its fee curve (cached)
                        acc.fee += taker_fee(size, price, info.fee_rate, info.fee_exponent)
                    acc.settled = acc.settled and settled
            except (KeyError, ValueError, AttributeError, TypeError) as exc:
                log.warning("Skipping malformed trade from GET /data/trades: %s", exc)
        return {oid: Fill(oid, "matched" if a.shares > 0 else "", a.shares, a.usdc.quantize(USDC_QUANTUM), a.fee,
                          confirmed=a.settled, failed_shares=a.failed)
                for oid, a in sums.items()}

    def books_seen(self, books: dict[str, Book]) -> None:
        """(The venue's own books: nothing to do.)"""

    def feed_credentials(self) -> dict[str, str] | None:
        """The API credentials (None without a key); handed only to the user channel's subscribe message."""
        if self._sdk.creds is None:
            return None
        key, secret, passphrase = self._sdk.creds
        return {"apiKey": key, "secret": secret, "passphrase": passphrase}

    def server_time(self) -> int:
        """The venue's clock (unix seconds)."""
        raw = self._call("GET /time", self._sdk.get, "/time", read=True)
        return int(raw)
