"""The venue interface and the plain data types that cross it.

Nothing here knows about the SDK or HTTP: the live venue converts the venue's JSON into these types,
the paper venue produces them from its own simulated fills.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from bot.clock import Waker
from bot.errors import VenueError
from bot.money import round_fill_shares, round_fill_usdc, round_price, to_decimal


class OrderStatus(enum.StrEnum):
    """Normalised order status (the seed's check_order_status vocabulary)."""

    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    PENDING = "pending"   # accepted but not matched yet (the venue's DELAYED: markets with a matching delay)
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Book:
    """One token's order book, best level FIRST on both sides (the venue sends best LAST)."""

    token_id: str
    bids: tuple[tuple[Decimal, Decimal], ...] = ()
    asks: tuple[tuple[Decimal, Decimal], ...] = ()
    tick_size: Decimal | None = None
    min_order_size: Decimal | None = None

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0][0] if self.asks else None

    @property
    def spread(self) -> Decimal | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return self.best_ask - self.best_bid

    @staticmethod
    def from_venue(raw: dict[str, Any], token_id: str | None = None) -> Book:
        """Parse a /book or /books element; ValueError names the bad field."""
        if not isinstance(raw, dict):
            raise ValueError(f"book: expected an object, got {type(raw).__name__}")
        tid = str(raw.get("asset_id") or token_id or "")

        def levels(key: str, best_is_max: bool) -> tuple[tuple[Decimal, Decimal], ...]:
            entries = raw.get(key)
            if entries is None:
                return ()
            try:  # fast path: one comprehension per side (this runs for every held token every loop)
                out = [(Decimal(lvl["price"]), Decimal(lvl["size"])) for lvl in entries]
            except (TypeError, KeyError, ArithmeticError, ValueError):
                out = _levels_checked(tid, key, entries)
            if not all(p.is_finite() and z.is_finite() for p, z in out):
                out = _levels_checked(tid, key, entries)
            # Sort rather than trust the order: the venue sends best LAST, but a wrong assumption here
            # would put a stop-loss trigger on the worst price of the book.
            out = [pl for pl in out if pl[1] > 0]
            out.sort(key=lambda pl: pl[0], reverse=best_is_max)
            return tuple(out)

        tick = raw.get("tick_size")
        mos = raw.get("min_order_size")
        return Book(
            token_id=tid,
            bids=levels("bids", True),
            asks=levels("asks", False),
            tick_size=to_decimal(tick, f"book {tid} tick_size") if tick not in (None, "") else None,
            min_order_size=to_decimal(mos, f"book {tid} min_order_size") if mos not in (None, "") else None,
        )


def _levels_checked(tid: str, key: str, entries: object) -> list[tuple[Decimal, Decimal]]:
    """Slow path of book parsing: a ValueError that names the bad level and field."""
    if not isinstance(entries, list):
        raise ValueError(f"book {tid}: '{key}' is not a list")
    out: list[tuple[Decimal, Decimal]] = []
    for i, lvl in enumerate(entries):
        if not isinstance(lvl, dict):
            raise ValueError(f"book {tid}: {key}[{i}] is not an object")
        out.append((to_decimal(lvl.get("price"), f"book {tid} {key}[{i}].price"),
                    to_decimal(lvl.get("size"), f"book {tid} {key}[{i}].size")))
    return out


@dataclass(frozen=True)
class MarketInfo:
    """What an order needs to know about its market."""

    token_id: str
    condition_id: str
    tick_size: Decimal
    min_order_size: Decimal
    neg_risk: bool
    fee_rate: Decimal = Decimal(0)   # the market's taker fee curve: fee = shares * rate * (p(1-p))^exponent
    fee_exponent: int = 0


