"""Today's CLOB V2 as the simulator answers it, through the REAL py-clob-client-v2 (and a plain WebSocket client
for the feeds), each rule from /work/shared/polymarket/FACTS.md Part 0: taker fees in USDC (0.1), trade
statuses and ghost fills (0.2), orders the venue forgets (0.3), balance locks (0.4), resolution, feeds and
uncancellable delayed orders (0.5). Everything runs on a SimulatedClock: time passes only when a test says."""
from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
import requests
from py_clob_client_v2 import (
    AssetType,
    BalanceAllowanceParams,
    MarketOrderArgs,
    OrderArgs,
    OrderPayload,
    OrderType,
    PartialCreateOrderOptions,
    TradeParams,
)
from py_clob_client_v2.exceptions import PolyApiException
from websockets.sync.client import connect

from bot.clock import SimulatedClock
from bot.sim import SimExchange
from tests.sim.conftest import sdk_client
from tests.sim.test_feeds import WAIT, assert_quiet, market_ws, recv, recv_until, rest_book, user_ws

OPTS = PartialCreateOrderOptions(tick_size="0.01", neg_risk=False)
LOCK_MESSAGE = "not enough balance / allowance: the sum of matched orders exceeds the balance"


@pytest.fixture
def csim():
    clock = SimulatedClock()
    with SimExchange(seed=11, clock=clock, page_size=50) as exchange:
        yield exchange, clock


def usdc(sim: SimExchange, wallet: dict) -> D:
    return D(sim.balances(wallet["address"])["usdc"])


def held(sim: SimExchange, wallet: dict, token: str) -> D:
    return D(sim.balances(wallet["address"])["tokens"].get(token, "0"))


def fee_market(sim: SimExchange, price=0.13) -> tuple[dict, str]:
    """A market with the observed fee schedule (``fd`` r 0.05, e 1) whose YES book is empty."""
    m = sim.create_market("Fees on V2?", yes_price=price, volatility=0, fee_rate=0.05, fee_exponent=1)
    yes = m["token_ids"][0]
    sim.set_book(yes, bids=[], asks=[])
    return m, yes


def market_buy(client, token, usd, cap, order_type=OrderType.FAK):
    return client.create_and_post_market_order(MarketOrderArgs(token_id=token, amount=usd, side="BUY", price=cap),
                                               options=OPTS, order_type=order_type)


def limit(client, token, side, price, size, order_type=OrderType.GTC):
    return client.create_and_post_order(OrderArgs(token_id=token, price=price, size=size, side=side), options=OPTS,
                                        order_type=order_type)


# -- 0.1 taker fees in USDC, on both sides --------------------------------------------------------------


def test_a_taker_buy_receives_every_share_and_pays_notional_plus_fee_in_usdc(csim):
    """py-clob-client-v2 issue 107: taker BUY 25 @ 0.13, r 0.05, e 1 -> 25.000000 shares, 3.25 + 0.14 USDC."""
    sim, _ = csim
    _, yes = fee_market(sim)
    maker, mw = sdk_client(sim, usdc=0)
    sim.fund(mw["address"], token_id=yes, shares=25)
    tp = limit(maker, yes, "SELL", 0.13, 25)
    taker, tw = sdk_client(sim, usdc=388.39)

    resp = market_buy(taker, yes, 3.25, 0.13)
    assert resp["status"] == "matched" and resp["takingAmount"] == "25" and resp["makingAmount"] == "3.25"
    fee = D("0.14137")   # 25 x 0.05 x (0.13 x 0.87) = 0.141375, floored to 5 decimals
    assert held(sim, tw, yes) == D("25.000000")   # nothing deducted in shares
    assert usdc(sim, tw) == D("388.39") - D("3.25") - fee
    [t] = taker.get_trades(TradeParams(asset_id=yes))
    assert t["fee_rate_bps"] == "" and t["status"] == "CONFIRMED" and t["size"] == "25"
    assert sim.engine._trades[-1].fee == fee   # the trade's fee: USDC paid by the taker
    # The maker (a resting SELL) gets the whole notional: makers pay nothing.
    assert usdc(sim, mw) == D("3.25") and held(sim, mw, yes) == 0
    assert maker.get_trades(TradeParams(asset_id=yes))[0]["maker_orders"][0]["order_id"] == tp["orderID"]


