"""The simulator's WebSocket channels (/ws/market, /ws/user) through a plain websockets client: message
shapes, books that rebuild the REST book, the user's order and trade events, and the fault controls.

Time: the sims here run on a SimulatedClock (no ticker, nothing moves unless the test says so); what must
come is awaited with a generous timeout, what must not is shown by a short quiet wait."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal as D

import pytest
import requests
from py_clob_client_v2 import MarketOrderArgs, OrderArgs, OrderPayload, OrderType, PartialCreateOrderOptions
from py_clob_client_v2.exceptions import PolyApiException
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from bot.clock import SimulatedClock
from bot.sim import SimExchange
from tests.sim.conftest import sdk_client

OPTS = PartialCreateOrderOptions(tick_size="0.01", neg_risk=False)
WAIT = 5      # seconds for what must arrive
QUIET = 0.3   # seconds of silence that show nothing comes
BOOK_KEYS = {"event_type", "market", "asset_id", "timestamp", "hash", "bids", "asks", "tick_size", "last_trade_price"}
ORDER_KEYS = {"event_type", "type", "id", "owner", "order_owner", "market", "asset_id", "side", "original_size",
              "size_matched", "price", "associate_trades", "outcome", "created_at", "expiration", "order_type",
              "status", "maker_address", "timestamp"}


@pytest.fixture
def fsim():
    with SimExchange(seed=7, clock=SimulatedClock()) as exchange:
        yield exchange


@pytest.fixture
def mkt(fsim):
    return fsim.create_market("Will the feeds behave?", yes_price=0.5, volatility=0)


# -- helpers -----------------------------------------------------------------------------------------


def recv(ws: ClientConnection, timeout: float = WAIT):
    return json.loads(ws.recv(timeout=timeout))


def recv_until(ws: ClientConnection, done: Callable[[dict], bool], timeout: float = WAIT) -> list[dict]:
    """Messages up to and including the first for which ``done`` is true."""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while not out or not done(out[-1]):
        out.append(recv(ws, max(0.01, deadline - time.monotonic())))
    return out


def assert_quiet(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        ws.recv(timeout=QUIET)


@contextmanager
def market_ws(sim: SimExchange, assets: list[str], custom: bool = False
              ) -> Iterator[tuple[ClientConnection, list[dict]]]:
    """A subscribed market connection and its initial dump."""
    with connect(sim.ws_url + "/ws/market") as ws:
        ws.send(json.dumps({"type": "market", "assets_ids": assets, "initial_dump": True,
                            "custom_feature_enabled": custom}))
        yield ws, recv(ws)


@contextmanager
def user_ws(sim: SimExchange, client, markets: list[str] | None = None) -> Iterator[ClientConnection]:
    """A user connection authenticated with ``client``'s API credentials (PING/PONG proves it subscribed)."""
    creds = client.creds
    with connect(sim.ws_url + "/ws/user") as ws:
        ws.send(json.dumps({"type": "user", "markets": markets or [],
                            "auth": {"apiKey": creds.api_key, "secret": creds.api_secret,
                                     "passphrase": creds.api_passphrase}}))
        ws.send("PING")
        assert ws.recv(timeout=WAIT) == "PONG"
        yield ws


def rest_book(sim: SimExchange, token: str) -> dict:
    return requests.get(f"{sim.clob_url}/book", params={"token_id": token}, timeout=5).json()


def levels(book: dict) -> dict[str, dict[D, D]]:
    return {"BUY": {D(lv["price"]): D(lv["size"]) for lv in book["bids"]},
            "SELL": {D(lv["price"]): D(lv["size"]) for lv in book["asks"]}}


def apply(book: dict[str, dict[D, D]], msg: dict) -> None:
    """Apply a price_change to levels (size 0 removes the level)."""
    for ch in msg["price_changes"]:
        side = book[ch["side"]]
        if D(ch["size"]) == 0:
            side.pop(D(ch["price"]), None)
        else:
            side[D(ch["price"])] = D(ch["size"])


def fill_of(msgs: list[dict], kind: str) -> list[dict]:
    return [m for m in msgs if m["event_type"] == "order" and m["type"] == kind]


def closed_code(ws: ClientConnection) -> int | None:
    """The close code the server sent (None: the connection just ended, no close frame)."""
    with pytest.raises(ConnectionClosed) as err:
        for _ in range(100):
            ws.recv(timeout=WAIT)
    return err.value.rcvd.code if err.value.rcvd else None


# -- market channel ----------------------------------------------------------------------------------


