"""The real venue's harder answers, through the REAL py-clob-client-v2 on a simulated clock: delayed
matching (secondsDelay), HTTP 200 refusals, maker trades in the venue's shape, fee_rate_bps, the matching
engine's restart window, the tick change near the edges, and the amounts of order answers."""
from __future__ import annotations

import json
import re
from decimal import Decimal as D
from pathlib import Path

import pytest
import requests
from py_clob_client_v2 import (
    MarketOrderArgs,
    OpenOrderParams,
    OrderArgs,
    OrderPayload,
    OrderType,
    PartialCreateOrderOptions,
    PostOrdersV2Args,
    TradeParams,
)
from py_clob_client_v2.exceptions import PolyApiException

from bot.clock import SimulatedClock
from bot.sim import SimExchange
from tests.sim.conftest import sdk_client

RECORDED = Path(__file__).resolve().parents[3] / "shared" / "polymarket" / "recorded" / "http"
OPTS = PartialCreateOrderOptions(tick_size="0.01", neg_risk=False)
FINE = PartialCreateOrderOptions(tick_size="0.001", neg_risk=False)


@pytest.fixture
def csim():
    """A sim on a simulated clock: time passes only when the test says so."""
    clock = SimulatedClock()
    with SimExchange(seed=5, clock=clock, page_size=3) as exchange:
        yield exchange, clock


def buy(client, token, usd=10, cap=0.6, order_type=OrderType.FAK):
    return client.create_and_post_market_order(MarketOrderArgs(token_id=token, amount=usd, side="BUY", price=cap),
                                               options=OPTS, order_type=order_type)


def usdc(sim, wallet) -> D:
    return D(sim.balances(wallet["address"])["usdc"])


def held(sim, wallet, token) -> D:
    return D(sim.balances(wallet["address"])["tokens"].get(token, "0"))


def taker_cost(trades, rate=D("0.02"), exponent=2) -> D:
    """What a taker BUY's trades cost in USDC on V2: notional + fee (FACTS.md Part 0, 0.1; the sim's default
    market has fee rate 0.02, exponent 2)."""
    total = D(0)
    for t in trades:
        size, price = D(t["size"]), D(t["price"])
        total += (size * price).quantize(D("0.000001"), rounding="ROUND_DOWN")
        total += (size * rate * (price * (1 - price)) ** exponent).quantize(D("0.00001"), rounding="ROUND_DOWN")
    return total


# -- 1. delayed matching ------------------------------------------------------------------------------


def test_delayed_market_answers_delayed_and_matches_only_after_the_delay(csim):
    sim, clock = csim
    m = sim.create_market("Sports: who wins?", yes_price=0.5, volatility=0, seconds_delay=3)
    yes = m["token_ids"][0]
    assert requests.get(f"{sim.gamma_url}/markets/{m['id']}").json()["secondsDelay"] == 3   # as Gamma sends it
    client, wallet = sdk_client(sim)

    resp = buy(client, yes)
    assert resp["success"] is True and resp["errorMsg"] == "" and resp["status"] == "delayed"
    assert re.fullmatch(r"0x[0-9a-f]{64}", resp["orderID"])
    assert resp.get("makingAmount", "") == "" and resp.get("takingAmount", "") == ""   # outcome not known yet
    assert not resp.get("tradeIDs") and not resp.get("transactionsHashes")
    oid = resp["orderID"]

    pending = client.get_order(oid)
    assert pending["status"] == "DELAYED" and pending["size_matched"] == "0"
    assert [o["id"] for o in client.get_open_orders(OpenOrderParams(id=oid))] == [oid]
    assert client.get_trades(TradeParams(asset_id=yes)) == []
    assert usdc(sim, wallet) == 100 and held(sim, wallet, yes) == 0

    clock.advance(2.9)
    assert client.get_order(oid)["status"] == "DELAYED"
    assert usdc(sim, wallet) == 100 and held(sim, wallet, yes) == 0   # balances move only when it matches

    clock.advance(0.2)
    assert client.get_order(oid) is None   # the next request after the delay matches it; filled: forgotten
    done = sim.engine.order_view(oid, include_forgotten=True)
    assert done["status"] == "MATCHED"
    matched = D(done["size_matched"])
    assert matched > 19
    trades = client.get_trades(TradeParams(asset_id=yes))   # where the venue tells the fills (FACTS 0.3)
    assert trades and all(t["taker_order_id"] == oid and t["trader_side"] == "TAKER" and t["side"] == "BUY"
                          for t in trades)
    assert sum(D(t["size"]) for t in trades) == matched
    assert usdc(sim, wallet) == 100 - taker_cost(trades) and held(sim, wallet, yes) == matched
    assert client.get_open_orders(OpenOrderParams(id=oid)) == []