def test_a_taker_sell_receives_notional_less_fee_and_a_maker_buy_pays_only_the_notional(csim):
    sim, _ = csim
    _, yes = fee_market(sim, price=0.4)
    maker, mw = sdk_client(sim, usdc=100)
    bid = limit(maker, yes, "BUY", 0.40, 20)
    assert bid["status"] == "live"
    seller, sw = sdk_client(sim, usdc=0)
    sim.fund(sw["address"], token_id=yes, shares=20)

    resp = limit(seller, yes, "SELL", 0.40, 20, OrderType.FAK)
    assert resp["status"] == "matched" and resp["makingAmount"] == "20" and resp["takingAmount"] == "8"
    fee = D("0.24")   # 20 x 0.05 x (0.4 x 0.6)
    assert usdc(sim, sw) == D(8) - fee and held(sim, sw, yes) == 0
    assert usdc(sim, mw) == 100 - D(8) and held(sim, mw, yes) == 20   # the maker BUY pays no fee, gets all 20


def test_a_buy_that_can_take_needs_its_usdc_plus_the_largest_fee(csim):
    sim, _ = csim
    _, yes = fee_market(sim)
    maker, mw = sdk_client(sim, usdc=0)
    sim.fund(mw["address"], token_id=yes, shares=100)
    limit(maker, yes, "SELL", 0.13, 100)

    short, sw = sdk_client(sim, usdc=3.39136)   # 3.25 + 0.14137 would be needed
    with pytest.raises(PolyApiException) as err:
        market_buy(short, yes, 3.25, 0.13)
    assert err.value.status_code == 400
    assert err.value.error_msg["error"] == ("not enough balance / allowance: the balance is not enough -> "
                                            "balance: 3391360, order amount: 3391370")
    assert usdc(sim, sw) == D("3.39136") and held(sim, sw, yes) == 0
    with pytest.raises(PolyApiException, match="not enough balance"):   # a crossing GTC BUY as well
        limit(short, yes, "BUY", 0.13, 25)

    enough, ew = sdk_client(sim, usdc=3.39137)
    assert market_buy(enough, yes, 3.25, 0.13)["status"] == "matched"
    assert usdc(sim, ew) == 0 and held(sim, ew, yes) == 25

    # A BUY that only rests needs no more than its USDC.
    rester, rw = sdk_client(sim, usdc=1.2)
    assert limit(rester, yes, "BUY", 0.12, 10)["status"] == "live"


def test_the_fee_reserve_uses_the_limit_price_up_to_one_half(csim):
    """p(1-p) peaks at 0.5: a BUY limited above 0.5 needs the fee at 0.5 on top (r 0.05, e 1: 0.0125/share)."""
    sim, _ = csim
    _, yes = fee_market(sim, price=0.6)
    maker, mw = sdk_client(sim, usdc=0)
    sim.fund(mw["address"], token_id=yes, shares=10)
    limit(maker, yes, "SELL", 0.30, 10)
    short, _ = sdk_client(sim, usdc=7.12499)   # 10 x 0.7 + 10 x 0.05 x 0.25 = 7.125
    with pytest.raises(PolyApiException, match="order amount: 7125000"):
        limit(short, yes, "BUY", 0.70, 10, OrderType.FAK)
    buyer, bw = sdk_client(sim, usdc=7.125)
    assert limit(buyer, yes, "BUY", 0.70, 10, OrderType.FAK)["status"] == "matched"
    assert usdc(sim, bw) == D("7.125") - D(3) - D("0.105")   # filled at the maker's 0.30: fee 10 x 0.05 x 0.21


