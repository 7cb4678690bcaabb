"""The paper venue (dry-run): real market data, simulated orders.

Books and market info come from a read-only venue (the live CLOB without keys, or bot/sim). Orders
never leave the process: they get ``dry_run_...`` ids and fill by the venue's rules against the books
read — a marketable order walks the book at once, a resting take-profit fills (as maker, at its own
price) once the best bid reaches it, and open sells reserve their shares exactly as on Polymarket.
Its balances and orders are kept in a JSON file beside the positions file so a restart resumes them.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from bot.clock import Waker
from bot.errors import OrderRejected, StateFileError, VenueError
from bot.fees import taker_fee
from bot.money import MIN_MARKETABLE_NOTIONAL, SHARE_EPSILON, USDC_QUANTUM, fmt, round_fill_shares
from bot.venue.base import Book, CancelResult, Fill, MarketInfo, OrderState, OrderStatus, SellOrder, Venue

log = logging.getLogger("bot.venue.paper")


@dataclass
class _PaperOrder:
    order_id: str
    token_id: str
    side: str
    price: Decimal
    size: Decimal
    filled: Decimal = Decimal(0)
    canceled: bool = False
    created: float = 0.0
    usdc: Decimal = Decimal(0)   # what its fills brought or cost, at the fills' prices
    fee: Decimal = Decimal(0)    # the taker fee (USDC value) of what it took from the book

    @property
    def remaining(self) -> Decimal:
        return self.size - self.filled

    @property
    def is_open(self) -> bool:
        return not self.canceled and self.remaining > SHARE_EPSILON

    def state(self) -> OrderState:
        if self.canceled:
            status = OrderStatus.CANCELED
        elif not self.is_open:
            status = OrderStatus.FILLED
        else:
            status = OrderStatus.PARTIALLY_FILLED if self.filled > 0 else OrderStatus.OPEN
        return OrderState(self.order_id, status, self.token_id, self.side, self.price, self.size, self.filled)


class PaperVenue:
    """Dry-run venue over a read-only market-data venue."""

    name = "paper"
    log_prefix = "DRY RUN "   # every order line of a dry run says so

    def __init__(self, reader: Venue, usdc: Decimal, state_file: str | os.PathLike[str] | None = None):
        self._reader = reader
        self._lock = threading.Lock()
        self._usdc = Decimal(usdc)
        self._tokens: dict[str, Decimal] = {}
        self._orders: dict[str, _PaperOrder] = {}
        #: The orders still open (resting SELLs): what a book read fills and what reserves shares, without a walk
        #: over every order ever placed (a long dry run or a replay places thousands).
        self._open: dict[str, _PaperOrder] = {}
        self._path = Path(state_file) if state_file else None
        if self._path and self._path.exists():
            self._load(self._path)

    # -- persistence ------------------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            self._usdc = Decimal(data["usdc"])
            self._tokens = {k: Decimal(v) for k, v in data["tokens"].items()}
            self._orders = {
                o["order_id"]: _PaperOrder(o["order_id"], o["token_id"], o["side"], Decimal(o["price"]),
                                           Decimal(o["size"]), Decimal(o["filled"]), bool(o["canceled"]),
                                           float(o.get("created", 0)), Decimal(o.get("usdc", "0")),
                                           Decimal(o.get("fee", "0")))
                for o in data["orders"]
            }
            self._open = {oid: o for oid, o in self._orders.items() if o.is_open}
        except (OSError, ValueError, KeyError, TypeError, ArithmeticError) as exc:
            raise StateFileError(f"{path}: dry-run venue state unreadable ({exc}); "
                                 "move it away to start the paper account afresh") from None

    def _save(self) -> None:
        if not self._path:
            return
        data = {
            "usdc": str(self._usdc),
            "tokens": {k: str(v) for k, v in self._tokens.items()},
            # Closed orders are kept so get_order keeps answering for them (positions refer to them).
            "orders": [
                {"order_id": o.order_id, "token_id": o.token_id, "side": o.side, "price": str(o.price),
                 "size": str(o.size), "filled": str(o.filled), "canceled": o.canceled, "created": o.created,
                 "usdc": str(o.usdc), "fee": str(o.fee)}
                for o in self._orders.values()
            ],
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(self._path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self._path)

    # -- the paper account, for tests and people: set balances, list orders ---------------------------

    @property
    def reader(self):
        """The read-only venue the paper venue takes its books and market info from."""
        return self._reader

    def fund(self, token_id: str | None = None, shares: Decimal | None = None, usdc: Decimal | None = None) -> None:
        """Set the paper account's shares of ``token_id`` and/or its USDC (as the simulator's ``fund``)."""
        with self._lock:
            if token_id is not None and shares is not None:
                self._tokens[token_id] = Decimal(shares)
            if usdc is not None:
                self._usdc = Decimal(usdc)
            self._save()

    def orders(self) -> list[OrderState]:
        """Every paper order, open or not."""
        with self._lock:
            return [o.state() for o in self._orders.values()]

    # -- helpers ----------------------------------------------------------------------------------

    def _reserved(self, token_id: str) -> Decimal:
        return sum((o.remaining for o in self._open.values()
                    if o.is_open and o.side == "SELL" and o.token_id == token_id), Decimal(0))

    def _book(self, token_id: str) -> Book:
        return self._reader.get_books([token_id]).get(token_id) or Book(token_id)

    def _new_id(self) -> str:
        return f"dry_run_{uuid.uuid4().hex[:16]}"

    def _fill_resting(self, books: dict[str, Book]) -> bool:
        """A resting SELL fills at its own price once other traders bid that much. True when one filled."""
        filled = False
        for order in list(self._open.values()):
            book = books.get(order.token_id)
            if not order.is_open or order.side != "SELL" or book is None or book.best_bid is None:
                continue
            qty = self._resting_fill(order, book)
            if qty > 0:
                filled = True
                if order.remaining - qty <= SHARE_EPSILON:
                    del self._open[order.order_id]
                order.filled += qty
                order.usdc += (qty * order.price).quantize(USDC_QUANTUM)
                self._tokens[order.token_id] = self._tokens.get(order.token_id, Decimal(0)) - qty
                self._usdc += (qty * order.price).quantize(USDC_QUANTUM)
                log.info("DRY RUN limit SELL %s filled %s @ %s (bid %s)", order.order_id, fmt(qty),
                         fmt(order.price), fmt(book.best_bid))
        return filled

    def _resting_fill(self, order: _PaperOrder, book: Book) -> Decimal:
        """How much of a resting SELL other traders take at its price: the bids at or above it (a replay states its
        own rule: bot/replay/market.py)."""
        depth = sum((size for price, size in book.bids if price >= order.price), Decimal(0))
        return min(order.remaining, depth)

    @staticmethod
    def _walk(levels: Iterable[tuple[Decimal, Decimal]], acceptable: Callable[[Decimal], bool], info: MarketInfo,
              budget_usdc: Decimal | None = None, shares: Decimal = Decimal(0)) -> tuple[Decimal, Decimal, Decimal]:
        """Consume levels (best first) while the price is acceptable, up to ``budget_usdc`` dollars when given,
        else up to ``shares``; returns (shares, usdc, taker fee), the fee per level as the venue charges it per
        trade (bot/fees.py)."""
        got, paid, fee = Decimal(0), Decimal(0), Decimal(0)
        for price, size in levels:
            if not acceptable(price):
                break
            if budget_usdc is not None:
                # A market BUY fills its dollars to the venue's base units (6 decimals of a share), as the venue does.
                take = min(size, round_fill_shares((budget_usdc - paid) / price))
            else:
                take = min(size, shares - got)
            if take <= 0:
                break
            got += take
            paid += take * price
            fee += taker_fee(take, price, info.fee_rate, info.fee_exponent)
        return got, paid.quantize(USDC_QUANTUM), fee

    # -- Venue ------------------------------------------------------------------------------------

    def books_seen(self, books: dict[str, Book]) -> None:
        """Books pushed by the feed: resting paper orders fill from them as from a read."""
        with self._lock:
            if self._fill_resting(books):
                self._save()

    def get_books(self, token_ids: Iterable[str]) -> dict[str, Book]:
        books = self._reader.get_books(token_ids)
        self.books_seen(books)
        return books

    def get_market_info(self, token_id: str, condition_id: str = "") -> MarketInfo:
        return self._reader.get_market_info(token_id, condition_id)

    def market_buy(self, token_id: str, usdc: Decimal, max_price: Decimal, info: MarketInfo,
                   before_post: Callable[[str], None] | None = None) -> Fill:
        if usdc < MIN_MARKETABLE_NOTIONAL:
            raise OrderRejected(f"invalid amount for a marketable BUY order (${fmt(usdc)}), min size: $1",
                                endpoint="POST /order (dry run)")
        book = self._book(token_id)
        oid = self._new_id()
        if before_post is not None:
            before_post(oid)
        with self._lock:
            got, paid, fee = self._walk(book.asks, lambda p: p <= max_price, info, budget_usdc=usdc)
            if got <= 0:
                raise OrderRejected("no orders found to match with FAK order. FAK orders are partially "
                                    "filled or killed if no match is found.", endpoint="POST /order (dry run)")
            # CLOB V2: a taker BUY receives every share and pays its fee in USDC on top (bot/fees.py).
            if paid + fee > self._usdc:
                raise OrderRejected("not enough balance / allowance", endpoint="POST /order (dry run)")
            self._orders[oid] = _PaperOrder(oid, token_id, "BUY", max_price, got, got, created=time.time(), usdc=paid,
                                            fee=fee)
            self._usdc -= paid + fee
            self._tokens[token_id] = self._tokens.get(token_id, Decimal(0)) + got
            self._save()
        log.info("DRY RUN market BUY %s: %s shares for $%s + fee $%s (cap %s)", oid, fmt(got), fmt(paid), fmt(fee),
                 fmt(max_price))
        return Fill(oid, "matched", got, paid, fee)

    def limit_sell(self, token_id: str, price: Decimal, shares: Decimal, info: MarketInfo,
                   before_post: Callable[[str], None] | None = None) -> Fill:
        if shares < info.min_order_size:
            raise OrderRejected(f"order is invalid. Size ({fmt(shares)}) lower than the minimum: "
                                f"{fmt(info.min_order_size)}", endpoint="POST /order (dry run)")
        book = self._book(token_id)
        with self._lock:
            available = self._tokens.get(token_id, Decimal(0)) - self._reserved(token_id)
            if shares > available + SHARE_EPSILON:
                raise OrderRejected("not enough balance / allowance", endpoint="POST /order (dry run)")
            oid = self._new_id()
            if before_post is not None:
                before_post(oid)
            order = _PaperOrder(oid, token_id, "SELL", price, shares)
            got, proceeds, fee = self._walk(book.bids, lambda p: p >= price, info, shares=shares)
            order.filled = got
            order.usdc, order.fee = proceeds, fee
            self._orders[oid] = order
            if order.is_open:
                self._open[oid] = order
            self._tokens[token_id] = self._tokens.get(token_id, Decimal(0)) - got
            self._usdc += proceeds - fee   # what crosses at once is a taker fill and pays the taker fee
            self._save()
        log.info("DRY RUN LIMIT SELL (TP) %s: %s @ %s GTC%s", oid, fmt(shares), fmt(price),
                 f", {fmt(got)} filled at once" if got else "")
        return Fill(oid, "matched" if not order.is_open else "live", got, proceeds, fee)

    def market_sell(self, token_id: str, shares: Decimal, min_price: Decimal, info: MarketInfo,
                    before_post: Callable[[str], None] | None = None) -> Fill:
        oid = self._new_id()
        if before_post is not None:
            before_post(oid)
        return self._market_sell(oid, token_id, shares, min_price, info)

    def market_sell_many(self, orders: list[SellOrder],
                         before_post: Callable[[list[str | None]], None]) -> list[Fill | VenueError]:
        ids = [self._new_id() for _ in orders]
        before_post(list(ids))
        out: list[Fill | VenueError] = []
        for oid, o in zip(ids, orders, strict=True):
            try:
                out.append(self._market_sell(oid, o.token_id, o.shares, o.min_price, o.info))
            except VenueError as exc:
                out.append(exc)
        return out

    def _market_sell(self, oid: str, token_id: str, shares: Decimal, min_price: Decimal, info: MarketInfo) -> Fill:
        book = self._book(token_id)
        with self._lock:
            available = self._tokens.get(token_id, Decimal(0)) - self._reserved(token_id)
            if shares > available + SHARE_EPSILON:
                raise OrderRejected("not enough balance / allowance", endpoint="POST /order (dry run)")
            got, proceeds, fee = self._walk(book.bids, lambda p: p >= min_price, info, shares=shares)
            if got <= 0:
                raise OrderRejected("no orders found to match with FAK order. FAK orders are partially "
                                    "filled or killed if no match is found.", endpoint="POST /order (dry run)")
            # A taker SELL's fee is taken in USDC: the account receives less than the answer's amount.
            self._orders[oid] = _PaperOrder(oid, token_id, "SELL", min_price, got, got, created=time.time(),
                                            usdc=proceeds, fee=fee)
            self._tokens[token_id] -= got
            self._usdc += proceeds - fee
            self._save()
        log.info("DRY RUN market SELL %s: %s shares for $%s (floor %s)", oid, fmt(got), fmt(proceeds),
                 fmt(min_price))
        return Fill(oid, "matched", got, proceeds, fee)

    def cancel(self, order_id: str) -> CancelResult:
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                return CancelResult(frozenset(), {order_id: "order not found"})
            if not order.is_open:
                return CancelResult(frozenset(), {order_id: "already canceled or matched"})
            order.canceled = True
            self._open.pop(order_id, None)
            self._save()
        log.info("DRY RUN cancel %s", order_id)
        return CancelResult(frozenset({order_id}), {})

    def cancel_many(self, order_ids: list[str]) -> CancelResult:
        canceled: set[str] = set()
        not_canceled: dict[str, str] = {}
        for oid in order_ids:
            one = self.cancel(oid)
            canceled |= one.canceled
            not_canceled.update(one.not_canceled)
        return CancelResult(frozenset(canceled), not_canceled)

    def get_order(self, order_id: str) -> OrderState | None:
        with self._lock:
            order = self._orders.get(order_id)
            return order.state() if order else None

    def open_orders(self) -> list[OrderState]:
        with self._lock:
            return [o.state() for o in self._open.values() if o.is_open]

    def token_balance(self, token_id: str, refresh: bool = False) -> Decimal:
        with self._lock:
            return self._tokens.get(token_id, Decimal(0))

    def collateral_balance(self) -> Decimal:
        with self._lock:
            return self._usdc

    def order_trades(self, order_id: str, token_id: str, since: float) -> Fill:
        """What a paper order traded: its fills at their prices, and the taker fee of what it took (paper trades
        settle at once: never failed)."""
        with self._lock:
            o = self._orders.get(order_id)
            if o is None or o.token_id != token_id or o.filled <= 0:
                return Fill(order_id, "", Decimal(0), Decimal(0))
            return Fill(o.order_id, "matched", o.filled, o.usdc, o.fee)

    def orders_trades(self, orders: dict[str, str], since: float) -> dict[str, Fill]:
        return {oid: self.order_trades(oid, token, since) for oid, token in orders.items()}

    def interruptible(self, waker: Waker | None) -> None:
        """Its reads are the reader's: their retry waits end when ``waker`` is woken."""
        interruptible = getattr(self._reader, "interruptible", None)
        if interruptible is not None:
            interruptible(waker)

    def feed_credentials(self) -> dict[str, str] | None:
        """Paper orders have no user channel: their fills are the paper venue's own."""
        return None

    def api_calls(self) -> dict[str, int]:
        return self._reader.api_calls()

    def api_calls_total(self) -> int:
        total = getattr(self._reader, "api_calls_total", None)
        return total() if total is not None else sum(self._reader.api_calls().values())
