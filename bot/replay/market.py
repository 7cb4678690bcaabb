"""A market made of recorded prices: what the bot's own loop trades against in a replay.

Nothing here decides anything about positions: the bot's loop (main_bot.Bot), its scanner's filters
(bot/scanner.py), its paper venue's fills (bot/venue/paper.py) and its fee function (bot/fees.py) do, as in a dry
run. This module only answers the questions a venue and Gamma would answer, from the history:

- ``HistoryBooks`` (the paper venue's read-only venue): the book of a token at the clock's time, *modelled* around
  the recorded price (Polymarket publishes no book history: FACTS.md Part 0, 0.7), by ``FillModel``;
- ``ReplayVenue``: the paper venue, with the fill model's rules for a resting take-profit (the price must trade
  through it, or touch it) and the exit's latency, counting the requests the live venue would have sent;
- ``HistoryScanner``: Gamma's answers (the markets open at the clock's time, their prices, then their resolution),
  under the scanner's own filters.
"""
from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.clock import Clock
from bot.config import StrategySection
from bot.errors import VenueError
from bot.money import price_floor
from bot.scanner import Candidate, MarketScanner
from bot.venue.base import Book, Fill, MarketInfo
from bot.venue.paper import PaperVenue


@dataclass(frozen=True)
class FillModel:
    """How a recorded price becomes a book and fills (stated in every result: a replay is not a promise).

    - the book around each recorded price ``p`` (the midpoint, forward-filled): best bid ``p - spread_ticks/2``
      ticks (rounded down to the tick), best ask ``spread_ticks`` ticks above it, ``levels`` levels a side of
      ``depth`` shares each, one tick apart;
    - a resting take-profit fills, at its own price and as a maker (no fee), only when a recorded price trades
      through it (``p > price``), or touches it (``tp_fill="touch"``: ``p >= price``), up to the book's depth;
    - marketable orders (entries, stop-loss and time exits) walk the modelled book and pay the market's taker fee
      in USDC (bot/fees.py); an exit fills on the book ``exit_latency_steps`` recorded steps after the one its
      trigger was seen on (0: the same step);
    - every recorded step is one loop of the bot: a stop-loss and a take-profit are each seen at their own point
      (with prices as points, one step cannot cross both; were it to, the loop reads the book, the stop-loss is
      checked on it, and the resting TP fills only at the next point: stop-loss first, Freqtrade's rule).
    """

    spread_ticks: int = 2
    depth: Decimal = Decimal(500)
    levels: int = 5
    tp_fill: str = "through"
    exit_latency_steps: int = 0

    def __post_init__(self) -> None:
        if self.tp_fill not in ("through", "touch"):
            raise ValueError(f"fill model: tp_fill must be 'through' or 'touch', not {self.tp_fill!r}")
        if self.spread_ticks < 1 or self.levels < 1 or self.depth <= 0 or self.exit_latency_steps < 0:
            raise ValueError("fill model: spread_ticks and levels must be >= 1, depth > 0, exit_latency_steps >= 0")

    def describe(self) -> dict[str, Any]:
        return {"book": f"best bid {self.spread_ticks / 2:g} tick(s) under the recorded price (rounded down to the "
                        "tick), "
                        f"best ask {self.spread_ticks} ticks above it, {self.levels} levels a side of "
                        f"{self.depth} shares one tick apart",
                "resting_tp": "fills at its price when a recorded price "
                              + ("trades through it (p > price)" if self.tp_fill == "through" else "touches it"),
                "marketable": "walks the modelled book; taker fee by the market's fee curve (today's: the fee in force "
                              "back then is not published)",
                "exit_latency_steps": self.exit_latency_steps,
                "steps": "one loop per recorded price; stop-loss first when a step could cross both",
                "prices": "Polymarket's prices-history: the midpoint, forward-filled, not a price one could trade at",
                "queue": "no queue position: a resting order fills as soon as the price allows"}