def test_initial_dump_is_one_book_per_known_asset_as_the_rest_book(fsim, mkt):
    yes, no = mkt["token_ids"]
    with market_ws(fsim, [yes, "12345", no]) as (ws, dump):
        assert isinstance(dump, list) and [b["asset_id"] for b in dump] == [yes, no]   # unknown id ignored
        for book in dump:
            rest = rest_book(fsim, book["asset_id"])
            assert set(book) == BOOK_KEYS and book["event_type"] == "book"
            assert book["market"] == mkt["condition_id"] and book["tick_size"] == "0.01"
            assert book["bids"] == rest["bids"] and book["asks"] == rest["asks"]   # best LAST, as REST
            assert D(book["bids"][-1]["price"]) < D(book["asks"][-1]["price"])
            assert book["last_trade_price"] == rest["last_trade_price"] and book["timestamp"].isdigit()
        assert_quiet(ws)


def test_without_initial_dump_only_changes_come(fsim, mkt):
    yes = mkt["token_ids"][0]
    with connect(fsim.ws_url + "/ws/market") as ws:
        ws.send(json.dumps({"type": "market", "assets_ids": [yes], "initial_dump": False}))
        ws.send("PING")
        assert ws.recv(timeout=WAIT) == "PONG"
        fsim.set_price(yes, 0.6)
        assert recv(ws)["event_type"] == "price_change"


def test_a_price_move_is_one_price_change_per_token_that_rebuilds_the_rest_book(fsim, mkt):
    yes, no = mkt["token_ids"]
    with market_ws(fsim, [yes, no]) as (ws, dump):
        books = {b["asset_id"]: levels(b) for b in dump}
        fsim.set_price(yes, 0.6)
        msgs = [recv(ws), recv(ws)]
        assert_quiet(ws)
        assert sorted(m["price_changes"][0]["asset_id"] for m in msgs) == sorted([yes, no])
        for msg in msgs:
            token = msg["price_changes"][0]["asset_id"]
            assert msg["event_type"] == "price_change" and msg["market"] == mkt["condition_id"]
            assert all(ch["asset_id"] == token and ch["side"] in ("BUY", "SELL") for ch in msg["price_changes"])
            apply(books[token], msg)
            rest = rest_book(fsim, token)
            assert books[token] == levels(rest)
            assert {(ch["best_bid"], ch["best_ask"]) for ch in msg["price_changes"]} == \
                {(rest["bids"][-1]["price"], rest["asks"][-1]["price"])}
        assert rest_book(fsim, yes)["bids"][-1]["price"] == "0.59"


def test_another_accounts_resting_order_and_its_cancel_are_pushed(fsim, mkt):
    yes = mkt["token_ids"][0]
    client, _ = sdk_client(fsim)
    with market_ws(fsim, [yes]) as (ws, _dump):
        resp = client.create_and_post_order(OrderArgs(token_id=yes, price=0.40, size=10, side="BUY"), options=OPTS)
        msg = recv(ws)
        assert [(c["price"], c["size"], c["side"]) for c in msg["price_changes"]] == [("0.4", "10", "BUY")]
        assert msg["price_changes"][0]["best_bid"] == "0.49" and msg["price_changes"][0]["best_ask"] == "0.51"
        client.cancel_order(OrderPayload(orderID=resp["orderID"]))
        assert [(c["price"], c["size"]) for c in recv(ws)["price_changes"]] == [("0.4", "0")]
        assert_quiet(ws)


def test_a_trade_sends_the_level_change_then_last_trade_price(fsim, mkt):
    yes = mkt["token_ids"][0]
    client, _ = sdk_client(fsim)
    with market_ws(fsim, [yes]) as (ws, _dump):
        client.create_and_post_market_order(MarketOrderArgs(token_id=yes, amount=5, side="BUY", price=0.6),
                                            options=OPTS, order_type=OrderType.FAK)
        change, trade = recv(ws), recv(ws)
        assert change["event_type"] == "price_change" and change["price_changes"][0]["price"] == "0.51"
        assert trade["event_type"] == "last_trade_price" and trade["asset_id"] == yes
        assert (trade["price"], trade["side"], trade["market"]) == ("0.51", "BUY", mkt["condition_id"])
        assert D("9.8") < D(trade["size"]) <= D(5) / D("0.51")   # $5 at 0.51
        assert set(trade) == {"event_type", "asset_id", "market", "price", "side", "size", "fee_rate_bps",
                              "timestamp"}


