"""The simulated exchange through the REAL py-clob-client-v2: venue rules, auth, shapes, paging."""
from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest
import requests
from py_clob_client_v2 import (
    ApiCreds,
    BookParams,
    MarketOrderArgs,
    OpenOrderParams,
    OrderArgs,
    OrderPayload,
    OrderType,
    PartialCreateOrderOptions,
    TradeParams,
)
from py_clob_client_v2.exceptions import PolyApiException

from tests.sim.conftest import sdk_client

RECORDED = Path(__file__).resolve().parents[3] / "shared" / "polymarket" / "recorded" / "http"
OPTS = PartialCreateOrderOptions(tick_size="0.01", neg_risk=False)


def buy(client, token, usd=10, cap=0.6):
    return client.create_and_post_market_order(MarketOrderArgs(token_id=token, amount=usd, side="BUY", price=cap),
                                               options=OPTS, order_type=OrderType.FAK)


def held(sim, wallet, token) -> D:
    return D(sim.balances(wallet["address"])["tokens"].get(token, "0"))


def test_api_key_create_and_derive_are_the_same(sim):
    client, wallet = sdk_client(sim)
    created = client.create_api_key()
    derived = client.derive_api_key()
    assert created.api_key == derived.api_key and created.api_secret == derived.api_secret


def test_marketable_sell_below_the_bid_fills_at_once_at_the_bid(sim, market):
    client, wallet = sdk_client(sim)
    yes = market["token_ids"][0]
    resp = buy(client, yes)
    assert resp["status"] == "matched" and resp["transactionsHashes"] and resp["tradeIDs"]
    shares = held(sim, wallet, yes)
    assert shares == D("19.607843")   # $10 at 0.51: V2 takes no fee in shares (FACTS.md Part 0, 0.1)
    sim.set_book(yes, bids=[[0.49, 100], [0.48, 100]], asks=[[0.51, 100]])
    size = shares.quantize(D("0.01"), rounding="ROUND_DOWN")
    resp = client.create_and_post_order(OrderArgs(token_id=yes, price=0.30, size=float(size) + 1e-9, side="SELL"),
                                        options=OPTS, order_type=OrderType.GTC)
    assert resp["status"] == "matched"
    assert D(resp["makingAmount"]) == size and D(resp["takingAmount"]) == size * D("0.49")  # at the bid, not 0.30
    assert sim.balances(wallet["address"])["open_orders"] == 0


def test_second_full_size_sell_is_refused_while_a_tp_rests(sim, market):
    client, wallet = sdk_client(sim)
    yes = market["token_ids"][0]
    buy(client, yes)
    size = float(held(sim, wallet, yes).quantize(D("0.01"), rounding="ROUND_DOWN"))
    tp = client.create_and_post_order(OrderArgs(token_id=yes, price=0.57, size=size, side="SELL"), options=OPTS)
    assert tp["status"] == "live" and tp["makingAmount"] == ""
    with pytest.raises(PolyApiException) as err:
        client.create_and_post_market_order(MarketOrderArgs(token_id=yes, amount=size, side="SELL", price=0.4),
                                            options=OPTS, order_type=OrderType.FAK)
    assert err.value.status_code == 400 and "not enough balance / allowance" in err.value.error_msg["error"]


def test_resting_tp_fills_when_the_market_rises_through_it(sim, market):
    client, wallet = sdk_client(sim)
    yes = market["token_ids"][0]
    buy(client, yes)
    # + 1e-9: the SDK truncates floats (floor(x * 100) / 100), which would lose a unit of e.g. 4.35
    size = float(held(sim, wallet, yes).quantize(D("0.01"), rounding="ROUND_DOWN")) + 1e-9
    tp = client.create_and_post_order(OrderArgs(token_id=yes, price=0.57, size=size, side="SELL"), options=OPTS)
    size = D(str(round(size, 2)))
    usdc_before = D(sim.balances(wallet["address"])["usdc"])
    sim.set_price(yes, 0.60)
    assert client.get_order(tp["orderID"]) is None   # filled: the venue forgets it (FACTS.md Part 0, 0.3)
    order = sim.engine.order_view(tp["orderID"], include_forgotten=True)
    assert order["status"] == "MATCHED" and D(order["size_matched"]) == size
    assert D(sim.balances(wallet["address"])["usdc"]) - usdc_before == size * D("0.57")  # a maker pays no fee
    trades = client.get_trades(TradeParams(asset_id=yes))
    maker = [t for t in trades if t["trader_side"] == "MAKER"]
    assert maker and maker[0]["side"] == "BUY" and maker[0]["price"] == "0.57"   # the taker's side (venue shape)
    assert maker[0]["maker_orders"][0]["order_id"] == tp["orderID"] and maker[0]["maker_orders"][0]["side"] == "SELL"