@dataclass
class ReplayMarket:
    """One resolved market as recorded: its Gamma entry (ids, version, outcomes, liquidity, volume, end date...),
    each outcome token's price series (unix seconds and prices, oldest first), its payout per token (1 for the
    winner, 0 for the loser, as Gamma resolved it) and what an order needs (tick, minimum size, neg-risk, fee
    curve)."""

    gamma: dict[str, Any]
    tokens: list[str]
    outcomes: list[str]
    series: dict[str, tuple[list[int], list[Decimal]]]
    payouts: dict[str, Decimal]
    tick_size: Decimal = Decimal("0.01")
    min_order_size: Decimal = Decimal(5)
    neg_risk: bool = False
    fee_rate: Decimal = Decimal(0)
    fee_exponent: int = 0
    ends_at: int = 0   # when trading stopped (after its last recorded price, or Gamma's end date)

    def __post_init__(self) -> None:
        if not self.ends_at:
            self.ends_at = max((ts[-1] for ts, _ in self.series.values() if ts), default=0) + 1

    @property
    def condition_id(self) -> str:
        return str(self.gamma.get("conditionId") or "")

    @property
    def market_id(self) -> str:
        return str(self.gamma.get("id") or "")

    def starts_at(self) -> int | None:
        firsts = [ts[0] for ts, _ in self.series.values() if ts]
        return max(firsts) if len(firsts) == len(self.tokens) else None

    def info(self, token_id: str) -> MarketInfo:
        return MarketInfo(token_id, self.condition_id, self.tick_size, self.min_order_size, self.neg_risk,
                          self.fee_rate, self.fee_exponent)


class Prices:
    """The recorded price of every token at the clock's time (the last point at or before it), and ``ahead``
    steps later (an exit's latency)."""

    def __init__(self, markets: Sequence[ReplayMarket], clock: Clock):
        self.clock = clock
        self._series: dict[str, tuple[list[int], list[Decimal]]] = {}
        self._market: dict[str, ReplayMarket] = {}
        for m in markets:
            for token in m.tokens:
                self._series[token] = m.series.get(token, ([], []))
                self._market[token] = m

    def market(self, token_id: str) -> ReplayMarket | None:
        return self._market.get(token_id)

    def price(self, token_id: str, ahead: int = 0) -> Decimal | None:
        """The price at the clock's time (None before the first point, or once the market stopped trading)."""
        times, prices = self._series.get(token_id, ([], []))
        m = self._market.get(token_id)
        now = self.clock.time()
        if not times or m is None or now >= m.ends_at:
            return None
        i = bisect.bisect_right(times, now) - 1
        if i < 0:
            return None
        return prices[min(i + ahead, len(prices) - 1)]