def test_unsubscribe_stops_pushes_and_subscribe_sends_a_fresh_snapshot(fsim, mkt):
    yes, no = mkt["token_ids"]
    with market_ws(fsim, [yes]) as (ws, _dump):
        ws.send(json.dumps({"operation": "unsubscribe", "assets_ids": [yes]}))
        ws.send("PING")
        assert ws.recv(timeout=WAIT) == "PONG"   # the unsubscribe has been handled
        fsim.set_price(yes, 0.6)
        assert_quiet(ws)
        ws.send(json.dumps({"operation": "subscribe", "assets_ids": [yes, no]}))
        snapshot = recv(ws)
        assert [b["asset_id"] for b in snapshot] == [yes, no] and snapshot[0]["bids"] == rest_book(fsim, yes)["bids"]
        fsim.set_price(yes, 0.5)
        assert {recv(ws)["price_changes"][0]["asset_id"] for _ in range(2)} == {yes, no}


def test_ping_pong_and_malformed_messages_after_subscribe_are_ignored(fsim, mkt):
    with market_ws(fsim, [mkt["token_ids"][0]]) as (ws, _dump):
        for junk in ("{not json", "[1, 2]", '{"operation": "subscribe", "assets_ids": 5}', '{"operation": 7}'):
            ws.send(junk)
        ws.send("PING")
        assert ws.recv(timeout=WAIT) == "PONG"
    assert fsim.feed_stats()["pings"] == 1


@pytest.mark.parametrize("path", ["/ws/market", "/ws/user"])
def test_ping_or_anything_else_before_the_subscribe_closes_with_1008(fsim, path):
    for first in ("PING", '{"assets_ids": []}', "hello"):
        with connect(fsim.ws_url + path) as ws:
            ws.send(first)
            assert closed_code(ws) == 1008


def test_other_paths_are_refused(fsim):
    with pytest.raises(InvalidStatus) as err:
        connect(fsim.ws_url + "/ws/sports")
    assert err.value.response.status_code == 404


def test_dynamic_tick_change_is_pushed(fsim):
    m = fsim.create_market("Near the edge?", yes_price=0.95, volatility=0, dynamic_tick=True)
    yes = m["token_ids"][0]
    with market_ws(fsim, [yes]) as (ws, dump):
        assert dump[0]["tick_size"] == "0.01"
        fsim.set_price(yes, 0.97)
        tick = recv(ws)
        assert tick == {"event_type": "tick_size_change", "market": m["condition_id"], "asset_id": yes,
                        "old_tick_size": "0.01", "new_tick_size": "0.001", "timestamp": tick["timestamp"]}
        assert recv(ws)["event_type"] == "price_change"


def test_custom_feature_adds_best_bid_ask_and_market_resolved(fsim, mkt):
    yes, no = mkt["token_ids"]
    with market_ws(fsim, [yes], custom=True) as (custom, _), market_ws(fsim, [yes]) as (plain, _):
        fsim.set_price(yes, 0.6)
        assert recv(custom)["event_type"] == "price_change"
        best = recv(custom)
        assert (best["event_type"], best["best_bid"], best["best_ask"], best["spread"]) == \
            ("best_bid_ask", "0.59", "0.61", "0.02")
        assert recv(plain)["event_type"] == "price_change"
        assert_quiet(plain)
        fsim.resolve(mkt["condition_id"], "Yes")
        cleared = recv(custom)
        assert {c["size"] for c in cleared["price_changes"]} == {"0"}
        assert (cleared["price_changes"][0]["best_bid"], cleared["price_changes"][0]["best_ask"]) == ("", "")
        assert recv(custom)["event_type"] == "best_bid_ask"
        resolved = recv(custom)
        assert resolved == {"event_type": "market_resolved", "id": mkt["id"], "market": mkt["condition_id"],
                            "assets_ids": [yes, no], "winning_asset_id": yes, "winning_outcome": "Yes",
                            "timestamp": resolved["timestamp"], "tags": []}
        assert recv(plain)["event_type"] == "price_change"
        assert_quiet(plain)


# -- user channel ------------------------------------------------------------------------------------


def test_user_channel_refuses_wrong_or_missing_auth(fsim, mkt):
    client, _ = sdk_client(fsim)
    creds = client.creds
    for auth in ({"apiKey": creds.api_key, "secret": creds.api_secret, "passphrase": "wrong"},
                 {"apiKey": "00000000-0000-4000-8000-000000000000", "secret": "x", "passphrase": "y"}, None):
        with connect(fsim.ws_url + "/ws/user") as ws:
            ws.send(json.dumps({"type": "user", "markets": [], **({"auth": auth} if auth else {})}))
            assert closed_code(ws) == 1008
            assert "auth" in (ws.close_reason or "")