@dataclass(frozen=True)
class Fill:
    """Result of an order placement: its id, venue status, and what matched at once.

    ``settled`` is False when the answer does not say what matched (status ``delayed``, or a success
    without amounts): the outcome is not known yet and must be looked up by the order's id, never
    read as "nothing matched". ``confirmed`` is False while the trades behind the fill may still fail (a POST
    answer's "matched" is not a settlement: FACTS.md Part 0, 0.2); ``failed_shares`` are shares of the order's
    trades that FAILED (never in ``filled_shares``).

    This is where venue amounts become the bot's numbers: shares and USDC are kept in the venue's base
    units (6 decimals) and the average price has at most 6 decimals, whatever the venue (or the paper
    venue's arithmetic) handed over, so nothing stored downstream carries float noise."""

    order_id: str
    status: str  # venue insert status: live / matched / delayed / unmatched
    filled_shares: Decimal = Decimal(0)
    usdc: Decimal = Decimal(0)  # USDC paid (BUY) or received (SELL) for the matched part, before fees
    fee: Decimal = Decimal(0)   # the taker fee in USDC (on top of a BUY's cost, out of a SELL's proceeds)
    settled: bool = True
    confirmed: bool = True
    failed_shares: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "filled_shares", round_fill_shares(Decimal(self.filled_shares)))
        object.__setattr__(self, "usdc", round_fill_usdc(Decimal(self.usdc)))

    @property
    def avg_price(self) -> Decimal | None:
        return round_price(self.usdc / self.filled_shares) if self.filled_shares > 0 else None


@dataclass(frozen=True)
class OrderState:
    """A normalised order: status, sizes and price."""

    order_id: str
    status: OrderStatus
    token_id: str = ""
    side: str = ""
    price: Decimal | None = None
    original_size: Decimal = Decimal(0)
    filled_size: Decimal = Decimal(0)

    @property
    def remaining(self) -> Decimal:
        return max(self.original_size - self.filled_size, Decimal(0))

    @staticmethod
    def from_venue(raw: dict[str, Any]) -> OrderState:
        """Parse a venue order object (GET /data/order/{id}, /data/orders element)."""
        if not isinstance(raw, dict) or not raw.get("id"):
            raise ValueError(f"order: expected an object with an id, got {str(raw)[:120]!r}")
        oid = str(raw["id"])
        venue_status = str(raw.get("status", "")).upper().replace("ORDER_STATUS_", "")
        original = to_decimal(raw.get("original_size", "0") or "0", f"order {oid} original_size")
        matched = to_decimal(raw.get("size_matched", "0") or "0", f"order {oid} size_matched")
        price_raw = raw.get("price")
        price = to_decimal(price_raw, f"order {oid} price") if price_raw not in (None, "") else None
        if venue_status == "LIVE":
            status = OrderStatus.PARTIALLY_FILLED if matched > 0 else OrderStatus.OPEN
        elif venue_status == "MATCHED":
            status = OrderStatus.FILLED
        elif venue_status == "DELAYED":
            status = OrderStatus.PENDING
        elif venue_status.startswith("CANCELED") or venue_status in ("UNMATCHED", "INVALID"):
            status = OrderStatus.CANCELED
        else:
            status = OrderStatus.UNKNOWN
        return OrderState(
            order_id=oid,
            status=status,
            token_id=str(raw.get("asset_id", "")),
            side=str(raw.get("side", "")).upper(),
            price=price,
            original_size=original,
            filled_size=matched,
        )


@dataclass(frozen=True)
class CancelResult:
    """The venue's answer to a cancel: which ids it cancelled, which it did not and why."""

    canceled: frozenset[str] = frozenset()
    not_canceled: dict[str, str] = field(default_factory=dict)

    def was_canceled(self, order_id: str) -> bool:
        return order_id in self.canceled


@dataclass(frozen=True)
class SellOrder:
    """One fill-and-kill SELL of a batch (``Venue.market_sell_many``)."""

    token_id: str
    shares: Decimal
    min_price: Decimal
    info: MarketInfo


