"""Push feeds: the CLOB's WebSocket market and user channels, kept honest against the REST reads.

The loop stays the safety net. A token's pushed book counts (``fresh``) only while its connection is up and
subscribed, a snapshot arrived since the last (re)subscribe, and a REST read confirmed it (``verify``) since;
anything else (a dropped socket, a book that disagrees with REST while the feed stays silent, a pushed best
bid/ask that disagrees with the maintained book) takes the token back to REST at once. Socket threads only
touch this module's state, under one lock, and call ``wake()``; the loop reads everything through the public
methods. Bot-clock times (``clock``) for what the loop compares; real time (``time.monotonic``) for the
connection timers. The API secret and passphrase never reach a log line or an exception text.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.clock import Clock
from bot.config import FeedsSection
from bot.logger import register_secret
from bot.venue.base import Book, Fill

log = logging.getLogger("bot.feeds")
#: The websockets library logs every frame at DEBUG, the user channel's auth message included: never let it.
_WS_LOG = logging.getLogger("bot.feeds.websockets")
_WS_LOG.setLevel(logging.WARNING)

_OPEN_TIMEOUT = 5.0      # seconds for the TCP+TLS+WebSocket handshake
_CLOSE_TIMEOUT = 1.0
_POLL = 0.1              # socket threads look at their pending operations and timers this often
_MAX_MESSAGE = 2 ** 24   # an initial dump of 200 books can exceed the library's 1 MiB default
#: A token whose feed keeps talking is still checked against REST every this many check_seconds.
BUSY_CHECK_FACTOR = 4
_BUFFERED_ORDERS = 512   # events for orders not (yet) watched, kept in case the loop names them a moment later


def _dec(value: Any) -> Decimal | None:
    """A finite non-negative Decimal, or None for anything else (no float ever)."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() and d >= 0 else None


def _set_level(levels: dict[Decimal, Decimal], price: Decimal, size: Decimal, best: Decimal | None,
               is_bid: bool) -> Decimal | None:
    """Apply one level change; returns the side's new best price (a full scan only when the best is removed)."""
    if size == 0:
        if levels.pop(price, None) is not None and price == best:
            return (max(levels) if is_bid else min(levels)) if levels else None
        return best
    levels[price] = size
    if best is None or (price > best if is_bid else price < best):
        return price
    return best


def _agrees(pushed: Decimal, mine: Decimal | None, is_bid: bool) -> bool:
    if mine is None:   # an empty side: the venue sends 0 (or 1 for an empty ask side)
        return pushed == 0 or (not is_bid and pushed == 1)
    return pushed == mine


@dataclass(frozen=True)
class OrderFeed:
    """What the user channel said about one of the bot's orders (cumulative)."""

    order_id: str
    #: The larger of the order events' size_matched and the sum of its trades seen (FAILED ones removed).
    size_matched: Decimal
    #: It no longer rests: fully matched, or a CANCELLATION was seen.
    final: bool
    canceled: bool
    #: The fill, when every trade seen had the order as a maker and they add up to size_matched (fee 0);
    #: None otherwise: the bot reads the order's trades over REST.
    maker_fill: Fill | None
    #: A trade of it came back FAILED (or unreadable): the bot re-checks over REST.
    failed: bool


@dataclass
class FeedChanges:
    """What happened since the last ``take_changes``."""

    tokens: set[str]               # best bid crossed the token's trigger
    orders: dict[str, OrderFeed]   # watched orders with new user events
    market_reconnected: bool       # a market connection (re)subscribed (the first time too)
    user_reconnected: bool         # the user channel (re)subscribed (the first time too)
    resolved: set[str]             # market_resolved arrived for these tokens


class _Tok:
    __slots__ = ("conn", "bids", "asks", "best_bid", "best_ask", "tick", "subscribed", "snapshot", "verified",
                 "stale", "seen_at", "checked_at", "fresh_since", "cache")

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.best_bid: Decimal | None = None
        self.best_ask: Decimal | None = None
        self.tick: Decimal | None = None
        self.subscribed = False   # named in a subscribe sent on the current socket
        self.snapshot = False     # a book arrived since the last (re)subscribe
        self.verified = False     # verify() agreed since then, and no pushed best bid/ask contradicted the book
        self.stale = False        # found stale by verify(), not confirmed since
        self.seen_at: float | None = None
        self.checked_at: float | None = None
        self.fresh_since: float | None = None
        self.cache: Book | None = None