def test_a_resting_sell_is_placed_updated_by_fills_and_its_trades_matched_then_confirmed(fsim, mkt):
    yes = mkt["token_ids"][0]
    client, wallet = sdk_client(fsim)
    fsim.fund(wallet["address"], token_id=yes, shares=20)
    with user_ws(fsim, client) as ws:
        resp = client.create_and_post_order(OrderArgs(token_id=yes, price=0.57, size=10, side="SELL"), options=OPTS)
        oid = resp["orderID"]
        placed = recv(ws)
        assert set(placed) == ORDER_KEYS and placed["associate_trades"] is None
        assert (placed["type"], placed["status"], placed["id"], placed["size_matched"], placed["original_size"],
                placed["price"], placed["side"], placed["order_type"], placed["owner"], placed["market"],
                placed["outcome"]) == ("PLACEMENT", "LIVE", oid, "0", "10", "0.57", "SELL", "GTC",
                                       client.creds.api_key, mkt["condition_id"], "Yes")
        # Other traders take 4 of it, then the price runs through the rest.
        fsim.set_book(yes, bids=[[0.58, 4]], asks=[[0.62, 100]])
        first = recv_until(ws, lambda m: m.get("status") == "CONFIRMED")
        assert [(m["event_type"], m["status"]) for m in first] == \
            [("trade", "MATCHED"), ("order", "LIVE"), ("trade", "CONFIRMED")]
        trade, update = first[0], first[1]
        assert (trade["type"], trade["trader_side"], trade["price"], trade["size"]) == ("TRADE", "MAKER", "0.57", "4")
        assert trade["maker_orders"][0]["order_id"] == oid
        assert trade["owner"] == trade["trade_owner"] == client.creds.api_key
        assert (update["type"], update["size_matched"], update["associate_trades"]) == ("UPDATE", "4", [trade["id"]])
        assert first[2]["id"] == trade["id"]
        fsim.set_price(yes, 0.65)
        second = recv_until(ws, lambda m: m.get("status") == "CONFIRMED")
        assert [(m["event_type"], m["status"]) for m in second] == \
            [("trade", "MATCHED"), ("order", "MATCHED"), ("trade", "CONFIRMED")]
        assert (second[1]["type"], second[1]["size_matched"]) == ("UPDATE", "10")
        assert second[0]["size"] == "6"
        assert_quiet(ws)


def test_a_marketable_order_gets_its_trades_only_and_a_cancel_a_cancellation(fsim, mkt):
    yes = mkt["token_ids"][0]
    client, _ = sdk_client(fsim)
    with user_ws(fsim, client) as ws:
        resp = client.create_and_post_market_order(MarketOrderArgs(token_id=yes, amount=5, side="BUY", price=0.6),
                                                   options=OPTS, order_type=OrderType.FAK)
        msgs = recv_until(ws, lambda m: m.get("status") == "CONFIRMED")
        assert [(m["event_type"], m["status"]) for m in msgs] == [("trade", "MATCHED"), ("trade", "CONFIRMED")]
        assert msgs[0]["taker_order_id"] == resp["orderID"] and msgs[0]["trader_side"] == "TAKER"
        rest = client.create_and_post_order(OrderArgs(token_id=yes, price=0.40, size=5, side="BUY"), options=OPTS)
        assert fill_of([recv(ws)], "PLACEMENT")
        client.cancel_order(OrderPayload(orderID=rest["orderID"]))
        cancel = recv(ws)
        assert (cancel["type"], cancel["status"], cancel["id"]) == ("CANCELLATION", "CANCELED", rest["orderID"])
        assert_quiet(ws)


def test_a_killed_fok_gets_a_cancellation(fsim, mkt):
    yes = mkt["token_ids"][0]
    client, _ = sdk_client(fsim, usdc=10_000)
    with user_ws(fsim, client) as ws:
        with pytest.raises(PolyApiException):
            client.create_and_post_market_order(MarketOrderArgs(token_id=yes, amount=5000, side="BUY", price=0.52),
                                                options=OPTS, order_type=OrderType.FOK)
        killed = recv(ws)
        assert (killed["type"], killed["order_type"], killed["associate_trades"], killed["size_matched"]) == \
            ("CANCELLATION", "FOK", [], "")
        assert killed["status"].startswith("CANCELED_") and "FOK" in killed["status"]