class Venue(Protocol):
    """What the trader needs from an exchange. Errors are bot.errors types only.

    LiveVenue and PaperVenue implement it (mypy checks that in bot/venue/__init__.py)."""

    name: str
    log_prefix: str   # "DRY RUN " for the paper venue

    def get_books(self, token_ids: Iterable[str]) -> dict[str, Book]:
        """Books for all tokens in as few requests as the venue allows (one batch per chunk)."""

    def get_market_info(self, token_id: str, condition_id: str = "") -> MarketInfo:
        """Tick size, minimum size, neg-risk and fee curve of a token (cached). ``condition_id``, when known,
        saves the request that looks up the token's market."""

    def market_buy(self, token_id: str, usdc: Decimal, max_price: Decimal, info: MarketInfo,
                   before_post: Callable[[str], None] | None = None) -> Fill:
        """Spend up to ``usdc`` on asks priced <= max_price, fill-and-kill; ``before_post`` receives the
        order's id before it is sent (every order is signed first, so its id is known and saved)."""

    def limit_sell(self, token_id: str, price: Decimal, shares: Decimal, info: MarketInfo,
                   before_post: Callable[[str], None] | None = None) -> Fill:
        """A resting GTC SELL (the take-profit); ``before_post`` receives the order's id before it is sent."""

    def market_sell(self, token_id: str, shares: Decimal, min_price: Decimal, info: MarketInfo,
                    before_post: Callable[[str], None] | None = None) -> Fill:
        """Sell ``shares`` into bids >= min_price, fill-and-kill; ``before_post`` as for market_buy."""

    def cancel(self, order_id: str) -> CancelResult:
        """Cancel one order and report the venue's answer."""

    def cancel_many(self, order_ids: list[str]) -> CancelResult:
        """Cancel several orders in one request (DELETE /orders) and report the venue's answer for each."""

    def market_sell_many(self, orders: list[SellOrder],
                         before_post: Callable[[list[str | None]], None]) -> list[Fill | VenueError]:
        """Several fill-and-kill SELLs: all signed first, their ids (None: could not be signed) handed to
        ``before_post`` in one call to be saved before any leaves, then sent concurrently or batched. One result
        per order, in order: its Fill, or the error that order met (OrderRejected, TemporaryVenueError,
        UnknownOutcome...), read exactly as ``market_sell`` reads a single answer."""

    def get_order(self, order_id: str) -> OrderState | None:
        """One order by id; None when the venue does not answer for it: never placed, OR no longer live (the venue
        forgets orders filled in full, cancelled or killed: FACTS.md Part 0, 0.3). Only ``order_trades`` can tell."""

    def open_orders(self) -> list[OrderState]:
        """All of the account's open orders (one paged request)."""

    def token_balance(self, token_id: str, refresh: bool = False) -> Decimal:
        """Shares of ``token_id`` the account holds (``refresh``: ask the venue to update its cache first)."""

    def collateral_balance(self) -> Decimal:
        """USDC (pUSD) the account holds."""

    def order_trades(self, order_id: str, token_id: str, since: float) -> Fill:
        """What the account's order ``order_id`` traded on ``token_id`` (``since``: when it was sent, unix seconds on
        the bot's clock; a hint only, the live venue reads the token's trades whole: see ``orders_trades``),
        summed into one Fill (0 shares when none; FAILED trades in ``failed_shares``, ``confirmed`` when every
        other trade is settled): the trade history does not lag a fresh fill the way the balance cache does, and
        it still knows an order that ``get_order`` forgot (filled in full, cancelled: FACTS.md Part 0, 0.3)."""

    def orders_trades(self, orders: dict[str, str], since: float) -> dict[str, Fill]:
        """``order_trades`` for several orders ({order id: token id}) in as few requests as the venue allows (one
        read of the account's trades per token)."""

    def books_seen(self, books: dict[str, Book]) -> None:
        """Books the bot got without asking this venue (the push feed): the paper venue fills its resting
        orders from them as from its own reads; the live venue has nothing to do."""

    def interruptible(self, waker: Waker | None) -> None:
        """Retry waits inside reads end at once when ``waker`` is woken (the read then fails as temporary)."""

    def feed_credentials(self) -> dict[str, str] | None:
        """The API credentials the user channel (bot/feeds.py) authenticates with: {"apiKey", "secret",
        "passphrase"}; None when the venue trades with no key of its own (paper orders: no user channel)."""

    def api_calls(self) -> dict[str, int]:
        """Requests this venue object has sent, by 'METHOD /path' (ids collapsed)."""