class _Conn:
    """One socket's bookkeeping (a market connection, or the user channel with markets instead of tokens)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: set[str] = set()     # tokens (market) or condition ids (user) it owns
        self.sent: set[str] = set()      # subscribed on the current socket
        self.sub: set[str] = set()       # to subscribe
        self.unsub: set[str] = set()     # to unsubscribe
        self.resub: set[str] = set()     # stale tokens to subscribe again
        self.deadlines: dict[str, float] = {}   # token -> monotonic time its snapshot must arrive by
        self.connected = False
        self.closing = False
        self.delivered = False           # the current socket received something (the backoff starts over)
        self.refused = False             # the venue refused it (a close 1008, HTTP 401/403)
        self.thread: threading.Thread | None = None


class _Order:
    __slots__ = ("matched", "original", "canceled", "trades", "failed_ids", "failed", "settled_ids")

    def __init__(self) -> None:
        self.matched = Decimal(0)
        self.original: Decimal | None = None
        self.canceled = False
        self.trades: dict[str, tuple[Decimal, Decimal, bool]] = {}   # trade id -> (shares, usdc, as maker)
        self.failed_ids: set[str] = set()
        self.failed = False
        self.settled_ids: set[str] = set()   # trades seen MINED or CONFIRMED (a match is not a settlement)

    def view(self, order_id: str) -> OrderFeed:
        total = sum((t[0] for t in self.trades.values()), Decimal(0))
        matched = max(self.matched, total)
        final = self.canceled or (self.original is not None and self.original > 0 and matched >= self.original)
        maker_fill = None
        if self.trades and total == matched and all(t[2] for t in self.trades.values()):
            usdc = sum((t[1] for t in self.trades.values()), Decimal(0))
            maker_fill = Fill(order_id, "matched", filled_shares=total, usdc=usdc, fee=Decimal(0),
                              confirmed=self.settled_ids >= self.trades.keys())
        return OrderFeed(order_id, matched, final, self.canceled, maker_fill, self.failed)


class Feeds:
    """The market channel (books, for the stop-loss triggers) and the user channel (the bot's orders)."""

    def __init__(self, config: FeedsSection, clock: Clock, wake: Callable[[], None],
                 credentials: dict[str, str] | None = None, connect: Callable[..., Any] | None = None,
                 rng: random.Random | None = None) -> None:
        self._cfg = config
        self._clock = clock
        self._wake_cb = wake
        self._creds = {k: str((credentials or {}).get(k, "")) for k in ("apiKey", "secret", "passphrase")}
        self._has_user = credentials is not None
        self._secrets = [s for s in (self._creds["secret"], self._creds["passphrase"]) if s]
        for s in self._secrets:
            register_secret(s)
        if connect is None:
            from websockets.sync.client import connect as ws_connect
            connect = ws_connect
        self._connect_fn = connect
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = False
        self._logged: set[str] = set()
        # market
        self._tokens: dict[str, _Tok] = {}
        self._triggers: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self._conns: list[_Conn] = []
        self._threads: list[threading.Thread] = []
        self._n_conns = 0
        # user
        self._user = _Conn("user channel")
        self._watched: set[str] = set()
        self._orders: dict[str, _Order] = {}
        self._buffered: OrderedDict[str, _Order] = OrderedDict()
        self._acks: dict[str, float] = {}
        self._u_verified = False
        self._u_gen = 0          # user connections so far
        self._u_gen_taken = 0    # the generation the loop was last told about (take_changes)
        # accumulated changes
        self._ch_tokens: set[str] = set()
        self._ch_orders: set[str] = set()
        self._ch_market = False
        self._ch_user = False
        self._ch_resolved: set[str] = set()
        self._reconnects = 0
        self._messages = 0

    # ----------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Arm the feeds; nothing connects until watch() names something."""
        with self._lock:
            self._started = True
            for c in self._conns:
                self._spawn(c)
            if self._has_user and self._user.items:
                self._spawn(self._user)

    def stop(self) -> None:
        """Close everything and join the threads (within about 2 s)."""
        self._stop.set()
        deadline = time.monotonic() + 2.0
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _spawn(self, c: _Conn) -> None:
        """Start ``c``'s thread (under the lock)."""
        if c.thread is None and self._started and not self._stop.is_set():
            c.thread = threading.Thread(target=self._run, args=(c,), name=f"feeds-{c.name.split()[0]}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [c.thread]
            c.thread.start()

    # -------------------------------------------------------------------------------------- subscriptions

    def watch(self, tokens: dict[str, str], triggers: dict[str, tuple[Decimal | None, Decimal | None]]) -> None:
        """The held tokens (token id -> condition id; cheap when unchanged) and their triggers (low, high): a best
        bid that changes to <= low or >= high wakes the loop and lands in FeedChanges.tokens."""
        with self._lock:
            self._triggers = dict(triggers)
            markets = {m for m in tokens.values() if m}
            if tokens.keys() == self._tokens.keys() and markets == self._user.items:
                return
            for t in [t for t in self._tokens if t not in tokens]:
                st = self._tokens.pop(t)
                c = st.conn
                c.items.discard(t)
                c.sub.discard(t)
                c.resub.discard(t)
                c.deadlines.pop(t, None)
                if t in c.sent:
                    c.unsub.add(t)
                if not c.items:
                    c.closing = True
                    self._conns.remove(c)
            cap = self._cfg.max_assets_per_connection
            for t in tokens:
                if t in self._tokens:
                    continue
                room = next((c for c in self._conns if len(c.items) < cap), None)
                if room is None:
                    self._n_conns += 1
                    room = _Conn(f"market-{self._n_conns}")
                    self._conns.append(room)
                    self._spawn(room)
                room.items.add(t)
                room.unsub.discard(t)
                room.sub.add(t)   # sent by a live session; a (re)connect's first subscribe names it anyway
                self._tokens[t] = _Tok(room)
            u = self._user
            for m in u.items - markets:
                u.sub.discard(m)
                if m in u.sent:
                    u.unsub.add(m)
            for m in markets - u.items:
                u.unsub.discard(m)
                u.sub.add(m)
            u.items = markets
            if self._has_user and markets:
                if u.thread is not None and not u.thread.is_alive():
                    u.thread = None
                self._spawn(u)

    def watch_orders(self, order_ids: set[str]) -> None:
        """The bot's order ids whose user events matter (events seen a moment before are kept for them)."""
        with self._lock:
            self._watched = set(order_ids)
            for oid in [o for o in self._orders if o not in self._watched]:
                del self._orders[oid]
            found = [o for o in self._watched if o in self._buffered]
            for oid in found:
                self._orders[oid] = self._buffered.pop(oid)
                self._ch_orders.add(oid)
        if found:
            self._wake()

    def expect_order(self, order_id: str) -> None:
        """The bot just sent this order: the user channel must mention it within user_ack_seconds."""
        with self._lock:
            if not self._has_user:
                return
            self._watched.add(order_id)
            if order_id in self._buffered:
                self._orders[order_id] = self._buffered.pop(order_id)
                self._ch_orders.add(order_id)
            elif order_id not in self._orders and self._user.connected:
                self._acks[order_id] = time.monotonic() + self._cfg.user_ack_seconds

    # ---------------------------------------------------------------------------------------- the market

    def _is_fresh(self, st: _Tok) -> bool:
        return st.conn.connected and st.subscribed and st.snapshot and st.verified and not st.stale

    def fresh(self, token_id: str) -> bool:
        """Connected, subscribed, a snapshot since the last (re)subscribe, verify()-ed since, not stale."""
        with self._lock:
            st = self._tokens.get(token_id)
            return st is not None and self._is_fresh(st)

    def fresh_since(self, token_id: str) -> float | None:
        """Bot-clock time it last became fresh (None while it is not)."""
        with self._lock:
            st = self._tokens.get(token_id)
            return st.fresh_since if st is not None and self._is_fresh(st) else None

    def book(self, token_id: str) -> Book | None:
        """The maintained book (best first), only while fresh."""
        with self._lock:
            st = self._tokens.get(token_id)
            if st is None or not self._is_fresh(st):
                return None
            if st.cache is None:
                st.cache = Book(token_id, bids=tuple(sorted(st.bids.items(), reverse=True)),
                                asks=tuple(sorted(st.asks.items())), tick_size=st.tick)
            return st.cache

    def seen_at(self, token_id: str) -> float | None:
        """Bot-clock time of the token's last feed message."""
        with self._lock:
            st = self._tokens.get(token_id)
            return st.seen_at if st is not None else None

    def due_for_check(self, now: float) -> list[str]:
        """Fresh tokens with neither a feed message nor a verify() in the last check_seconds, and busy ones not
        verified for BUSY_CHECK_FACTOR times that (messages that keep coming do not prove the book is right)."""
        limit = now - self._cfg.check_seconds
        busy_limit = now - self._cfg.check_seconds * BUSY_CHECK_FACTOR
        with self._lock:
            return [t for t, st in self._tokens.items() if self._is_fresh(st)
                    and (max(st.seen_at or 0.0, st.checked_at or 0.0) <= limit or (st.checked_at or 0.0) <= busy_limit)]

    def verify(self, token_id: str, rest_book: Book, read_started: float) -> bool:
        """The loop read the token's book over REST (``read_started``: clock.time() before the read). Agreeing
        (or a feed message since read_started) makes it fresh; disagreeing with a silent feed makes it stale:
        logged once, resubscribed, and its connection replaced if no snapshot follows. Returns fresh()."""
        now = self._clock.time()
        with self._lock:
            st = self._tokens.get(token_id)
            if st is None or not (st.snapshot and st.subscribed and st.conn.connected):
                return False
            was = self._is_fresh(st)
            agree = st.best_bid == rest_book.best_bid and st.best_ask == rest_book.best_ask
            if agree or (st.seen_at is not None and st.seen_at >= read_started):
                st.verified, st.stale, st.checked_at = True, False, now
                if not was:
                    st.fresh_since = now
                return True
            first = not st.stale
            st.stale, st.verified, st.snapshot = True, False, False
            st.conn.resub.add(token_id)
            feed, conn = (st.best_bid, st.best_ask), st.conn.name
        (log.warning if first else log.debug)(
            "feeds: token %s is stale on %s (feed bid/ask %s/%s, REST %s/%s, nothing pushed since the read): "
            "resubscribing", token_id, conn, feed[0], feed[1], rest_book.best_bid, rest_book.best_ask)
        return False

    def _own(self, c: _Conn, asset: Any) -> _Tok | None:
        st = self._tokens.get(asset) if isinstance(asset, str) else None
        return st if st is not None and st.conn is c else None

    def _trigger(self, token: str, st: _Tok) -> bool:
        trig = self._triggers.get(token)
        if trig is None:
            return False
        low, high = trig
        bid = st.best_bid if st.best_bid is not None else Decimal(0)   # no bid at all: as low as it gets
        if (low is not None and bid <= low) or (high is not None and st.best_bid is not None and bid >= high):
            self._ch_tokens.add(token)
            return True
        return False

    def _check_bbo(self, token: str, st: _Tok, ev: dict[str, Any]) -> bool:
        """A pushed best bid/ask that disagrees with the maintained book: not verified until the next verify()."""
        if not st.snapshot:
            return False
        ok = True
        for key, mine, is_bid in (("best_bid", st.best_bid, True), ("best_ask", st.best_ask, False)):
            raw = ev.get(key)
            if raw is None or raw == "":
                continue
            pushed = _dec(raw)
            if pushed is None:
                self._once(f"market-{key}", "feeds: a market message with a bad %s (%r) was skipped", key, raw)
            elif not _agrees(pushed, mine, is_bid):
                ok = False
        if ok or not st.verified:
            return False
        was = self._is_fresh(st)
        st.verified = False
        self._once("bbo-mismatch", "feeds: token %s: the pushed best bid/ask (%s/%s) disagrees with the maintained "
                   "book (%s/%s); it is read over REST until verified again", token,
                   ev.get("best_bid"), ev.get("best_ask"), st.best_bid, st.best_ask)
        return was

    def _levels(self, raw: list[Any], token: str) -> dict[Decimal, Decimal]:
        out: dict[Decimal, Decimal] = {}
        for lvl in raw:
            p = _dec(lvl.get("price")) if isinstance(lvl, dict) else None
            s = _dec(lvl.get("size")) if isinstance(lvl, dict) else None
            if p is None or s is None:
                self._once("book-level", "feeds: a book level with bad numbers was skipped (%s: %r)", token, lvl)
            elif s > 0:
                out[p] = s
        return out

    def _market_event(self, c: _Conn, ev: dict[str, Any], now: float) -> bool:
        """Apply one market event (under the lock); True when wake() is due."""
        kind = ev.get("event_type")
        if kind == "price_change":
            changes = ev.get("price_changes")
            if not isinstance(changes, list):
                self._once("price_change", "feeds: a price_change without price_changes was skipped")
                return False
            before: dict[str, Decimal | None] = {}
            last: dict[str, dict[str, Any]] = {}
            for ch in changes:
                st = self._own(c, ch.get("asset_id")) if isinstance(ch, dict) else None
                if st is None:
                    continue
                token = ch["asset_id"]
                price, size, side = _dec(ch.get("price")), _dec(ch.get("size")), ch.get("side")
                if price is None or size is None or side not in ("BUY", "SELL"):
                    self._once("price_change-entry", "feeds: a price_change entry was skipped (%r)", ch)
                    continue
                before.setdefault(token, st.best_bid)
                st.seen_at = now
                st.cache = None
                if side == "BUY":
                    st.best_bid = _set_level(st.bids, price, size, st.best_bid, True)
                else:
                    st.best_ask = _set_level(st.asks, price, size, st.best_ask, False)
                last[token] = ch
            wake = False
            for token, ch in last.items():   # the entry's best bid/ask, checked once all entries are applied
                st = self._tokens[token]
                wake = self._check_bbo(token, st, ch) or wake
                if st.best_bid != before[token]:
                    wake = self._trigger(token, st) or wake
            return wake
        if kind == "market_resolved":
            raw = ev.get("assets_ids")
            ids: list[Any] = raw if isinstance(raw, list) else [ev.get("asset_id")]
            mine = [t for t in ids if isinstance(t, str) and t in self._tokens]   # whichever connection said it
            for t in mine:
                self._tokens[t].seen_at = now
                self._ch_resolved.add(t)
            return bool(mine)
        st = self._own(c, ev.get("asset_id"))
        if st is None:
            return False
        token = ev["asset_id"]
        st.seen_at = now
        if kind == "book":
            bids, asks = ev.get("bids"), ev.get("asks")
            if not isinstance(bids, list) or not isinstance(asks, list):
                self._once("book", "feeds: a book without bids/asks lists was skipped (%s)", token)
                return False
            old = st.best_bid
            st.bids, st.asks = self._levels(bids, token), self._levels(asks, token)
            st.best_bid = max(st.bids) if st.bids else None
            st.best_ask = min(st.asks) if st.asks else None
            tick = _dec(ev.get("tick_size"))
            st.tick = tick if tick else st.tick
            st.snapshot, st.cache = True, None
            c.deadlines.pop(token, None)
            return st.best_bid != old and self._trigger(token, st)
        if kind == "tick_size_change":
            tick = _dec(ev.get("new_tick_size"))
            if not tick:
                self._once("tick_size_change", "feeds: a tick_size_change without a valid new_tick_size: %r", ev)
                return False
            st.tick, st.cache = tick, None
        elif kind == "best_bid_ask":
            return self._check_bbo(token, st, ev)
        return False

    def _on_market(self, c: _Conn, text: str) -> None:
        items = self._parse(text, "market")
        now = self._clock.time()
        wake = False
        with self._lock:
            for ev in items:
                self._messages += 1
                try:
                    wake = self._market_event(c, ev, now) or wake
                except Exception as exc:   # a shape nobody foresaw: skip it, never lose the thread
                    self._once(f"market-{ev.get('event_type')}-error", "feeds: a market %s message was skipped "
                               "(%s: %s)", ev.get("event_type"), type(exc).__name__, exc)
        if wake:
            self._wake()

    # -------------------------------------------------------------------------------------- the user side

    def user_fresh(self) -> bool:
        """User channel up and subscribed, no order acknowledgement overdue, and user_verified() since."""
        now = time.monotonic()
        with self._lock:
            u = self._user
            return (u.connected and bool(u.sent) and self._u_verified
                    and not any(d <= now for d in self._acks.values()))

    def user_verified(self) -> None:
        """The loop reconciled the orders over REST after the (re)connect it last took from take_changes()."""
        with self._lock:
            if self._user.connected and self._u_gen == self._u_gen_taken:
                self._u_verified = True

    def order(self, order_id: str) -> OrderFeed | None:
        """The current cumulative view of a watched order."""
        with self._lock:
            st = self._orders.get(order_id)
            return st.view(order_id) if st is not None else None

    def _order_state(self, oid: str) -> tuple[_Order, bool]:
        """The order's state, and whether the loop watches it (others are buffered, a bounded few)."""
        self._acks.pop(oid, None)
        if oid in self._watched:
            return self._orders.setdefault(oid, _Order()), True
        st = self._buffered.pop(oid, None) or _Order()
        self._buffered[oid] = st
        while len(self._buffered) > _BUFFERED_ORDERS:
            self._buffered.popitem(last=False)
        return st, False

    def _user_event(self, ev: dict[str, Any]) -> bool:
        kind = ev.get("event_type")
        if kind == "order":
            oid = ev.get("id")
            if not isinstance(oid, str) or not oid:
                self._once("order-id", "feeds: a user order event without an id was skipped")
                return False
            st, watched = self._order_state(oid)
            matched, original = ev.get("size_matched"), ev.get("original_size")
            for raw, name in ((matched, "size_matched"), (original, "original_size")):
                if raw not in (None, "") and _dec(raw) is None:
                    self._once(f"order-{name}", "feeds: a user order event with a bad %s (%r)", name, raw)
            if (d := _dec(matched)) is not None:
                st.matched = max(st.matched, d)
            if (d := _dec(original)) is not None:
                st.original = d
            if str(ev.get("type", "")).upper() == "CANCELLATION":
                st.canceled = True
            if watched:
                self._ch_orders.add(oid)
            return watched
        if kind != "trade":
            return False
        tid, status = ev.get("id"), str(ev.get("status", "")).upper()
        if not isinstance(tid, str) or not tid:
            self._once("trade-id", "feeds: a user trade event without an id was skipped")
            return False
        mine: dict[str, list[Any]] = {}   # order id -> [shares, usdc, as maker, numbers ok]
        taker = ev.get("taker_order_id")
        if isinstance(taker, str) and taker:
            s, p = _dec(ev.get("size")), _dec(ev.get("price"))
            mine[taker] = [s or Decimal(0), (s or 0) * (p or 0), False, s is not None and p is not None]
        makers = ev.get("maker_orders")
        for m in makers if isinstance(makers, list) else ():
            oid = m.get("order_id") if isinstance(m, dict) else None
            if not isinstance(oid, str) or not oid or oid == taker:
                continue
            s, p = _dec(m.get("matched_amount")), _dec(m.get("price"))
            row = mine.setdefault(oid, [Decimal(0), Decimal(0), True, True])
            row[0] += s or 0
            row[1] += (s or 0) * (p or 0)
            row[3] = row[3] and s is not None and p is not None
        wake = False
        for oid, (shares, usdc, maker, ok) in mine.items():
            st, watched = self._order_state(oid)
            if status == "FAILED":
                st.trades.pop(tid, None)
                st.settled_ids.discard(tid)
                st.failed_ids.add(tid)
                st.failed = True
            elif status in ("MINED", "CONFIRMED") and tid not in st.failed_ids:
                st.settled_ids.add(tid)
            if status != "FAILED" and tid not in st.trades and tid not in st.failed_ids:
                if ok:
                    st.trades[tid] = (shares, usdc, maker)
                else:
                    st.failed = True   # unreadable numbers: the bot re-checks over REST
                    self._once("trade-numbers", "feeds: user trade %s has bad amounts; order %s is re-checked "
                               "over REST", tid, oid)
            if watched:
                self._ch_orders.add(oid)
                wake = True
        return wake

    def _on_user(self, text: str) -> None:
        wake = False
        items = self._parse(text, "user")
        with self._lock:
            for ev in items:
                self._messages += 1
                try:
                    wake = self._user_event(ev) or wake
                except Exception as exc:
                    self._once(f"user-{ev.get('event_type')}-error", "feeds: a user %s message was skipped (%s)",
                               ev.get("event_type"), type(exc).__name__)
        if wake:
            self._wake()

    # ---------------------------------------------------------------------------------- changes and stats

    def take_changes(self) -> FeedChanges:
        """Return and clear what accumulated."""
        with self._lock:
            ch = FeedChanges(self._ch_tokens, {o: self._orders[o].view(o) for o in self._ch_orders
                                               if o in self._orders},
                             self._ch_market, self._ch_user, self._ch_resolved)
            if self._ch_user:
                self._u_gen_taken = self._u_gen
            self._ch_tokens, self._ch_orders, self._ch_resolved = set(), set(), set()
            self._ch_market = self._ch_user = False
            return ch

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"market_connections": sum(1 for c in self._conns if c.connected),
                    "user_connected": self._user.connected, "reconnects": self._reconnects,
                    "messages": self._messages, "stale_tokens": sum(1 for s in self._tokens.values() if s.stale),
                    "fresh_tokens": sum(1 for s in self._tokens.values() if self._is_fresh(s))}

    # ------------------------------------------------------------------------------------------- sockets

    def _wake(self) -> None:
        try:
            self._wake_cb()
        except Exception:   # the loop's waker must not take a socket thread down
            log.exception("feeds: wake() failed")

    def _once(self, kind: str, msg: str, *args: Any) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(self._scrub(msg % args if args else msg) + " (logged once)")

    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _parse(self, text: str, channel: str) -> list[dict[str, Any]]:
        try:
            data = json.loads(text)
        except ValueError:
            self._once(f"{channel}-text", "feeds: %s channel sent a message that is not JSON (skipped): %.80r",
                       channel, text)
            return []
        items = data if isinstance(data, list) else [data]
        good = [ev for ev in items if isinstance(ev, dict)]
        if len(good) != len(items):
            self._once(f"{channel}-shape", "feeds: %s channel sent a message that is not an object (skipped)", channel)
        return good

    def _describe(self, exc: BaseException) -> tuple[str, bool]:
        """Why a connection ended, and whether the venue refused it (bad credentials, most likely)."""
        rcvd = getattr(exc, "rcvd", None)
        if rcvd is not None:
            why = " (policy violation: refused credentials, or a PING before the subscribe)" * (rcvd.code == 1008)
            text = f"closed by the venue, code {rcvd.code}{why}: {rcvd.reason or 'no reason given'}"
            return self._scrub(text), rcvd.code == 1008
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return self._scrub(f"{type(exc).__name__}: {exc}")[:300], status in (401, 403)

    def _hello(self, c: _Conn, items: list[str]) -> dict[str, Any]:
        if c is self._user:
            # No market filter (it is optional): every order of the account is reported, so the events of a new
            # position's first orders are never lost to a subscription sent after them. Its items only say
            # whether anything is held (the channel connects while something is).
            return {"type": "user", "auth": dict(self._creds), "markets": []}
        return {"type": "market", "assets_ids": items, "initial_dump": True, "custom_feature_enabled": True}

    def _run(self, c: _Conn) -> None:
        """A connection's thread: connect, subscribe, receive; reconnect with capped backoff until stopped."""
        failures, quiet = 0, False
        while not self._stop.is_set():
            with self._lock:
                if c.closing or (c is self._user and not c.items):
                    c.thread = None
                    return
            try:
                delivered, reason = self._session(c)
            except Exception:   # a bug here must not end the thread: its tokens would never come back
                log.exception("feeds: %s: unexpected error", c.name)
                delivered, reason = False, ""
            if self._stop.is_set() or c.closing or not c.items:
                continue
            failures = 0 if delivered else failures
            base = min(self._cfg.reconnect_max_seconds, self._cfg.reconnect_min_seconds * 2 ** min(failures, 20))
            failures += 1
            with self._lock:
                delay = min(self._cfg.reconnect_max_seconds,
                            max(self._cfg.reconnect_min_seconds, base * (0.8 + 0.4 * self._rng.random())))
                self._reconnects += 1
            if reason:
                level = logging.DEBUG if quiet else logging.WARNING
                if c is self._user and c.refused:
                    level = logging.DEBUG if quiet else logging.ERROR
                    reason += f" (apiKey {self._creds['apiKey'][:8]}…)"
                log.log(level, "feeds: %s: %s; reconnecting in %.2f s", c.name, reason, delay)
            quiet = not delivered   # consecutive failures: one line, then debug until data flows again
            self._stop.wait(delay)

    def _session(self, c: _Conn) -> tuple[bool, str]:
        """One connection's life; returns (it delivered data, why it ended)."""
        c.delivered, c.refused, reason, lost = False, False, "", False
        url = self._cfg.user_url if c is self._user else self._cfg.market_url
        try:
            with self._connect_fn(url, open_timeout=_OPEN_TIMEOUT, ping_interval=None, close_timeout=_CLOSE_TIMEOUT,
                                  max_size=_MAX_MESSAGE, logger=_WS_LOG) as ws:
                try:
                    reason = self._converse(c, ws)
                finally:
                    lost = True
                    self._lost(c)   # before the closing handshake, which may take a while
        except Exception as exc:   # a refused or failed connect, a close, a socket error
            reason, c.refused = self._describe(exc)
            if not lost:
                self._lost(c)
        return c.delivered, reason

    def _lost(self, c: _Conn) -> None:
        """The connection ended (or never was): its tokens are not fresh, at once, and the loop is woken."""
        with self._lock:
            c.connected = False
            c.sent = set()
            c.deadlines.clear()
            owned = bool(c.items) and not c.closing
            if c is not self._user:
                for t in c.items:
                    st = self._tokens.get(t)
                    if st is not None and st.conn is c:
                        st.subscribed = st.snapshot = st.verified = False
        if owned and not self._stop.is_set():
            self._wake()

    def _converse(self, c: _Conn, ws: Any) -> str:
        """Subscribe, then receive, ping and send the pending operations until something ends it (why)."""
        is_user = c is self._user
        with self._lock:
            items = sorted(c.items)
            c.sent = set(items)
            c.sub.clear()
            c.unsub.clear()
            c.resub.clear()
            c.deadlines.clear()
        if not items or c.closing or self._stop.is_set():
            return ""
        ws.send(json.dumps(self._hello(c, items)))
        with self._lock:
            c.connected = True
            if is_user:
                self._u_gen += 1
                self._u_verified = False
                self._acks.clear()
                self._ch_user = True
            else:
                for t in items:
                    st = self._own(c, t)
                    if st is not None:
                        st.subscribed = True
                self._ch_market = True
        ping_every = self._cfg.ping_seconds
        next_ping = last_rx = time.monotonic()
        next_ping += ping_every
        while not self._stop.is_set():
            try:
                msg = ws.recv(timeout=max(0.0, min(_POLL, next_ping - time.monotonic())))
            except TimeoutError:
                msg = None
            now = time.monotonic()
            if msg is not None:
                last_rx, c.delivered = now, True   # a PONG too: the venue kept the subscription
                text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
                if text != "PONG":
                    if is_user:
                        self._on_user(text)
                    else:
                        self._on_market(c, text)
            reason = self._operations(c, ws, now)
            if reason:
                return reason
            if now >= next_ping:
                ws.send("PING")
                next_ping = now + ping_every
            if now - last_rx > 3 * ping_every + 1:
                return f"nothing received for {now - last_rx:.1f} s (not even a PONG)"
        return ""

    def _operations(self, c: _Conn, ws: Any, now: float) -> str:
        """Send the pending (un)subscribes; returns why the connection must be replaced, or ''."""
        key = "markets" if c is self._user else "assets_ids"
        with self._lock:
            if c.closing:
                return "closing"
            if c is self._user:
                if not c.items:
                    return "no markets left to follow"
                late = [o for o, d in self._acks.items() if d <= now]
                if late:
                    self._acks.clear()
                    return (f"order {late[0]} not mentioned within {self._cfg.user_ack_seconds:g} s of being sent "
                            "(the channel is stale)")
            late = [t for t, d in c.deadlines.items() if d <= now]
            if late:
                return f"no snapshot for {late[0]} within {self._cfg.resubscribe_timeout_seconds:g} s of a resubscribe"
            unsub, sub, resub = sorted(c.unsub), sorted(c.sub & c.items), sorted(c.resub & c.items)
            c.unsub.clear()
            c.sub.clear()
            c.resub.clear()
            c.sent.difference_update(unsub)
            c.sent.update(sub, resub)
        if c is self._user:
            return ""   # it follows every market (see _hello): nothing to (un)subscribe
        if unsub:
            ws.send(json.dumps({"operation": "unsubscribe", key: unsub}))
        if sub or resub:
            ws.send(json.dumps({"operation": "subscribe", key: sub + resub}))
            with self._lock:
                for t in sub:
                    st = self._own(c, t)
                    if st is not None:
                        st.subscribed = True
                for t in resub:
                    if t in c.items:
                        c.deadlines[t] = now + self._cfg.resubscribe_timeout_seconds
        return ""