def test_delayed_orders_that_find_nothing_are_unmatched_and_crossing_gtc_rests_its_rest(csim):
    sim, clock = csim
    m = sim.create_market("Sports: will they score?", yes_price=0.5, volatility=0, seconds_delay=3)
    yes = m["token_ids"][0]
    client, wallet = sdk_client(sim, usdc=200)

    fak = buy(client, yes, cap=0.55)
    sim.set_price(yes, 0.80)   # the price runs away during the delay
    clock.advance(3)
    assert client.get_order(fak["orderID"]) is None   # no longer live: forgotten (FACTS 0.3)
    view = sim.engine.order_view(fak["orderID"], include_forgotten=True)
    assert view["status"] == "UNMATCHED" and view["size_matched"] == "0"
    assert usdc(sim, wallet) == 200 and client.get_trades() == []

    sim.set_book(yes, bids=[[0.78, 100]], asks=[[0.81, 10]])
    gtc = client.create_and_post_order(OrderArgs(token_id=yes, price=0.82, size=30, side="BUY"), options=OPTS)
    assert gtc["status"] == "delayed" and gtc["makingAmount"] == "" and gtc["takingAmount"] == ""
    assert sim.balances(wallet["address"])["open_orders"] == 1    # it reserves its USDC while delayed
    resting = client.create_and_post_order(OrderArgs(token_id=yes, price=0.70, size=10, side="BUY"), options=OPTS)
    assert resting["status"] == "live"   # an order that does not cross is not delayed
    clock.advance(3)
    view = client.get_order(gtc["orderID"])
    assert view["status"] == "LIVE" and view["size_matched"] == "10"   # 10 at 0.81, the other 20 rest at 0.82
    assert usdc(sim, wallet) == 200 - D("8.1") - D("0.00473")   # + its taker fee (10 x 0.02 x (0.81 x 0.19)^2)


def test_a_delayed_order_can_be_canceled_before_it_matches(csim):
    sim, clock = csim
    m = sim.create_market("Sports: overtime?", yes_price=0.5, volatility=0, seconds_delay=3)
    yes = m["token_ids"][0]
    client, wallet = sdk_client(sim)
    oid = buy(client, yes)["orderID"]
    assert client.cancel_order(OrderPayload(orderID=oid)) == {"canceled": [oid], "not_canceled": {}}
    clock.advance(5)
    assert client.get_order(oid) is None   # cancelled: forgotten (FACTS 0.3)
    assert sim.engine.order_view(oid, include_forgotten=True)["status"] == "CANCELED"
    assert usdc(sim, wallet) == 100 and client.get_trades() == []


# -- 2. HTTP 200 refusals -----------------------------------------------------------------------------


