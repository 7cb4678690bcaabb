"""bot/feeds.py against a tiny scripted WebSocket server on 127.0.0.1 (market and user channels)."""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import ServerConnection, serve

from bot.clock import SimulatedClock
from bot.config import FeedsSection
from bot.feeds import Feeds
from bot.venue.base import Book

D = Decimal
T1, T2, T3 = "111", "222", "333"
M1, M2 = "0xcond1", "0xcond2"
SECRET = "c2VjcmV0LXNob3VsZC1uZXZlci1sZWFr"
PASSPHRASE = "passphrase-never-logged"
CREDS = {"apiKey": "abcdef12-3456-7890-key", "secret": SECRET, "passphrase": PASSPHRASE}


def wait_for(pred: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


class Peer:
    """One client connection as the server sees it."""

    def __init__(self, ws: ServerConnection, path: str) -> None:
        self.ws = ws
        self.path = path
        self.received: list[str] = []
        self.closed = threading.Event()

    def json(self) -> list[Any]:
        return [json.loads(m) for m in self.received if m != "PING"]

    def send(self, msg: Any) -> None:
        self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.ws.close(code, reason)


class Server:
    """Records what clients send, answers PING with PONG, sends what the test says."""

    def __init__(self) -> None:
        self.peers: list[Peer] = []
        self.on_first: Callable[[Peer, str], None] | None = None
        self.pong = True
        self._srv = serve(self._handler, "127.0.0.1", 0)
        self.port = self._srv.socket.getsockname()[1]
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def _handler(self, ws: ServerConnection) -> None:
        peer = Peer(ws, ws.request.path if ws.request else "")
        self.peers.append(peer)
        try:
            for msg in ws:
                assert isinstance(msg, str)
                peer.received.append(msg)
                if msg == "PING" and self.pong:
                    ws.send("PONG")
                if len(peer.received) == 1 and self.on_first is not None:
                    self.on_first(peer, msg)
        except ConnectionClosed:
            pass
        finally:
            peer.closed.set()

    def on(self, path: str) -> list[Peer]:
        return [p for p in self.peers if p.path == path]

    def peer(self, path: str, index: int = 0) -> Peer:
        return wait_for(lambda: len(self.on(path)) > index and self.on(path)[index])

    def shutdown(self) -> None:
        self._srv.shutdown()


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.shutdown()


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    got: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = got.append  # type: ignore[method-assign]
    logger = logging.getLogger("bot.feeds")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield got
    logger.removeHandler(handler)
    logger.setLevel(old)


class Rig:
    def __init__(self, server: Server, credentials: dict[str, str] | None = None, **cfg: Any) -> None:
        base = dict(market_url=f"ws://127.0.0.1:{server.port}/ws/market",
                    user_url=f"ws://127.0.0.1:{server.port}/ws/user",
                    reconnect_min_seconds=0.05, reconnect_max_seconds=0.2)
        base.update(cfg)
        self.config = FeedsSection(**base)
        self.clock = SimulatedClock()
        self.wakes = Wakes()
        self.connects: list[str] = []

        def connect(url: str, **kw: Any) -> Any:
            self.connects.append(url)
            return ws_connect(url, **kw)

        self.feeds = Feeds(self.config, self.clock, self.wakes, credentials=credentials, connect=connect,
                           rng=random.Random(1))
        self.feeds.start()


@pytest.fixture
def rigs() -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(server: Server, credentials: dict[str, str] | None = None, **cfg: Any) -> Rig:
        made.append(Rig(server, credentials, **cfg))
        return made[-1]

    yield make
    for r in made:
        r.feeds.stop()


def book_msg(token: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    return {"event_type": "book", "asset_id": token, "market": M1, "timestamp": "1",
            "bids": [{"price": p, "size": s} for p, s in bids],
            "asks": [{"price": p, "size": s} for p, s in asks], **extra}


def change(token: str, price: str, size: str, side: str, best_bid: str | None = None,
           best_ask: str | None = None) -> dict[str, Any]:
    entry = {"asset_id": token, "price": price, "size": size, "side": side, "hash": "0x"}
    if best_bid is not None:
        entry["best_bid"] = best_bid
    if best_ask is not None:
        entry["best_ask"] = best_ask
    return {"event_type": "price_change", "market": M1, "price_changes": [entry], "timestamp": "2"}


def rest(token: str, bid: str | None, ask: str | None) -> Book:
    return Book(token, bids=((D(bid), D(10)),) if bid else (), asks=((D(ask), D(10)),) if ask else ())


def settle(feeds: Feeds, before: int, n: int = 1) -> None:
    """Wait until ``n`` more market messages were processed."""
    wait_for(lambda: feeds.stats()["messages"] >= before + n)


def fresh_token(rig: Rig, server: Server, token: str = T1, bid: str = "0.50", ask: str = "0.52") -> Peer:
    rig.feeds.watch({token: M1}, {})
    peer = server.peer("/ws/market")
    wait_for(lambda: peer.received)
    n = rig.feeds.stats()["messages"]
    peer.send(book_msg(token, [("0.48", "100"), (bid, "50")], [(ask, "40"), ("0.60", "10")]))
    settle(rig.feeds, n)
    assert rig.feeds.verify(token, rest(token, bid, ask), rig.clock.time())
    return peer


# ------------------------------------------------------------------------------------------------ market


def test_nothing_connects_before_watch_and_subscribe_shape(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server)
    time.sleep(0.3)
    assert server.peers == [] and rig.connects == []
    rig.feeds.watch({T2: M1, T1: M1}, {})
    peer = server.peer("/ws/market")
    msgs = wait_for(peer.json)
    assert msgs[0] == {"type": "market", "assets_ids": [T1, T2], "initial_dump": True,
                       "custom_feature_enabled": True}
    assert rig.feeds.take_changes().market_reconnected
    assert not rig.feeds.fresh(T1) and rig.feeds.book(T1) is None


def test_initial_dump_as_array_and_as_single_objects(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server)
    rig.feeds.watch({T1: M1, T2: M1, T3: M2}, {})
    peer = server.peer("/ws/market")
    wait_for(lambda: peer.received)
    peer.send([book_msg(T1, [("0.4", "10")], [("0.6", "10")]), book_msg(T2, [("0.3", "5")], [("0.7", "5")])])
    peer.send(book_msg(T3, [("0.2", "5")], [("0.8", "5")], tick_size="0.01"))
    settle(rig.feeds, 0, 3)
    now = rig.clock.time()
    for tok, bid, ask in ((T1, "0.4", "0.6"), (T2, "0.3", "0.7"), (T3, "0.2", "0.8")):
        assert rig.feeds.seen_at(tok) == now
        assert rig.feeds.verify(tok, rest(tok, bid, ask), now)
    book = rig.feeds.book(T3)
    assert book is not None and book.tick_size == D("0.01") and book.best_bid == D("0.2")


def test_book_and_price_change_maintenance(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server)
    peer = fresh_token(rig, server)   # bids 0.50x50, 0.48x100; asks 0.52x40, 0.60x10
    n = rig.feeds.stats()["messages"]
    peer.send(change(T1, "0.51", "30", "BUY", "0.51", "0.52"))        # a better bid
    peer.send(change(T1, "0.52", "0", "SELL", "0.51", "0.60"))        # the best ask removed
    peer.send(change(T1, "0.48", "0", "BUY", "0.51", "0.60"))         # a deeper bid removed
    peer.send({"event_type": "tick_size_change", "asset_id": T1, "old_tick_size": "0.01", "new_tick_size": "0.001"})
    peer.send({"event_type": "last_trade_price", "asset_id": T1, "price": "0.51", "size": "5", "side": "BUY"})
    settle(rig.feeds, n, 5)
    book = rig.feeds.book(T1)
    assert book is not None
    assert book.bids == ((D("0.51"), D("30")), (D("0.50"), D("50")))
    assert book.asks == ((D("0.60"), D("10")),)
    assert book.tick_size == D("0.001")
    assert rig.feeds.fresh(T1)
    # the pushed best bid/ask contradicts the maintained book: not verified until the next verify()
    wakes = rig.wakes.count
    peer.send({"event_type": "best_bid_ask", "asset_id": T1, "best_bid": "0.55", "best_ask": "0.60", "spread": "0"})
    wait_for(lambda: not rig.feeds.fresh(T1))
    assert rig.wakes.count == wakes + 1 and rig.feeds.book(T1) is None
    assert rig.feeds.verify(T1, rest(T1, "0.51", "0.60"), rig.clock.time())
    n = rig.feeds.stats()["messages"]
    peer.send(change(T1, "0.40", "7", "BUY", "0.51", "0.50"))          # best_ask disagrees
    settle(rig.feeds, n)
    assert not rig.feeds.fresh(T1)


def test_triggers_wake_only_on_crossing_changes(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server)
    peer = fresh_token(rig, server)   # best bid 0.50
    rig.feeds.watch({T1: M1}, {T1: (D("0.45"), D("0.70"))})
    rig.feeds.take_changes()
    wakes = rig.wakes.count
    n = rig.feeds.stats()["messages"]
    peer.send(change(T1, "0.47", "10", "SELL"))                      # ask side: the best bid did not change
    peer.send(change(T1, "0.49", "10", "BUY"))                       # a deeper bid: no change of the best
    peer.send(change(T1, "0.50", "0", "BUY"))                        # best bid 0.49 > 0.45: no crossing
    settle(rig.feeds, n, 3)
    time.sleep(0.05)
    assert rig.wakes.count == wakes and rig.feeds.take_changes().tokens == set()
    n = rig.feeds.stats()["messages"]
    peer.send(change(T1, "0.49", "0", "BUY"))                        # best bid 0.48 ... still above
    peer.send(change(T1, "0.48", "0", "BUY"))                        # no bid left: as low as it gets
    settle(rig.feeds, n, 2)
    assert rig.wakes.count == wakes + 1
    assert rig.feeds.take_changes().tokens == {T1}
    n = rig.feeds.stats()["messages"]
    peer.send(change(T1, "0.72", "5", "BUY"))                        # >= high
    settle(rig.feeds, n)
    assert rig.feeds.take_changes().tokens == {T1}
    assert rig.wakes.count == wakes + 2


def test_fresh_only_after_snapshot_and_verify(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server, check_seconds=30)
    rig.feeds.watch({T1: M1}, {})
    peer = server.peer("/ws/market")
    wait_for(lambda: peer.received)
    assert not rig.feeds.verify(T1, rest(T1, "0.5", "0.52"), rig.clock.time())   # no snapshot yet
    peer.send(book_msg(T1, [("0.5", "10")], [("0.52", "10")]))
    settle(rig.feeds, 0)
    assert not rig.feeds.fresh(T1) and rig.feeds.fresh_since(T1) is None
    rig.clock.advance(1)
    assert rig.feeds.verify(T1, rest(T1, "0.5", "0.52"), rig.clock.time())
    assert rig.feeds.fresh(T1) and rig.feeds.fresh_since(T1) == rig.clock.time()
    assert rig.feeds.stats()["fresh_tokens"] == 1
    assert rig.feeds.due_for_check(rig.clock.time() + 29) == []
    assert rig.feeds.due_for_check(rig.clock.time() + 30) == [T1]
    rig.clock.advance(20)
    peer.send({"event_type": "last_trade_price", "asset_id": T1, "price": "0.5"})
    settle(rig.feeds, 1)
    assert rig.feeds.due_for_check(rig.clock.time() + 29) == []   # a feed message counts as a check
    for _ in range(6):   # a feed that keeps talking is still checked against REST every 4 x check_seconds
        rig.clock.advance(20)
        n = rig.feeds.stats()["messages"]
        peer.send({"event_type": "last_trade_price", "asset_id": T1, "price": "0.5"})
        settle(rig.feeds, n)
    assert rig.feeds.due_for_check(rig.clock.time()) == [T1]


def test_verify_disagreement_with_a_silent_feed_goes_stale_and_resubscribes(
        server: Server, rigs: Callable[..., Rig], records: list[logging.LogRecord]) -> None:
    rig = rigs(server)
    peer = fresh_token(rig, server)
    rig.clock.advance(5)
    started = rig.clock.time()
    assert not rig.feeds.verify(T1, rest(T1, "0.40", "0.52"), started)
    assert not rig.feeds.fresh(T1) and rig.feeds.stats()["stale_tokens"] == 1
    wait_for(lambda: {"operation": "subscribe", "assets_ids": [T1]} in peer.json())
    warnings = [r for r in records if r.levelno == logging.WARNING and "stale" in r.getMessage()]
    assert len(warnings) == 1 and T1 in warnings[0].getMessage() and "0.40" in warnings[0].getMessage()
    assert not rig.feeds.verify(T1, rest(T1, "0.40", "0.52"), started)        # waiting for the snapshot: quiet
    assert len([r for r in records if "stale" in r.getMessage()]) == 1
    n = rig.feeds.stats()["messages"]
    peer.send(book_msg(T1, [("0.40", "10")], [("0.52", "10")]))
    settle(rig.feeds, n)
    assert not rig.feeds.fresh(T1)                                             # a snapshot, not verified yet
    assert rig.feeds.verify(T1, rest(T1, "0.40", "0.52"), rig.clock.time())
    assert rig.feeds.stats()["stale_tokens"] == 0 and len(server.on("/ws/market")) == 1


def test_no_snapshot_after_resubscribe_replaces_the_connection(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server, resubscribe_timeout_seconds=0.3)
    rig.feeds.watch({T1: M1, T2: M1}, {})
    peer = server.peer("/ws/market")
    wait_for(lambda: peer.received)
    peer.send([book_msg(T1, [("0.5", "1")], [("0.6", "1")]), book_msg(T2, [("0.3", "1")], [("0.4", "1")])])
    settle(rig.feeds, 0, 2)
    assert rig.feeds.verify(T2, rest(T2, "0.3", "0.4"), rig.clock.time())
    rig.clock.advance(1)
    assert not rig.feeds.verify(T1, rest(T1, "0.45", "0.6"), rig.clock.time())
    second = server.peer("/ws/market", 1)
    assert peer.closed.wait(2)
    assert wait_for(second.json)[0]["assets_ids"] == [T1, T2]
    assert not rig.feeds.fresh(T2)      # the whole connection was replaced
    assert rig.feeds.stats()["reconnects"] >= 1


def test_disagreement_while_messages_flow_stays_fresh(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server)
    peer = fresh_token(rig, server)
    rig.clock.advance(2)
    started = rig.clock.time()             # the REST read starts; the market moves while it is under way
    n = rig.feeds.stats()["messages"]
    peer.send(change(T1, "0.51", "5", "BUY", "0.51", "0.52"))
    settle(rig.feeds, n)
    assert rig.feeds.verify(T1, rest(T1, "0.49", "0.52"), started)
    assert rig.feeds.fresh(T1) and rig.feeds.stats()["stale_tokens"] == 0
    time.sleep(0.2)
    assert peer.json() == [peer.json()[0]]    # no resubscribe


def test_dropped_connection_is_not_fresh_at_once_then_reconnects(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server)
    peer = fresh_token(rig, server)
    rig.feeds.take_changes()
    wakes = rig.wakes.count
    peer.close(1011, "boom")
    wait_for(lambda: not rig.feeds.fresh(T1))
    assert rig.wakes.count > wakes and rig.feeds.book(T1) is None
    rig.feeds.watch({T1: M1, T2: M1}, {})          # added around the reconnect: subscribed all the same
    second = server.peer("/ws/market", 1)
    assert T1 in wait_for(second.json)[0]["assets_ids"]
    wait_for(lambda: any(T2 in m["assets_ids"] for m in second.json()))
    wait_for(lambda: rig.feeds.take_changes().market_reconnected)
    assert not rig.feeds.verify(T1, rest(T1, "0.50", "0.52"), rig.clock.time())   # no snapshot yet
    n = rig.feeds.stats()["messages"]
    second.send(book_msg(T1, [("0.50", "1")], [("0.52", "1")]))
    settle(rig.feeds, n)
    assert not rig.feeds.fresh(T1)
    assert rig.feeds.verify(T1, rest(T1, "0.50", "0.52"), rig.clock.time())


def test_failed_connect_is_retried(server: Server) -> None:
    calls: list[str] = []

    def flaky(url: str, **kw: Any) -> Any:
        calls.append(url)
        if len(calls) == 1:
            raise OSError("connection refused")
        return ws_connect(url, **kw)

    cfg = FeedsSection(market_url=f"ws://127.0.0.1:{server.port}/ws/market", reconnect_min_seconds=0.05,
                       reconnect_max_seconds=0.1)
    feeds = Feeds(cfg, SimulatedClock(), lambda: None, connect=flaky)
    feeds.start()
    try:
        feeds.watch({T1: M1}, {})
        peer = server.peer("/ws/market")
        assert wait_for(peer.json)[0]["assets_ids"] == [T1]
        assert len(calls) == 2 and feeds.stats()["reconnects"] == 1
    finally:
        feeds.stop()


def test_ping_only_after_subscribe_and_pong_ignored(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server, ping_seconds=0.1)
    rig.feeds.watch({T1: M1}, {})
    peer = server.peer("/ws/market")
    wait_for(lambda: peer.received.count("PING") >= 3)
    assert peer.received[0].startswith("{") and json.loads(peer.received[0])["type"] == "market"
    assert rig.feeds.stats()["messages"] == 0 and rig.feeds.seen_at(T1) is None     # PONGs are not events
    assert len(server.peers) == 1


def test_watch_adds_and_removes_tokens_and_splits_connections(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server, max_assets_per_connection=2)
    rig.feeds.watch({T1: M1}, {})
    first = server.peer("/ws/market")
    wait_for(lambda: first.received)
    rig.feeds.watch({T1: M1, T2: M1}, {})
    wait_for(lambda: {"operation": "subscribe", "assets_ids": [T2]} in first.json())
    rig.feeds.watch({T1: M1, T2: M1, T3: M2}, {})
    second = server.peer("/ws/market", 1)
    assert wait_for(second.json)[0]["assets_ids"] == [T3]
    wait_for(lambda: rig.feeds.stats()["market_connections"] == 2)
    rig.feeds.watch({T1: M1, T3: M2}, {})
    wait_for(lambda: {"operation": "unsubscribe", "assets_ids": [T2]} in first.json())
    n = rig.feeds.stats()["messages"]
    first.send(book_msg(T2, [("0.5", "1")], [("0.6", "1")]))          # for a forgotten token: ignored
    settle(rig.feeds, n)
    assert rig.feeds.seen_at(T2) is None and not rig.feeds.verify(T2, rest(T2, "0.5", "0.6"), 0)
    rig.feeds.watch({T1: M1}, {})                                      # the second connection has nothing left
    assert second.closed.wait(2)
    assert len(server.peers) == 2


def test_malformed_market_messages_are_skipped(server: Server, rigs: Callable[..., Rig],
                                               records: list[logging.LogRecord]) -> None:
    rig = rigs(server)
    peer = fresh_token(rig, server)
    n = rig.feeds.stats()["messages"]
    for _ in range(2):
        peer.send("this is not json")
        peer.send("[1, 2]")
        peer.send(change(T1, "abc", "5", "BUY"))
        peer.send(change(T1, "0.3", "NaN", "BUY"))
        peer.send(change(T1, "0.3", "5", "HOLD"))
        peer.send({"event_type": "price_change", "price_changes": "nope"})
        peer.send({"event_type": "book", "asset_id": T1, "bids": None})
        peer.send({"event_type": "tick_size_change", "asset_id": T1, "new_tick_size": "-1"})
    peer.send(book_msg(T1, [("x", "1"), ("0.47", "3")], [("0.55", "2")]))
    peer.send({"event_type": "market_resolved", "assets_ids": [T1, "999"], "winning_asset_id": T1})
    wait_for(lambda: rig.feeds.take_changes().resolved == {T1})
    book = rig.feeds.verify(T1, rest(T1, "0.47", "0.55"), 0) and rig.feeds.book(T1)
    assert book and book.bids == ((D("0.47"), D("3")),)
    assert rig.feeds.stats()["messages"] > n
    texts = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(texts) == len(set(texts)) == 7    # once per kind (7 kinds here), not per message
    assert server.peers[0] is peer and not peer.closed.is_set()


# -------------------------------------------------------------------------------------------------- user


def order_ev(oid: str, typ: str, matched: str, original: str = "10") -> dict[str, Any]:
    return {"event_type": "order", "id": oid, "type": typ, "market": M1, "asset_id": T1, "side": "SELL",
            "price": "0.6", "original_size": original, "size_matched": matched, "status": "LIVE"}


def trade_ev(tid: str, status: str, taker: str, makers: list[tuple[str, str, str]], size: str = "5",
             price: str = "0.6") -> dict[str, Any]:
    return {"event_type": "trade", "type": "TRADE", "id": tid, "status": status, "taker_order_id": taker,
            "market": M1, "asset_id": T1, "side": "BUY", "size": size, "price": price,
            "maker_orders": [{"order_id": o, "matched_amount": a, "price": p, "asset_id": T1} for o, a, p in makers]}


def user_rig(server: Server, rigs: Callable[..., Rig], **cfg: Any) -> tuple[Rig, Peer]:
    rig = rigs(server, CREDS, **cfg)
    rig.feeds.watch({T1: M1}, {})
    peer = server.peer("/ws/user")
    wait_for(lambda: rig.feeds.stats()["user_connected"])
    return rig, peer


def test_no_user_channel_without_credentials(server: Server, rigs: Callable[..., Rig]) -> None:
    rig = rigs(server)
    rig.feeds.watch({T1: M1}, {})
    server.peer("/ws/market")
    time.sleep(0.3)
    assert server.on("/ws/user") == [] and not rig.feeds.user_fresh()


def test_user_channel_auth_shape_and_freshness(server: Server, rigs: Callable[..., Rig]) -> None:
    rig, peer = user_rig(server, rigs)
    msgs = wait_for(peer.json)
    assert msgs[0] == {"type": "user", "auth": CREDS, "markets": []}   # every market of the account
    assert not rig.feeds.user_fresh()
    rig.feeds.user_verified()                       # before the loop was told about the connection: not enough
    assert not rig.feeds.user_fresh()
    assert rig.feeds.take_changes().user_reconnected
    rig.feeds.user_verified()
    assert rig.feeds.user_fresh()
    rig.feeds.watch({T1: M1, T2: M2}, {})
    rig.feeds.watch({T2: M2}, {})
    time.sleep(0.3)
    assert peer.json() == msgs[:1], "no per-market operations: it follows every market already"
    rig.feeds.watch({}, {})
    wait_for(lambda: not rig.feeds.stats()["user_connected"])   # nothing held: the channel closes


def test_user_maker_fills_fold_into_order_feed(server: Server, rigs: Callable[..., Rig]) -> None:
    rig, peer = user_rig(server, rigs)
    rig.feeds.watch_orders({"0xA"})
    rig.feeds.take_changes()
    wakes = rig.wakes.count
    peer.send(order_ev("0xA", "PLACEMENT", "0"))
    peer.send(trade_ev("t1", "MATCHED", "0xT", [("0xOther", "3", "0.5"), ("0xA", "4", "0.61")]))
    peer.send(trade_ev("t1", "MINED", "0xT", [("0xA", "4", "0.61")]))          # the same trade: counted once
    peer.send(trade_ev("t2", "MATCHED", "0xT2", [("0xA", "6", "0.62")]))
    peer.send(order_ev("0xA", "UPDATE", "10"))
    wait_for(lambda: (o := rig.feeds.order("0xA")) is not None and o.size_matched == D(10) and o.final)
    feed = rig.feeds.order("0xA")
    assert feed is not None and not feed.canceled and not feed.failed
    assert feed.maker_fill is not None
    assert feed.maker_fill.filled_shares == D(10) and feed.maker_fill.usdc == D("6.16")
    assert feed.maker_fill.fee == 0 and feed.maker_fill.status == "matched"
    changes = rig.feeds.take_changes()
    assert set(changes.orders) == {"0xA"} and changes.orders["0xA"].size_matched == D(10)
    assert rig.wakes.count >= wakes + 1
    assert rig.feeds.order("0xOther") is None


def test_user_taker_trade_failed_and_unwatched(server: Server, rigs: Callable[..., Rig]) -> None:
    rig, peer = user_rig(server, rigs)
    rig.feeds.watch_orders({"0xB", "0xC"})
    rig.feeds.take_changes()
    wakes = rig.wakes.count
    peer.send(order_ev("0xZ", "PLACEMENT", "0"))                                 # not watched: ignored
    peer.send(trade_ev("t9", "MATCHED", "0xZ", [("0xY", "5", "0.5")]))
    time.sleep(0.3)
    assert rig.wakes.count == wakes and rig.feeds.take_changes().orders == {}
    peer.send(trade_ev("t3", "MATCHED", "0xB", [("0xM", "5", "0.55")], size="5", price="0.55"))
    wait_for(lambda: (o := rig.feeds.order("0xB")) is not None and o.size_matched == D(5))
    feed = rig.feeds.order("0xB")
    assert feed is not None and feed.maker_fill is None and not feed.final     # taker: read over REST
    # a maker fill that later FAILED
    peer.send(trade_ev("t4", "MATCHED", "0xT", [("0xC", "2", "0.4")]))
    peer.send(trade_ev("t5", "MATCHED", "0xT", [("0xC", "3", "0.4")]))
    wait_for(lambda: (o := rig.feeds.order("0xC")) is not None and o.size_matched == D(5))
    peer.send(trade_ev("t4", "FAILED", "0xT", [("0xC", "2", "0.4")]))
    peer.send(trade_ev("t4", "RETRYING", "0xT", [("0xC", "2", "0.4")]))        # after FAILED: not counted again
    peer.send(order_ev("0xC", "CANCELLATION", ""))
    wait_for(lambda: (o := rig.feeds.order("0xC")) is not None and o.canceled)
    feed = rig.feeds.order("0xC")
    assert feed is not None and feed.failed and feed.final and feed.size_matched == D(3)
    assert feed.maker_fill is not None and feed.maker_fill.usdc == D("1.2")
    # an unwatched order's events are kept a while, in case the loop names it just after (a placement race)
    rig.feeds.watch_orders({"0xB", "0xC", "0xZ"})
    z = rig.feeds.take_changes().orders["0xZ"]
    assert z.size_matched == D(5) and z.maker_fill is None


def test_expect_order_without_an_event_reconnects_the_user_channel(
        server: Server, rigs: Callable[..., Rig], records: list[logging.LogRecord]) -> None:
    rig, peer = user_rig(server, rigs, user_ack_seconds=0.3)
    rig.feeds.take_changes()
    rig.feeds.user_verified()
    rig.feeds.expect_order("0xQ")
    peer.send(order_ev("0xQ", "PLACEMENT", "0"))     # mentioned in time: fine
    time.sleep(0.5)
    assert rig.feeds.user_fresh() and len(server.on("/ws/user")) == 1
    rig.feeds.expect_order("0xR")
    assert rig.feeds.user_fresh()
    second = server.peer("/ws/user", 1)
    assert peer.closed.wait(2)
    assert wait_for(second.json)[0]["type"] == "user"
    assert rig.feeds.take_changes().user_reconnected
    assert not rig.feeds.user_fresh()
    rig.feeds.user_verified()
    assert rig.feeds.user_fresh()
    assert any("0xR" in r.getMessage() for r in records)


def test_refused_user_connection_is_logged_without_the_secret(
        server: Server, rigs: Callable[..., Rig], records: list[logging.LogRecord]) -> None:
    def refuse(peer: Peer, first: str) -> None:
        if peer.path == "/ws/user":
            peer.close(1008, "invalid auth")

    server.on_first = refuse
    rig = rigs(server, CREDS)
    rig.feeds.watch({T1: M1}, {})
    wait_for(lambda: len(server.on("/ws/user")) >= 2)                # refused, then retried
    assert not rig.feeds.user_fresh()
    errors = [r for r in records if r.levelno == logging.ERROR]
    assert errors and "1008" in errors[0].getMessage() and "abcdef12" in errors[0].getMessage()
    rig.feeds.stop()
    text = "\n".join(r.getMessage() for r in records)
    assert SECRET not in text and PASSPHRASE not in text and CREDS["apiKey"] not in text


def test_user_connection_refused_at_the_handshake(server: Server, rigs: Callable[..., Rig],
                                                  records: list[logging.LogRecord]) -> None:
    rejecting = serve(lambda ws: None, "127.0.0.1", 0,
                      process_request=lambda conn, req: conn.respond(401, f"bad key {SECRET}\n"))
    threading.Thread(target=rejecting.serve_forever, daemon=True).start()
    try:
        port = rejecting.socket.getsockname()[1]
        rig = rigs(server, CREDS, user_url=f"ws://127.0.0.1:{port}/ws/user")
        rig.feeds.watch({T1: M1}, {})
        wait_for(lambda: [r for r in records if r.levelno == logging.ERROR])
        assert not rig.feeds.user_fresh() and not rig.feeds.stats()["user_connected"]
        text = "\n".join(r.getMessage() for r in records)
        assert "401" in text and "abcdef12" in text and SECRET not in text
    finally:
        rejecting.shutdown()


def test_malformed_user_messages_are_skipped(server: Server, rigs: Callable[..., Rig]) -> None:
    rig, peer = user_rig(server, rigs)
    rig.feeds.watch_orders({"0xD"})
    peer.send("garbage")
    peer.send({"event_type": "trade", "status": "MATCHED", "taker_order_id": "0xD"})        # no id
    peer.send({"event_type": "order", "type": "UPDATE"})                                     # no id
    peer.send(trade_ev("t7", "MATCHED", "0xD", [], size="lots"))                             # bad numbers
    peer.send(order_ev("0xD", "UPDATE", "2"))
    wait_for(lambda: (o := rig.feeds.order("0xD")) is not None and o.size_matched == D(2))
    feed = rig.feeds.order("0xD")
    assert feed is not None and feed.failed and feed.maker_fill is None
    assert rig.feeds.stats()["user_connected"] and len(server.on("/ws/user")) == 1


def test_stop_joins_quickly(server: Server) -> None:
    cfg = FeedsSection(market_url=f"ws://127.0.0.1:{server.port}/ws/market",
                       user_url=f"ws://127.0.0.1:{server.port}/ws/user", max_assets_per_connection=1)
    feeds = Feeds(cfg, SimulatedClock(), lambda: None, credentials=CREDS)
    feeds.start()
    feeds.watch({T1: M1, T2: M1, T3: M2}, {})
    wait_for(lambda: feeds.stats()["market_connections"] == 3 and feeds.stats()["user_connected"])
    started = time.monotonic()
    feeds.stop()
    assert time.monotonic() - started < 2.0
    assert all(p.closed.wait(2) for p in server.peers)
    assert not [t for t in threading.enumerate() if t.name.startswith("feeds-")]