def test_fok_that_cannot_fill_is_killed_and_fak_fills_partly(sim, market):
    client, wallet = sdk_client(sim, usdc=1000)
    yes = market["token_ids"][0]
    sim.set_book(yes, bids=[[0.48, 100]], asks=[[0.52, 10], [0.60, 10]])
    with pytest.raises(PolyApiException) as err:
        client.create_and_post_market_order(MarketOrderArgs(token_id=yes, amount=20, side="BUY", price=0.55),
                                            options=OPTS, order_type=OrderType.FOK)
    assert "FOK orders are fully filled or killed" in err.value.error_msg["error"]
    assert sim.balances(wallet["address"])["usdc"] == "1000"
    resp = client.create_and_post_market_order(MarketOrderArgs(token_id=yes, amount=20, side="BUY", price=0.55),
                                               options=OPTS, order_type=OrderType.FAK)
    assert D(resp["takingAmount"]) == D(10) and D(resp["makingAmount"]) == D("5.2")   # only the 0.52 level


def test_fak_with_nothing_to_match_is_refused(sim, market):
    client, wallet = sdk_client(sim)
    yes = market["token_ids"][0]
    sim.set_book(yes, bids=[[0.48, 100]], asks=[[0.70, 100]])
    with pytest.raises(PolyApiException) as err:
        buy(client, yes, cap=0.6)
    assert "no orders found to match with FAK order" in err.value.error_msg["error"]


def test_cancel_after_a_fill_lands_in_not_canceled(sim, market):
    client, wallet = sdk_client(sim)
    yes = market["token_ids"][0]
    buy(client, yes)
    size = float(held(sim, wallet, yes).quantize(D("0.01"), rounding="ROUND_DOWN"))
    tp = client.create_and_post_order(OrderArgs(token_id=yes, price=0.57, size=size, side="SELL"), options=OPTS)
    sim.set_price(yes, 0.62)
    resp = client.cancel_order(OrderPayload(orderID=tp["orderID"]))
    assert resp["canceled"] == [] and resp["not_canceled"] == {tp["orderID"]: "already canceled or matched"}


def test_minimums_and_tick_are_enforced(sim, market):
    client, wallet = sdk_client(sim)
    yes = market["token_ids"][0]
    with pytest.raises(PolyApiException) as err:
        buy(client, yes, usd=0.5)
    assert "min size: $1" in err.value.error_msg["error"]
    buy(client, yes)
    with pytest.raises(PolyApiException) as err:
        client.create_and_post_order(OrderArgs(token_id=yes, price=0.7, size=4, side="SELL"), options=OPTS)
    assert "lower than the minimum: 5" in err.value.error_msg["error"]
    tick3 = sim.create_market("Fine ticks?", yes_price=0.5, tick_size="0.005", volatility=0)
    client2, w2 = sdk_client(sim)
    sim.fund(w2["address"], usdc=100, token_id=tick3["token_ids"][0], shares=50)
    with pytest.raises(PolyApiException) as err:   # the SDK signs 0.123 on a 0.005 tick; the venue refuses
        client2.create_and_post_order(OrderArgs(token_id=tick3["token_ids"][0], price=0.623, size=10, side="SELL"),
                                      options=PartialCreateOrderOptions(tick_size="0.005", neg_risk=False))
    assert "breaks minimum tick size rule: 0.005" in err.value.error_msg["error"]


def test_wrong_hmac_secret_gets_401(sim):
    client, wallet = sdk_client(sim)
    good = client.creds
    client.set_api_creds(ApiCreds(api_key=good.api_key, api_secret="A" * 43 + "=", api_passphrase=good.api_passphrase))
    with pytest.raises(PolyApiException) as err:
        client.get_open_orders()
    assert err.value.status_code == 401


def test_tampered_order_signature_is_refused(sim, market):
    client, wallet = sdk_client(sim)
    yes = market["token_ids"][0]
    signed = client.create_order(OrderArgs(token_id=yes, price=0.45, size=10, side="BUY"), options=OPTS)
    signed.takerAmount = str(int(signed.takerAmount) + 1_000_000)   # claim one more share for the same money
    with pytest.raises(PolyApiException) as err:
        client.post_order(signed, OrderType.GTC)
    assert err.value.status_code == 400 and "invalid signature" in err.value.error_msg["error"]
    assert sim.balances(wallet["address"])["open_orders"] == 0