def test_http_200_refusal_creates_nothing(csim):
    sim, clock = csim
    m = sim.create_market("Refused?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    client, wallet = sdk_client(sim)
    sim.refuse_orders(next=2)
    signed = client.create_order(OrderArgs(token_id=yes, price=0.45, size=10, side="BUY"), options=OPTS)
    resp = client.post_order(signed, OrderType.GTC)
    assert resp == {"success": False, "orderID": None, "errorMsg": "not enough balance / allowance", "status": ""}
    assert sim.balances(wallet["address"]) == {"usdc": "100", "tokens": {}, "open_orders": 0}
    assert buy(client, yes)["success"] is False   # the second of the two
    assert usdc(sim, wallet) == 100 and client.get_trades() == []
    again = client.post_order(signed, OrderType.GTC)   # not a duplicate: the refused post created nothing
    assert again["success"] is True and again["status"] == "live"

    sim.refuse_orders(rate=0.5, message="the market is not yet ready to process new orders", seed=3)
    answers = [buy(client, yes, usd=1) for _ in range(20)]
    refused = [a for a in answers if not a["success"]]
    assert 4 <= len(refused) <= 16
    assert {a["errorMsg"] for a in refused} == {"the market is not yet ready to process new orders"}
    assert len(client.get_trades(TradeParams(asset_id=yes))) == 20 - len(refused)
    sim.refuse_orders()
    assert buy(client, yes, usd=1)["success"] is True


def test_sparse_answers_carry_no_amounts(csim):
    sim, clock = csim
    yes = sim.create_market("Sparse?", yes_price=0.5, volatility=0)["token_ids"][0]
    client, wallet = sdk_client(sim)
    sim.set_sparse_answers(True)
    resp = buy(client, yes)
    assert set(resp) == {"success", "orderID", "errorMsg", "status"} and resp["status"] == "matched"
    assert client.get_order(resp["orderID"]) is None   # filled: forgotten (FACTS 0.3); the trades tell it
    assert [t["taker_order_id"] for t in client.get_trades()] == [resp["orderID"]]
    sim.set_sparse_answers(False)
    assert "makingAmount" in buy(client, yes)


# -- 3. and 4. trades in the venue's shape, fee_rate_bps ----------------------------------------------


def test_maker_trade_has_the_takers_order_side_and_size_and_the_own_fill_in_maker_orders(csim):
    sim, clock = csim
    m = sim.create_market("Maker?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    maker, mw = sdk_client(sim)
    sim.fund(mw["address"], usdc=100, token_id=yes, shares=30)
    tp = maker.create_and_post_order(OrderArgs(token_id=yes, price=0.52, size=20, side="SELL"), options=OPTS)
    sim.set_book(yes, bids=[[0.48, 100]], asks=[])   # only the maker's ask is left
    taker, tw = sdk_client(sim)
    bought = buy(taker, yes, usd=5.2, cap=0.55)   # 10 of the maker's 20 shares
    assert bought["status"] == "matched" and D(bought["takingAmount"]) == 10

    [t] = maker.get_trades(TradeParams(asset_id=yes))
    assert t["trader_side"] == "MAKER"
    assert t["taker_order_id"] == bought["orderID"] and t["side"] == "BUY" and D(t["size"]) == 10   # the taker's
    assert t["price"] == "0.52" and t["status"] == "CONFIRMED" and t["transaction_hash"].startswith("0x")
    assert t["maker_address"] == mw["address"].lower() and t["owner"] == maker.creds.api_key
    [own] = t["maker_orders"]
    assert own == {"order_id": tp["orderID"], "owner": maker.creds.api_key, "maker_address": mw["address"].lower(),
                   "matched_amount": "10", "price": "0.52", "fee_rate_bps": "", "asset_id": yes, "outcome": "Yes",
                   "side": "SELL"}
    assert maker.get_order(tp["orderID"])["size_matched"] == "10"

    [tt] = taker.get_trades(TradeParams(asset_id=yes))   # the taker's record is unchanged
    assert tt["trader_side"] == "TAKER" and tt["side"] == "BUY" and tt["taker_order_id"] == bought["orderID"]
    assert tt["maker_orders"][0]["order_id"] == tp["orderID"] and tt["maker_orders"][0]["side"] == "SELL"

    for path in (RECORDED / "http_trade_report.json", RECORDED / "http_trades_page.json"):
        if path.exists():   # the same keys as the venue's recorded trades, at the top and in maker_orders
            rec = json.loads(path.read_text())
            rec = rec["data"][0] if "data" in rec else rec
            assert set(t) == set(rec) and set(tt) == set(rec)
            for mo in rec["maker_orders"]:
                assert set(own) == set(mo)
            assert all(isinstance(t[k], type(rec[k])) for k in rec)


def test_fee_rate_bps_is_a_string_empty_by_default_or_the_markets(csim):
    sim, clock = csim
    v2 = sim.create_market("V2 fees?", yes_price=0.5, volatility=0)
    legacy = sim.create_market("Legacy fees?", yes_price=0.5, volatility=0, fee_rate_bps="1000")
    client, wallet = sdk_client(sim, usdc=100)
    for m, expected in ((v2, ""), (legacy, "1000")):
        buy(client, m["token_ids"][0], usd=5)
        [t] = client.get_trades(TradeParams(asset_id=m["token_ids"][0]))
        assert t["fee_rate_bps"] == expected and t["maker_orders"][0]["fee_rate_bps"] == expected
    fee = requests.get(f"{sim.clob_url}/fee-rate", params={"token_id": legacy["token_ids"][0]}).json()
    assert fee == {"base_fee": 1000}
    assert sim.set_market_options(v2["condition_id"], fee_rate_bps="0")["fee_rate_bps"] == "0"
    buy(client, v2["token_ids"][0], usd=5)
    assert {t["fee_rate_bps"] for t in client.get_trades(TradeParams(asset_id=v2["token_ids"][0]))} == {"0"}


def test_order_answers_carry_the_amounts_as_the_venue_does(csim):
    sim, clock = csim
    yes = sim.create_market("Amounts?", yes_price=0.5, volatility=0, fee_rate=0)["token_ids"][0]
    client, wallet = sdk_client(sim)
    resp = buy(client, yes)   # BUY: making = USDC paid, taking = shares
    assert resp["status"] == "matched"
    assert D(resp["makingAmount"]) == 100 - usdc(sim, wallet) and D(resp["takingAmount"]) == held(sim, wallet, yes)
    shares = held(sim, wallet, yes).quantize(D("0.01"), rounding="ROUND_DOWN")
    before = usdc(sim, wallet)
    tp = client.create_and_post_order(OrderArgs(token_id=yes, price=0.60, size=float(shares), side="SELL"),
                                      options=OPTS)
    assert tp["status"] == "live" and tp["makingAmount"] == "" and tp["takingAmount"] == ""   # resting
    client.cancel_order(OrderPayload(orderID=tp["orderID"]))
    sell = client.create_and_post_market_order(MarketOrderArgs(token_id=yes, amount=float(shares), side="SELL",
                                                               price=0.4), options=OPTS, order_type=OrderType.FAK)
    assert sell["status"] == "matched"   # SELL: making = shares, taking = USDC
    assert D(sell["makingAmount"]) == shares and D(sell["takingAmount"]) == usdc(sim, wallet) - before


# -- 5. the matching engine's restart window ----------------------------------------------------------


def test_restart_window_425_then_post_only_then_normal(csim):
    sim, clock = csim
    yes = sim.create_market("Restart?", yes_price=0.5, volatility=0)["token_ids"][0]
    client, wallet = sdk_client(sim)
    sim.fund(wallet["address"], usdc=100, token_id=yes, shares=40)
    tp = client.create_and_post_order(OrderArgs(token_id=yes, price=0.60, size=20, side="SELL"), options=OPTS)

    window = sim.restart_engine(seconds_425=90, post_only_seconds=120)
    assert window["post_only_until"] - window["restarting_until"] == 120
    assert sim.engine_phase() == {"phase": "restarting", "seconds_left": 90}
    for attempt in (lambda: client.create_and_post_market_order(
                        MarketOrderArgs(token_id=yes, amount=10, side="SELL", price=0.4), options=OPTS,
                        order_type=OrderType.FAK),
                    lambda: client.cancel_order(OrderPayload(orderID=tp["orderID"]))):
        with pytest.raises(PolyApiException) as err:
            attempt()
        assert err.value.status_code == 425 and "restarting" in err.value.error_msg["error"]
        assert err.value.args[0].headers["Retry-After"] == "90"
    assert client.get_order(tp["orderID"])["status"] == "LIVE"   # reads still work
    assert held(sim, wallet, yes) == 40

    clock.advance(90)
    assert sim.engine_phase() == {"phase": "post_only", "seconds_left": 120}
    with pytest.raises(PolyApiException) as err:   # a stop-loss sale must wait this out
        client.create_and_post_market_order(MarketOrderArgs(token_id=yes, amount=10, side="SELL", price=0.4),
                                            options=OPTS, order_type=OrderType.FAK)
    assert err.value.status_code == 503 and err.value.error_msg == {
        "error": "post-only mode: only post-only orders and cancels are allowed", "code": "post_only_mode",
        "retry_after_seconds": 120}
    assert err.value.args[0].headers["Retry-After"] == "120"
    with pytest.raises(PolyApiException) as err:   # a plain GTC too
        client.create_and_post_order(OrderArgs(token_id=yes, price=0.65, size=5, side="SELL"), options=OPTS)
    assert err.value.status_code == 503
    batch = client.post_orders([PostOrdersV2Args(client.create_order(
        OrderArgs(token_id=yes, price=0.66, size=5, side="SELL"), options=OPTS), OrderType.GTC)])
    assert batch == [{"errorMsg": "post-only mode: only post-only orders and cancels are allowed", "orderID": "",
                      "takingAmount": "", "makingAmount": "", "status": "", "success": True}]
    assert client.cancel_order(OrderPayload(orderID=tp["orderID"]))["canceled"] == [tp["orderID"]]   # cancels ok
    po = client.create_and_post_order(OrderArgs(token_id=yes, price=0.62, size=20, side="SELL"), options=OPTS,
                                      post_only=True)
    assert po["status"] == "live"
    with pytest.raises(PolyApiException, match="invalid post-only order: order crosses book"):
        client.create_and_post_order(OrderArgs(token_id=yes, price=0.45, size=5, side="SELL"), options=OPTS,
                                     post_only=True)
    assert held(sim, wallet, yes) == 40 and sim.balances(wallet["address"])["open_orders"] == 1

    clock.advance(119)
    assert sim.engine_phase()["phase"] == "post_only"
    clock.advance(1)
    assert sim.engine_phase() == {"phase": "normal", "seconds_left": 0}
    sold = client.create_and_post_market_order(MarketOrderArgs(token_id=yes, amount=10, side="SELL", price=0.4),
                                               options=OPTS, order_type=OrderType.FAK)
    assert sold["status"] == "matched" and held(sim, wallet, yes) == 30


# -- 6. tick change near the edges ---------------------------------------------------------------------


def test_tick_becomes_fine_above_096_and_orders_at_the_old_tick_are_refused(csim):
    sim, clock = csim
    m = sim.create_market("Nearly certain?", yes_price=0.95, volatility=0, dynamic_tick=True)
    yes, no = m["token_ids"]

    def ticks():
        tick = {t: requests.get(f"{sim.clob_url}/tick-size", params={"token_id": t}).json()["minimum_tick_size"]
                for t in (yes, no)}
        book = requests.get(f"{sim.clob_url}/book", params={"token_id": yes}).json()["tick_size"]
        mts = requests.get(f"{sim.clob_url}/clob-markets/{m['condition_id']}").json()["mts"]
        gamma = requests.get(f"{sim.gamma_url}/markets/{m['id']}").json()["orderPriceMinTickSize"]
        return tick[yes], tick[no], book, mts, gamma

    assert ticks() == (0.01, 0.01, "0.01", 0.01, 0.01)
    sim.set_price(yes, 0.97)
    assert ticks() == (0.001, 0.001, "0.001", 0.001, 0.001)   # No sits at 0.03: one tick for the market
    book = requests.get(f"{sim.clob_url}/book", params={"token_id": yes}).json()
    assert (book["bids"][-1]["price"], book["asks"][-1]["price"]) == ("0.969", "0.971")

    client, wallet = sdk_client(sim)   # a fresh client caches tick 0.001
    sim.fund(wallet["address"], usdc=100, token_id=yes, shares=50)
    tp = client.create_and_post_order(OrderArgs(token_id=yes, price=0.985, size=20, side="SELL"), options=FINE)
    assert tp["status"] == "live"

    sim.set_price(yes, 0.95)   # back inside: tick 0.01 again
    assert ticks() == (0.01, 0.01, "0.01", 0.01, 0.01)
    assert client.get_order(tp["orderID"])["status"] == "LIVE"   # what rests stays
    with pytest.raises(PolyApiException) as err:   # the cached old tick is refused by the venue
        client.create_and_post_order(OrderArgs(token_id=yes, price=0.975, size=10, side="SELL"), options=FINE)
    assert err.value.status_code == 400
    assert re.fullmatch(r"order 0x[0-9a-f]{64} is invalid\. Price \(0\.975\) breaks minimum tick size rule: 0\.01",
                        err.value.error_msg["error"])
    assert sim.balances(wallet["address"])["open_orders"] == 1

    sim.set_price(yes, 0.02)   # and below 0.04
    assert ticks()[0] == 0.001


def test_control_routes_of_the_venue_answers_over_http(csim):
    sim, clock = csim
    base = sim.clob_url
    m = requests.post(f"{base}/_sim/markets", json={"question": "Control?", "yes_price": 0.5, "volatility": 0}).json()
    opts = requests.post(f"{base}/_sim/market-options", json={"market": m["condition_id"], "seconds_delay": 2,
                                                              "dynamic_tick": True, "fee_rate_bps": "0"}).json()
    assert opts == {"condition_id": m["condition_id"], "seconds_delay": 2.0, "dynamic_tick": True,
                    "tick_size": "0.01", "fee_rate_bps": "0"}
    client, wallet = sdk_client(sim)
    yes = m["token_ids"][0]
    oid = buy(client, yes)["orderID"]
    clock.advance(2)
    assert requests.post(f"{base}/_sim/advance").json() == {"ok": True}
    assert sim.engine.order_view(oid) is None
    assert sim.engine.order_view(oid, include_forgotten=True)["status"] == "MATCHED"
    requests.post(f"{base}/_sim/refusals", json={"next": 1, "message": "Insufficient balance"})
    assert buy(client, yes)["errorMsg"] == "Insufficient balance"
    requests.post(f"{base}/_sim/sparse-answers", json={"on": True})
    sim.set_market_options(yes, seconds_delay=0)
    assert set(buy(client, yes)) == {"success", "orderID", "errorMsg", "status"}
    requests.post(f"{base}/_sim/sparse-answers", json={"on": False})
    assert requests.post(f"{base}/_sim/restart", json={"seconds_425": 5, "post_only_seconds": 5}).status_code == 200
    assert requests.get(f"{base}/_sim/restart").json() == {"phase": "restarting", "seconds_left": 5}
    clock.advance(10)
    assert requests.get(f"{base}/_sim/restart").json() == {"phase": "normal", "seconds_left": 0}