# -- 0.2 trade statuses and ghost fills -----------------------------------------------------------------


def test_trades_are_matched_then_confirmed_after_the_settlement_delay():
    clock = SimulatedClock()
    with SimExchange(seed=3, clock=clock, settlement_delay_s=5) as sim:
        yes = sim.create_market("Slow chain?", yes_price=0.5, volatility=0)["token_ids"][0]
        client, _ = sdk_client(sim)
        market_buy(client, yes, 5, 0.6)
        [t] = client.get_trades(TradeParams(asset_id=yes))
        assert t["status"] == "MATCHED"
        clock.advance(4.9)
        assert client.get_trades(TradeParams(asset_id=yes))[0]["status"] == "MATCHED"
        clock.advance(0.1)
        [t] = client.get_trades(TradeParams(asset_id=yes))
        assert t["status"] == "CONFIRMED" and int(t["last_update"]) == int(t["match_time"]) + 5


def test_a_ghost_fill_answers_matched_moves_nothing_and_its_trades_fail_after_the_delay(csim):
    sim, clock = csim
    yes = sim.create_market("Ghost?", yes_price=0.5, volatility=0)["token_ids"][0]
    sim.set_book(yes, bids=[[0.48, 100]], asks=[[0.51, 10], [0.52, 10]])
    client, wallet = sdk_client(sim)
    sim.ghost_fills(2, fail_after_s=3)
    with user_ws(sim, client) as ws:
        resp = market_buy(client, yes, 8, 0.55)   # two executions: 10 @ 0.51 and 5 @ 0.52 (both ghosts)
        assert resp["success"] is True and resp["status"] == "matched"
        assert D(resp["takingAmount"]) > 15 and D(resp["makingAmount"]) > 0
        assert len(resp["transactionsHashes"]) == 2 and len(resp["tradeIDs"]) == 2
        events = [recv(ws), recv(ws)]
        assert [(e["event_type"], e["status"]) for e in events] == [("trade", "MATCHED")] * 2
        assert_quiet(ws)   # no CONFIRMED

        assert usdc(sim, wallet) == 100 and held(sim, wallet, yes) == 0   # balances never moved
        trades = client.get_trades(TradeParams(asset_id=yes))
        assert {t["status"] for t in trades} == {"MATCHED"} and {t["id"] for t in trades} == set(resp["tradeIDs"])
        assert all(t.fee == 0 and t.ghost for t in sim.engine._trades)
        assert client.get_order(resp["orderID"]) is None   # filled: forgotten...
        sim.forget_orders(False)                           # ...unless the switch says otherwise
        view = client.get_order(resp["orderID"])
        assert view["status"] == "MATCHED" and D(view["size_matched"]) == D(resp["takingAmount"])
        assert rest_book(sim, yes)["asks"][-1]["price"] == "0.52"   # the book saw the match

        clock.advance(2.9)
        assert {t["status"] for t in client.get_trades(TradeParams(asset_id=yes))} == {"MATCHED"}
        clock.advance(0.1)
        assert {t["status"] for t in client.get_trades(TradeParams(asset_id=yes))} == {"FAILED"}
        failed = [recv(ws), recv(ws)]
        assert [(e["event_type"], e["status"]) for e in failed] == [("trade", "FAILED")] * 2
        assert {e["id"] for e in failed} == set(resp["tradeIDs"])
        assert usdc(sim, wallet) == 100 and held(sim, wallet, yes) == 0

        # The count is spent: the next execution settles and confirms.
        again = market_buy(client, yes, 2, 0.55)
        assert again["status"] == "matched" and held(sim, wallet, yes) == D(again["takingAmount"])
        assert [(e["status"]) for e in recv_until(ws, lambda m: m.get("status") == "CONFIRMED")] == \
            ["MATCHED", "CONFIRMED"]