class HistoryBooks:
    """A read-only venue whose books are modelled around the recorded prices (``FillModel``). It counts the reads
    the live venue would have sent (one POST /books per read, one GET /clob-markets per market)."""

    name = "replay"
    log_prefix = "REPLAY "

    def __init__(self, prices: Prices, model: FillModel):
        self.prices = prices
        self.model = model
        self.calls: Counter[str] = Counter()
        self._known: set[str] = set()
        self._books: dict[tuple[str, Decimal], Book] = {}

    def book_at(self, token_id: str, price: Decimal | None) -> Book:
        if price is None:
            return Book(token_id)   # no price yet, or trading stopped: an empty book (the bot asks Gamma why)
        cached = self._books.get((token_id, price))
        if cached is not None:
            return cached
        m = self.prices.market(token_id)
        tick = m.tick_size if m is not None else Decimal("0.01")
        best_bid = price_floor(price - tick * self.model.spread_ticks / 2, tick)
        best_ask = min(best_bid + tick * self.model.spread_ticks, 1 - tick)
        bids = tuple((best_bid - tick * i, self.model.depth) for i in range(self.model.levels)
                     if best_bid - tick * i >= tick)
        asks = tuple((best_ask + tick * i, self.model.depth) for i in range(self.model.levels)
                     if best_ask + tick * i <= 1 - tick)
        book = Book(token_id, bids, asks, tick, m.min_order_size if m is not None else None)
        if len(self._books) > 200_000:
            self._books.clear()
        self._books[(token_id, price)] = book
        return book

    def get_books(self, token_ids: Iterable[str]) -> dict[str, Book]:
        tokens = list(dict.fromkeys(token_ids))
        if tokens:
            self.calls["POST /books"] += (len(tokens) + 499) // 500
        return {t: self.book_at(t, self.prices.price(t)) for t in tokens}

    def execution_book(self, token_id: str) -> Book:
        """The book a marketable order meets: the exit's latency later (not a request: the order's own)."""
        return self.book_at(token_id, self.prices.price(token_id, self.model.exit_latency_steps))

    def get_market_info(self, token_id: str, condition_id: str = "") -> MarketInfo:
        m = self.prices.market(token_id)
        if m is None:
            raise KeyError(f"token {token_id} is in no replayed market")
        if m.condition_id not in self._known:
            self._known.add(m.condition_id)
            self.calls["GET /clob-markets/{id}"] += 1
        return m.info(token_id)

    def books_seen(self, books: dict[str, Book]) -> None:
        """(No push feeds in a replay.)"""

    def api_calls(self) -> dict[str, int]:
        return dict(self.calls)

    def api_calls_total(self) -> int:
        return sum(self.calls.values())


class ReplayVenue(PaperVenue):
    """The paper venue over ``HistoryBooks``: its fills, its share reservation and its fees, with the fill model's
    rule for a resting take-profit and the exit's latency. Each order call is counted as the request the live venue
    would send for it (bot/venue/live.py)."""

    name = "replay"
    log_prefix = "REPLAY "

    def __init__(self, books: HistoryBooks, usdc: Decimal):
        super().__init__(books, usdc, state_file=None)  # type: ignore[arg-type]
        self.books = books

    def _book(self, token_id: str) -> Book:
        return self.books.execution_book(token_id)

    def _resting_fill(self, order: Any, book: Book) -> Decimal:  # noqa: D102
        price = self.books.prices.price(order.token_id)
        if price is None:
            return Decimal(0)
        crossed = price > order.price if self.books.model.tp_fill == "through" else price >= order.price
        return min(order.remaining, self.books.model.depth * self.books.model.levels) if crossed else Decimal(0)

    # What matched at once is answered as the venue answers it (FACTS.md Part 0, 0.2): a match, not yet settled; the
    # loop confirms it from the order's trades in its settle phase, after the entry phase, as live. (A sale settled at
    # once would free its market for an entry in the same loop, which live never does.)
    @staticmethod
    def _matched(fill: Fill) -> Fill:
        return replace(fill, confirmed=False) if fill.filled_shares > 0 else fill

    def market_buy(self, *args: Any, **kwargs: Any) -> Any:
        self.books.calls["POST /order"] += 1
        return self._matched(super().market_buy(*args, **kwargs))

    def limit_sell(self, *args: Any, **kwargs: Any) -> Any:
        self.books.calls["POST /order"] += 1
        return self._matched(super().limit_sell(*args, **kwargs))

    def market_sell(self, *args: Any, **kwargs: Any) -> Any:
        self.books.calls["POST /order"] += 1
        return self._matched(super().market_sell(*args, **kwargs))

    def market_sell_many(self, orders: Any, before_post: Any) -> Any:
        self.books.calls["POST /orders"] += (len(orders) + 14) // 15
        return [f if isinstance(f, VenueError) else self._matched(f)
                for f in super().market_sell_many(orders, before_post)]

    def cancel(self, order_id: str) -> Any:
        self.books.calls["DELETE /order"] += 1
        return super().cancel(order_id)

    def cancel_many(self, order_ids: list[str]) -> Any:
        self.books.calls["DELETE /orders"] += 1
        return super().cancel_many(order_ids)

    def get_order(self, order_id: str) -> Any:
        self.books.calls["GET /data/order/{id}"] += 1
        return super().get_order(order_id)

    def open_orders(self) -> Any:
        self.books.calls["GET /data/orders"] += 1
        return super().open_orders()

    def token_balance(self, token_id: str, refresh: bool = False) -> Decimal:
        self.books.calls["GET /balance-allowance"] += 1 + int(refresh)
        return super().token_balance(token_id, refresh)

    def orders_trades(self, orders: dict[str, str], since: float) -> Any:
        self.books.calls["GET /data/trades"] += len(set(orders.values()))
        return super().orders_trades(orders, since)