def test_another_accounts_orders_are_never_sent_and_markets_filter(fsim, mkt):
    other = fsim.create_market("Another market?", yes_price=0.5, volatility=0)
    client, _ = sdk_client(fsim)
    stranger, _ = sdk_client(fsim)
    with user_ws(fsim, client, markets=[mkt["condition_id"]]) as ws:
        resp = stranger.create_and_post_order(OrderArgs(token_id=mkt["token_ids"][0], price=0.40, size=5, side="BUY"),
                                              options=OPTS)
        stranger.cancel_order(OrderPayload(orderID=resp["orderID"]))
        client.create_and_post_order(OrderArgs(token_id=other["token_ids"][0], price=0.40, size=5, side="BUY"),
                                     options=OPTS)   # its own order, but not in the markets it asked for
        assert_quiet(ws)
        ws.send(json.dumps({"operation": "subscribe", "markets": [other["condition_id"]]}))
        ws.send("PING")
        assert ws.recv(timeout=WAIT) == "PONG"
        client.create_and_post_order(OrderArgs(token_id=other["token_ids"][0], price=0.41, size=5, side="BUY"),
                                     options=OPTS)
        assert recv(ws)["market"] == other["condition_id"]


def test_a_deposit_wallets_orders_reach_its_owners_key(fsim, mkt):
    from tests.sim.test_deposit_wallet import deposit_client

    wallet = fsim.new_wallet(usdc=100, signature_type=3)
    client = deposit_client(fsim, wallet)
    with user_ws(fsim, client) as ws:
        client.create_and_post_order(OrderArgs(token_id=mkt["token_ids"][0], price=0.40, size=5, side="BUY"),
                                     options=OPTS)
        placed = recv(ws)
        assert placed["type"] == "PLACEMENT" and placed["maker_address"] == wallet["address"].lower()


def test_a_delayed_order_is_placed_then_updated_when_it_matches():
    clock = SimulatedClock()
    with SimExchange(seed=7, clock=clock) as sim:
        m = sim.create_market("Sports?", yes_price=0.5, volatility=0, seconds_delay=3)
        client, _ = sdk_client(sim)
        with user_ws(sim, client) as ws:
            resp = client.create_and_post_market_order(
                MarketOrderArgs(token_id=m["token_ids"][0], amount=5, side="BUY", price=0.6),
                options=OPTS, order_type=OrderType.FAK)
            assert resp["status"] == "delayed"
            placed = recv(ws)
            assert (placed["type"], placed["status"], placed["id"]) == ("PLACEMENT", "LIVE", resp["orderID"])
            assert_quiet(ws)
            clock.advance(3)
            sim.advance()
            msgs = recv_until(ws, lambda msg: msg.get("status") == "CONFIRMED")
            assert [(x["event_type"], x["type"], x["status"]) for x in msgs] == \
                [("trade", "TRADE", "MATCHED"), ("order", "UPDATE", "MATCHED"), ("trade", "TRADE", "CONFIRMED")]


def test_with_a_settlement_delay_trades_confirm_after_it():
    clock = SimulatedClock()
    with SimExchange(seed=7, clock=clock, settlement_delay_s=5) as sim:
        m = sim.create_market("Slow chain?", yes_price=0.5, volatility=0)
        client, _ = sdk_client(sim)
        with user_ws(sim, client) as ws:
            client.create_and_post_market_order(MarketOrderArgs(token_id=m["token_ids"][0], amount=5, side="BUY",
                                                                price=0.6), options=OPTS, order_type=OrderType.FAK)
            matched = recv(ws)
            assert matched["status"] == "MATCHED"
            assert_quiet(ws)
            clock.advance(5)
            sim.advance()
            confirmed = recv(ws)
            assert (confirmed["status"], confirmed["id"]) == ("CONFIRMED", matched["id"])


# -- fault controls, stats, arrivals ---------------------------------------------------------------