def test_a_ghost_filled_resting_sell_leaves_the_book_and_its_shares_stay_sellable(csim):
    sim, clock = csim
    m = sim.create_market("Ghost maker?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    client, wallet = sdk_client(sim, usdc=0)
    sim.fund(wallet["address"], token_id=yes, shares=10)
    tp = limit(client, yes, "SELL", 0.57, 10)
    requests.post(f"{sim.clob_url}/_sim/faults", json={"ghost_fills": 1, "ghost_fail_s": 0}).raise_for_status()
    volume = sim.engine.market_by_condition(m["condition_id"]).volume
    with user_ws(sim, client) as ws:
        sim.set_price(yes, 0.60)   # other traders take the whole TP: a ghost
        msgs = recv_until(ws, lambda msg: msg.get("status") == "FAILED")
        assert [(x["event_type"], x["status"]) for x in msgs] == \
            [("trade", "MATCHED"), ("order", "MATCHED"), ("trade", "FAILED")]   # failed at the end of the move
        assert msgs[1]["type"] == "UPDATE" and msgs[1]["size_matched"] == "10"
    assert sim.balances(wallet["address"]) == {"usdc": "0", "tokens": {yes: "10"}, "open_orders": 0}
    assert client.get_order(tp["orderID"]) is None   # no longer live
    [t] = client.get_trades(TradeParams(asset_id=yes))
    assert (t["status"], t["trader_side"], t["maker_orders"][0]["order_id"]) == ("FAILED", "MAKER", tp["orderID"])
    assert sim.engine.market_by_condition(m["condition_id"]).volume == volume   # no volume either

    sell = limit(client, yes, "SELL", 0.50, 10, OrderType.FAK)   # the shares are free again
    assert sell["status"] == "matched" and held(sim, wallet, yes) == 0
    assert usdc(sim, wallet) == D("5.9") - D("0.0117")   # 10 @ 0.59 less the fee 10 x 0.02 x (0.59 x 0.41)^2


# -- 0.3 GET /data/order/{id} answers only live orders ------------------------------------------------


def test_orders_no_longer_live_are_forgotten_and_the_switch_brings_them_back(csim):
    sim, _ = csim
    yes = sim.create_market("Forgotten?", yes_price=0.5, volatility=0)["token_ids"][0]
    sim.set_book(yes, bids=[[0.48, 100]], asks=[[0.51, 10], [0.53, 100]])
    client, wallet = sdk_client(sim, usdc=200)
    fak = market_buy(client, yes, 2, 0.55)                          # filled FAK
    gtc_filled = limit(client, yes, "BUY", 0.53, 10)                # filled GTC
    cancelled = limit(client, yes, "BUY", 0.40, 10)
    client.cancel_order(OrderPayload(orderID=cancelled["orderID"]))  # cancelled GTC
    live = limit(client, yes, "BUY", 0.45, 10)
    partial = limit(client, yes, "BUY", 0.53, 200)                  # 96.x filled, the rest LIVE
    unknown = "0x" + "ab" * 32

    for resp in (fak, gtc_filled, cancelled):
        assert client.get_order(resp["orderID"]) is None
    assert client.get_order(unknown) is None
    assert client.get_order(live["orderID"])["status"] == "LIVE"
    view = client.get_order(partial["orderID"])
    assert view["status"] == "LIVE" and D(view["size_matched"]) > 90
    # The fills are told by /data/trades, by taker_order_id (FACTS 0.3).
    takers = {t["taker_order_id"] for t in client.get_trades(TradeParams(asset_id=yes))}
    assert {fak["orderID"], gtc_filled["orderID"], partial["orderID"]} <= takers

    sim.forget_orders(False)
    assert client.get_order(fak["orderID"])["status"] == "MATCHED"
    assert client.get_order(gtc_filled["orderID"])["size_matched"] == "10"
    assert client.get_order(cancelled["orderID"])["status"] == "CANCELED"
    assert client.get_order(unknown) is None
    requests.post(f"{sim.clob_url}/_sim/faults", json={"forget_orders": True}).raise_for_status()
    assert client.get_order(gtc_filled["orderID"]) is None


# -- 0.4 balance locks ------------------------------------------------------------------------------------


def test_a_balance_lock_refuses_every_order_while_balances_read_right_then_lifts(csim):
    sim, clock = csim
    yes = sim.create_market("Locked?", yes_price=0.5, volatility=0)["token_ids"][0]
    client, wallet = sdk_client(sim, usdc=100)
    sim.fund(wallet["address"], token_id=yes, shares=20)
    tp = limit(client, yes, "SELL", 0.60, 10)
    sim.balance_lock(30)
    for attempt in (lambda: market_buy(client, yes, 5, 0.6),
                    lambda: limit(client, yes, "SELL", 0.40, 10, OrderType.FAK),
                    lambda: limit(client, yes, "BUY", 0.30, 10)):
        with pytest.raises(PolyApiException) as err:
            attempt()
        assert err.value.status_code == 400 and err.value.error_msg == {"error": LOCK_MESSAGE}
    other, _ = sdk_client(sim)   # every user account
    with pytest.raises(PolyApiException, match="sum of matched orders"):
        market_buy(other, yes, 5, 0.6)
    balance = client.get_balance_allowance(BalanceAllowanceParams(asset_type=AssetType.COLLATERAL))
    assert balance["balance"] == "100000000"   # the truth, meanwhile
    shares = client.get_balance_allowance(BalanceAllowanceParams(asset_type=AssetType.CONDITIONAL, token_id=yes))
    assert shares["balance"] == "20000000"
    assert client.get_order(tp["orderID"])["status"] == "LIVE"   # reads and cancels work
    assert client.cancel_order(OrderPayload(orderID=tp["orderID"]))["canceled"] == [tp["orderID"]]

    clock.advance(29.9)
    with pytest.raises(PolyApiException, match="sum of matched orders"):
        market_buy(client, yes, 5, 0.6)
    clock.advance(0.1)
    assert market_buy(client, yes, 5, 0.6)["status"] == "matched"

    requests.post(f"{sim.clob_url}/_sim/faults", json={"balance_lock_s": 60}).raise_for_status()
    with pytest.raises(PolyApiException, match="sum of matched orders"):
        market_buy(client, yes, 5, 0.6)
    requests.post(f"{sim.clob_url}/_sim/faults", json={"balance_lock_s": 0}).raise_for_status()   # 0 ends it
    assert market_buy(client, yes, 5, 0.6)["status"] == "matched"


# -- 0.5 resolution, feeds, delayed orders ----------------------------------------------------------------


def test_resolution_cancels_resting_orders_with_canceled_market_resolved(csim):
    sim, _ = csim
    m = sim.create_market("Resolved?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    client, wallet = sdk_client(sim)
    sim.fund(wallet["address"], usdc=100, token_id=yes, shares=10)
    tp = limit(client, yes, "SELL", 0.70, 10)
    with user_ws(sim, client) as ws:
        sim.resolve(m["condition_id"], "Yes")
        cancel = recv(ws)
        assert (cancel["event_type"], cancel["type"], cancel["status"], cancel["id"]) == \
            ("order", "CANCELLATION", "CANCELED_MARKET_RESOLVED", tp["orderID"])
        assert_quiet(ws)
    assert client.get_order(tp["orderID"]) is None
    sim.forget_orders(False)
    assert client.get_order(tp["orderID"])["status"] == "CANCELED_MARKET_RESOLVED"
    assert sim.balances(wallet["address"]) == {"usdc": "110", "tokens": {}, "open_orders": 0}


def test_market_resolved_can_be_left_unsent(csim):
    sim, _ = csim
    m = sim.create_market("Silent resolution?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    sim.market_resolved_messages(False)
    with market_ws(sim, [yes], custom=True) as (ws, _):
        sim.resolve(m["condition_id"], "Yes")
        assert [recv(ws)["event_type"], recv(ws)["event_type"]] == ["price_change", "best_bid_ask"]
        assert_quiet(ws)   # no market_resolved
    m2 = sim.create_market("Loud resolution?", yes_price=0.5, volatility=0)
    requests.post(f"{sim.clob_url}/_sim/faults", json={"market_resolved_messages": True}).raise_for_status()
    with market_ws(sim, [m2["token_ids"][0]], custom=True) as (ws, _):
        sim.resolve(m2["condition_id"], "No")
        msgs = recv_until(ws, lambda msg: msg["event_type"] == "market_resolved")
        assert msgs[-1]["winning_asset_id"] == m2["token_ids"][1]


def test_a_subscribe_for_an_asset_already_subscribed_is_ignored(csim):
    sim, _ = csim
    yes, no = sim.create_market("Duplicate?", yes_price=0.5, volatility=0)["token_ids"]
    with market_ws(sim, [yes, yes]) as (ws, dump):
        assert [b["asset_id"] for b in dump] == [yes]
        ws.send(json.dumps({"operation": "subscribe", "assets_ids": [yes]}))
        ws.send("PING")
        assert ws.recv(timeout=WAIT) == "PONG"   # no book came before the answer to the PING
        ws.send(json.dumps({"operation": "subscribe", "assets_ids": [yes, no]}))
        assert [b["asset_id"] for b in recv(ws)] == [no]   # only the new one
        sim.set_price(yes, 0.6)
        assert {recv(ws)["price_changes"][0]["asset_id"] for _ in range(2)} == {yes, no}   # once each
        assert_quiet(ws)


def test_the_initial_subscribe_sent_twice_answers_invalid_operation(csim):
    sim, _ = csim
    yes, no = sim.create_market("Twice?", yes_price=0.5, volatility=0)["token_ids"]
    with market_ws(sim, [yes]) as (ws, _):
        ws.send(json.dumps({"type": "market", "assets_ids": [no], "initial_dump": True}))
        assert ws.recv(timeout=WAIT) == "INVALID OPERATION"
        sim.set_price(yes, 0.6)
        assert recv(ws)["price_changes"][0]["asset_id"] == yes   # nothing was added: only yes
        assert_quiet(ws)


def test_a_connection_takes_at_most_500_assets(csim):
    sim, _ = csim
    markets = [sim.create_market(f"Crowd {i}?", yes_price=0.5, volatility=0, liquidity_depth=1) for i in range(251)]
    tokens = [t for m in markets for t in m["token_ids"]]   # 502
    with connect(sim.ws_url + "/ws/market", max_size=None) as ws:
        ws.send(json.dumps({"type": "market", "assets_ids": tokens}))
        dump = recv(ws)
        assert [b["asset_id"] for b in dump] == tokens[:500]
        sim.set_price(tokens[500], 0.6)   # the last market: both its tokens are past the cap
        assert_quiet(ws)
        ws.send(json.dumps({"operation": "subscribe", "assets_ids": tokens[500:]}))
        ws.send("PING")
        assert ws.recv(timeout=WAIT) == "PONG"   # still full: no snapshot
        ws.send(json.dumps({"operation": "unsubscribe", "assets_ids": [tokens[0]]}))
        ws.send(json.dumps({"operation": "subscribe", "assets_ids": tokens[500:]}))
        assert [b["asset_id"] for b in recv(ws)] == [tokens[500]]   # room for one
        sim.set_price(tokens[0], 0.6)
        assert recv(ws)["price_changes"][0]["asset_id"] == tokens[1]   # tokens[0] left
        assert_quiet(ws)


def test_a_book_follows_the_messages_of_an_operation_with_trades(csim):
    sim, _ = csim
    yes, no = sim.create_market("Book after trades?", yes_price=0.5, volatility=0)["token_ids"]
    client, _ = sdk_client(sim)
    with market_ws(sim, [yes, no]) as (ws, _):
        market_buy(client, yes, 5, 0.6)
        change, trade, book = recv(ws), recv(ws), recv(ws)
        assert (change["event_type"], trade["event_type"], book["event_type"]) == \
            ("price_change", "last_trade_price", "book")
        rest = rest_book(sim, yes)
        assert book["asset_id"] == yes and book["bids"] == rest["bids"] and book["asks"] == rest["asks"]
        assert book["last_trade_price"] == "0.51"
        assert_quiet(ws)   # nothing about NO: it did not trade
        limit(client, yes, "BUY", 0.40, 5)   # no trade, no book
        assert recv(ws)["event_type"] == "price_change"
        assert_quiet(ws)


def test_a_delayed_order_can_be_made_uncancellable(csim):
    sim, clock = csim
    m = sim.create_market("Up or down?", yes_price=0.5, volatility=0, seconds_delay=0.25)
    yes = m["token_ids"][0]
    client, wallet = sdk_client(sim)
    requests.post(f"{sim.clob_url}/_sim/faults", json={"delayed_uncancellable": True}).raise_for_status()
    resp = market_buy(client, yes, 5, 0.6)
    oid = resp["orderID"]
    assert resp["status"] == "delayed"
    reason = "cannot cancel because the order is in pending/delayed status"
    assert client.cancel_order(OrderPayload(orderID=oid)) == {"canceled": [], "not_canceled": {oid: reason}}
    assert client.cancel_all() == {"canceled": [], "not_canceled": {oid: reason}}
    assert client.get_order(oid)["status"] == "DELAYED"
    clock.advance(0.25)
    assert client.get_order(oid) is None   # matched once its delay was over (and forgotten)
    [t] = client.get_trades(TradeParams(asset_id=yes))
    assert t["taker_order_id"] == oid and held(sim, wallet, yes) == D(t["size"])

    sim.delayed_uncancellable(False)   # off (the default): a delayed order is cancelled
    oid = market_buy(client, yes, 5, 0.6)["orderID"]
    assert client.cancel_order(OrderPayload(orderID=oid))["canceled"] == [oid]


# -- POST /_sim/faults ---------------------------------------------------------------------------------------


def test_fault_keys_combine_and_new_keys_alone_keep_the_http_faults(csim):
    sim, _ = csim
    yes = sim.create_market("Faults?", yes_price=0.5, volatility=0)["token_ids"][0]
    post = lambda body: requests.post(f"{sim.clob_url}/_sim/faults", json=body)  # noqa: E731
    midpoint = lambda: requests.get(f"{sim.clob_url}/midpoint", params={"token_id": yes})  # noqa: E731
    assert post({"rate": 1.0, "statuses": [503], "paths": ["/midpoint"]}).json() == {"ok": True}
    assert midpoint().status_code == 503
    assert post({"ghost_fills": 1, "ghost_fail_s": 2, "forget_orders": False, "balance_lock_s": 0,
                 "market_resolved_messages": True, "delayed_uncancellable": False}).json() == {"ok": True}
    assert midpoint().status_code == 503   # new keys alone leave the HTTP faults
    assert sim.engine.forget_orders is False and sim.engine._ghosts == 1 and sim.engine._ghost_fail_s == 2
    assert post({"rate": 0, "ghost_fills": 0, "forget_orders": True}).json() == {"ok": True}   # together
    assert midpoint().status_code == 200 and sim.engine.forget_orders is True and sim.engine._ghosts == 0
    assert post({"ghost_fail_s": 1}).status_code == 400
    assert post({"forget_orders": "no"}).status_code == 400
    assert post({"haunted": True}).status_code == 400