_JSON_LISTS = ("outcomes", "outcomePrices", "clobTokenIds", "positionIds")


class HistoryScanner(MarketScanner):
    """Gamma as it was: the markets trading at the clock's time, with their recorded prices, through the scanner's
    own parsing and filters; a market past its end answers its resolution."""

    def __init__(self, markets: Sequence[ReplayMarket], prices: Prices, books: HistoryBooks,
                 strategy: StrategySection):
        super().__init__("replay://gamma", strategy, session=None)
        self.markets = list(markets)
        self.prices = prices
        self.books = books
        self._by_id = {m.market_id: m for m in self.markets}
        # Gamma's JSON-encoded lists decoded once (parse_market takes lists as well as their JSON text).
        self._starts = {m.market_id: m.starts_at() for m in self.markets}
        self._parsed: dict[tuple, list[Candidate]] = {}
        self._raw = {m.market_id: {k: (json.loads(v) if k in _JSON_LISTS and isinstance(v, str) else v)
                                   for k, v in m.gamma.items()} for m in self.markets}

    def fetch_markets(self, now: datetime) -> list[dict[str, Any]]:
        self.calls_by["GAMMA GET /markets"] += 1
        t = now.timestamp()
        out: list[dict[str, Any]] = []
        for m in self.markets:
            start = self._starts[m.market_id]
            if start is None or not start <= t < m.ends_at:
                continue
            prices = [self.prices.price(tok) for tok in m.tokens]
            if any(p is None for p in prices):
                continue
            book = self.books.book_at(m.tokens[0], prices[0])
            raw = dict(self._raw[m.market_id])
            raw.update(outcomePrices=[str(p) for p in prices], active=True, closed=False, acceptingOrders=True,
                       enableOrderBook=True, bestBid=str(book.best_bid) if book.best_bid is not None else None,
                       bestAsk=str(book.best_ask) if book.best_ask is not None else None,
                       spread=str(book.spread) if book.spread is not None else None)
            out.append(raw)
        return out

    def parse(self, raw: dict[str, Any]) -> list[Candidate]:
        """The scanner's parse, memoized: a market's entry changes only with its prices, which repeat."""
        key = (raw.get("id"), tuple(raw.get("outcomePrices") or ()), raw.get("bestBid"), raw.get("bestAsk"))
        cached = self._parsed.get(key)
        if cached is None:
            if len(self._parsed) > 100_000:
                self._parsed.clear()
            cached = self._parsed[key] = super().parse(raw)
        return cached

    def resolution(self, market_id: str, outcome: str) -> Decimal | None:
        self.calls_by["GAMMA GET /markets/{id}"] += 1
        m = self._by_id.get(market_id)
        if m is None or self.prices.clock.time() < m.ends_at:
            return None
        try:
            return m.payouts[m.tokens[m.outcomes.index(outcome)]]
        except (ValueError, KeyError, IndexError):
            return None


def timeline(markets: Sequence[ReplayMarket], since: int, until: int) -> list[int]:
    """Every recorded time in [since, until] (one loop each), and each market's end (its resolution is booked)."""
    times: set[int] = set()
    for m in markets:
        for ts, _ in m.series.values():
            lo, hi = bisect.bisect_left(ts, since), bisect.bisect_right(ts, until)
            times.update(ts[lo:hi])
        if since <= m.ends_at <= until + 1:
            times.add(m.ends_at)
    return sorted(times)