def test_neg_risk_market_needs_the_neg_risk_exchange(sim):
    m = sim.create_market("Neg risk?", yes_price=0.5, neg_risk=True, volatility=0)
    client, wallet = sdk_client(sim)
    yes = m["token_ids"][0]
    wrong = client.create_order(OrderArgs(token_id=yes, price=0.45, size=10, side="BUY"),
                                options=PartialCreateOrderOptions(tick_size="0.01", neg_risk=False))
    with pytest.raises(PolyApiException, match="invalid signature"):
        client.post_order(wrong, OrderType.GTC)
    right = client.create_and_post_order(OrderArgs(token_id=yes, price=0.45, size=10, side="BUY"))
    assert right["status"] == "live" and right["orderID"].startswith("0x") and len(right["orderID"]) == 66


def test_book_order_and_keys_match_the_real_venue(sim, market):
    client, _ = sdk_client(sim)
    book = client.get_order_book(market["token_ids"][0])
    bids = [D(level["price"]) for level in book["bids"]]
    asks = [D(level["price"]) for level in book["asks"]]
    assert bids == sorted(bids) and asks == sorted(asks, reverse=True)   # best LAST on both sides
    assert bids[-1] == D("0.49") and asks[-1] == D("0.51")
    assert set(book) >= {"market", "asset_id", "timestamp", "hash", "bids", "asks", "min_order_size", "tick_size",
                         "neg_risk", "last_trade_price"}
    real = RECORDED / "clob_book_2024.json"
    if real.exists():
        recorded = json.loads(real.read_text())
        recorded = recorded[0] if isinstance(recorded, list) else recorded
        assert set(recorded) <= set(book)
        rb = [D(level["price"]) for level in recorded["bids"]]
        assert rb == sorted(rb)   # the real book is ordered the same way
    books = client.get_order_books([BookParams(token_id=t) for t in market["token_ids"]])
    assert [b["asset_id"] for b in books] == market["token_ids"]
    no_bid = D(books[1]["bids"][-1]["price"])
    assert no_bid + D(book["asks"][-1]["price"]) == 1   # YES and NO stay consistent


def test_gamma_fields_parse_as_the_real_ones(sim, market):
    rows = requests.get(f"{sim.gamma_url}/markets", params={"active": "true", "closed": "false", "limit": 10,
                                                             "order": "liquidityNum", "ascending": "false"}).json()
    ours = next(r for r in rows if r["id"] == market["id"])
    assert json.loads(ours["clobTokenIds"]) == market["token_ids"]
    assert json.loads(ours["outcomes"]) == ["Yes", "No"]
    assert sum(D(p) for p in json.loads(ours["outcomePrices"])) == 1
    real = RECORDED / "gamma_market.json"
    if real.exists():
        recorded = json.loads(real.read_text())
        for key in ("id", "conditionId", "slug", "liquidity", "volume", "endDate", "outcomes", "outcomePrices",
                    "clobTokenIds", "liquidityNum", "volumeNum", "orderPriceMinTickSize", "orderMinSize",
                    "acceptingOrders", "enableOrderBook", "negRisk", "active", "closed"):
            assert type(ours[key]) is type(recorded[key]), key
    assert requests.get(f"{sim.gamma_url}/markets/slug/{market['slug']}").json()["id"] == market["id"]
    bad = requests.get(f"{sim.gamma_url}/markets", params={"order": "nonsense"})
    assert bad.status_code == 422 and bad.json()["error"] == "order fields are not valid"


def test_pagination_of_orders_and_trades_ends(sim, market):
    client, wallet = sdk_client(sim, usdc=1000)
    yes = market["token_ids"][0]
    ids = {client.create_and_post_order(OrderArgs(token_id=yes, price=0.40 - i / 100, size=5, side="BUY"),
                                        options=OPTS)["orderID"] for i in range(7)}
    assert {o["id"] for o in client.get_open_orders(OpenOrderParams(asset_id=yes))} == ids   # 3 pages of 3
    for _ in range(4):
        buy(client, yes, usd=2)
    assert len(client.get_trades(TradeParams(asset_id=yes))) == 4
    counts = sim.request_counts()["by_endpoint"]
    assert counts["GET /data/orders"] == 3 and counts["GET /data/trades"] == 2