def test_drop_feeds_ends_the_connections_abruptly_and_new_ones_work(fsim, mkt):
    yes = mkt["token_ids"][0]
    client, _ = sdk_client(fsim)
    with market_ws(fsim, [yes]) as (ws, _), user_ws(fsim, client) as uws:
        assert fsim.feed_stats()["connections"] == {"market": 1, "user": 1}
        fsim.drop_feeds("market")
        assert closed_code(ws) is None   # no close frame: the connection just died
        uws.send("PING")
        assert uws.recv(timeout=WAIT) == "PONG"   # the user channel was not dropped
        with market_ws(fsim, [yes]) as (again, dump):
            assert dump[0]["asset_id"] == yes
            fsim.set_price(yes, 0.6)
            assert recv(again)["event_type"] == "price_change"
        requests.post(f"{fsim.clob_url}/_sim/feeds/drop", json={}, timeout=5).raise_for_status()
        assert closed_code(uws) is None
    stats = fsim.feed_stats()
    assert stats["opened"] == {"market": 2, "user": 1}


def test_silenced_connections_answer_ping_but_send_nothing_until_a_reconnect(fsim, mkt):
    yes = mkt["token_ids"][0]
    with market_ws(fsim, [yes]) as (ws, _):
        fsim.silence_feeds()
        fsim.set_price(yes, 0.6)
        assert_quiet(ws)
        ws.send("PING")
        assert ws.recv(timeout=WAIT) == "PONG"
        with market_ws(fsim, [yes]) as (fresh, dump):
            assert dump[0]["bids"] == rest_book(fsim, yes)["bids"]
            fsim.set_price(yes, 0.5)
            assert recv(fresh)["event_type"] == "price_change"
        assert_quiet(ws)


def test_stop_subscription_stops_one_token_until_it_is_subscribed_again(fsim, mkt):
    yes, no = mkt["token_ids"]
    with market_ws(fsim, [yes, no]) as (ws, _):
        fsim.stop_subscription(yes)
        fsim.set_price(yes, 0.6)   # moves both books
        assert recv(ws)["price_changes"][0]["asset_id"] == no
        assert_quiet(ws)
        ws.send(json.dumps({"operation": "subscribe", "assets_ids": [yes]}))
        snapshot = recv(ws)
        assert [b["asset_id"] for b in snapshot] == [yes] and snapshot[0]["bids"] == rest_book(fsim, yes)["bids"]
        fsim.set_price(yes, 0.5)
        assert {recv(ws)["price_changes"][0]["asset_id"] for _ in range(2)} == {yes, no}


def test_feed_traffic_is_counted_apart_from_rest_requests(fsim, mkt):
    yes = mkt["token_ids"][0]
    fsim.reset_request_counts()
    with market_ws(fsim, [yes]) as (ws, _):
        ws.send("PING")
        ws.recv(timeout=WAIT)
        fsim.set_price(yes, 0.6)
        recv(ws)
        stats = requests.get(f"{fsim.clob_url}/_sim/feeds", timeout=5).json()
    assert stats["messages"] == {"book": 1, "price_change": 1} and stats["pings"] == 1
    assert stats["opened"] == {"market": 1, "user": 0}
    assert fsim.request_counts()["total"] == 0   # the /_sim routes are not counted either


def test_control_routes_validate_their_arguments(fsim):
    post = lambda route, body: requests.post(f"{fsim.clob_url}/_sim/feeds/{route}", json=body, timeout=5)  # noqa: E731
    assert post("silence", {"channel": "sports"}).status_code == 400
    assert post("stop-subscription", {}).status_code == 400
    assert post("stop-subscription", {"token_id": "1"}).json() == {"ok": True}
    with pytest.raises(ValueError):
        fsim.drop_feeds("sports")


def test_order_arrivals_record_when_each_order_post_was_read(fsim, mkt):
    client, _ = sdk_client(fsim)
    before = time.time()
    resp = client.create_and_post_order(OrderArgs(token_id=mkt["token_ids"][0], price=0.40, size=5, side="BUY"),
                                        options=OPTS)
    after = time.time()
    arrivals = fsim.order_arrivals()
    assert list(arrivals) == [resp["orderID"]] and before <= arrivals[resp["orderID"]] <= after
    assert requests.get(f"{fsim.clob_url}/_sim/order-arrivals", timeout=5).json() == arrivals
    requests.delete(f"{fsim.clob_url}/_sim/order-arrivals", timeout=5).raise_for_status()
    assert fsim.order_arrivals() == {}


def test_with_a_real_clock_the_living_market_is_pushed_without_requests():
    with SimExchange(seed=3, step_seconds=0.05) as sim:
        m = sim.create_market("Moving?", yes_price=0.5, volatility=0.05)
        with market_ws(sim, [m["token_ids"][0]]) as (ws, _):
            sim.reset_request_counts()
            assert recv(ws)["event_type"] == "price_change"
            assert sim.request_counts()["total"] == 0