def test_request_counts_are_exact(sim, market):
    client, wallet = sdk_client(sim)
    yes = market["token_ids"][0]
    sim.reset_request_counts()
    client.get_order_book(yes)
    client.get_order_books([BookParams(token_id=yes)])
    resp = buy(client, yes)   # a fresh client: /version, /markets-by-token, /clob-markets, then the order
    client.get_order(resp["orderID"])
    client.get_order(resp["orderID"])
    assert sim.request_counts() == {"total": 8, "faults": 0, "rate_limited": 0, "by_endpoint": {
        "GET /book": 1, "POST /books": 1, "GET /version": 1, "GET /markets-by-token/{token_id}": 1,
        "GET /clob-markets/{condition_id}": 1, "POST /order": 1, "GET /data/order/{id}": 2}}
    requests.get(f"{sim.gamma_url}/markets/{market['id']}")
    assert sim.request_counts()["by_endpoint"]["GAMMA GET /markets/{id}"] == 1
    requests.delete(f"{sim.clob_url}/_sim/requests")
    assert requests.get(f"{sim.clob_url}/_sim/requests").json()["total"] == 0


def test_faults_are_injected_at_the_asked_rate(sim, market):
    sim.set_faults(0.3, statuses=[429, 503], seed=1)
    statuses = [requests.get(f"{sim.clob_url}/book", params={"token_id": market["token_ids"][0]}).status_code
                for _ in range(400)]
    failed = [s for s in statuses if s != 200]
    assert 0.24 < len(failed) / 400 < 0.36 and set(failed) == {429, 503}
    assert sim.request_counts()["faults"] == len(failed)
    sim.set_faults(0)
    assert requests.get(f"{sim.clob_url}/book", params={"token_id": market["token_ids"][0]}).status_code == 200


def test_control_routes_over_http(sim):
    base = sim.clob_url
    m = requests.post(f"{base}/_sim/markets", json={"question": "HTTP control?", "yes_price": 0.4,
                                                    "volatility": 0}).json()
    assert set(m) == {"id", "condition_id", "slug", "token_ids"}
    yes = m["token_ids"][0]
    addr = "0x" + "ab" * 20
    requests.post(f"{base}/_sim/fund", json={"address": addr, "usdc": 50, "token_id": yes, "shares": 7})
    assert requests.get(f"{base}/_sim/balances", params={"address": addr}).json() == {
        "usdc": "50", "tokens": {yes: "7"}, "open_orders": 0}
    requests.post(f"{base}/_sim/book", json={"token_id": yes, "bids": [[0.3, 10]], "asks": [[0.35, 10]]})
    book = requests.get(f"{base}/book", params={"token_id": yes}).json()
    assert book["bids"] == [{"price": "0.3", "size": "10"}] and book["asks"] == [{"price": "0.35", "size": "10"}]
    requests.post(f"{base}/_sim/price", json={"token_id": yes, "price": 0.6})
    assert requests.get(f"{base}/price", params={"token_id": yes, "side": "BUY"}).json() == {"price": "0.59"}
    requests.post(f"{base}/_sim/resolve", json={"condition_id": m["condition_id"], "winner": "Yes"})
    gm = requests.get(f"{sim.gamma_url}/markets/{m['id']}").json()
    assert gm["closed"] is True and gm["acceptingOrders"] is False
    assert requests.get(f"{base}/_sim/balances", params={"address": addr}).json()["usdc"] == "57"
    requests.post(f"{base}/_sim/faults", json={"rate": 1, "statuses": [425]})
    assert requests.get(f"{base}/ok").status_code == 425
    requests.post(f"{base}/_sim/faults", json={"rate": 0})
    assert requests.get(f"{base}/ok").status_code == 200


def test_command_line_prints_its_urls_first():
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "bot.sim", "--markets", "3"], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        urls = json.loads(proc.stdout.readline())
        rows = requests.get(f"{urls['gamma_url']}/markets").json()
        assert len(rows) == 3 and requests.get(f"{urls['clob_url']}/ok").json() == "OK"
        from websockets.sync.client import connect
        with connect(urls["ws_url"] + "/ws/market") as ws:
            ws.send(json.dumps({"type": "market", "assets_ids": json.loads(rows[0]["clobTokenIds"])}))
            assert [b["event_type"] for b in json.loads(ws.recv(timeout=5))] == ["book", "book"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode in (0, -15)
