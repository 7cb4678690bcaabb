"""The simulated venue's matching engine on its own (no HTTP): the rules that make exits hard."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.clock import SimulatedClock
from bot.sim.engine import MM_ACCOUNT, Engine, SimReject

A, B = "0xaaaa", "0xbbbb"
_ids = iter(range(1, 10**6))


def engine(**kw):
    e = Engine(seed=1, clock=SimulatedClock(), **kw)
    m = e.add_market("Engine?", yes_price="0.5", volatility=0)
    return e, m, m.token_ids[0]


def order(e, acct, token, side, price, shares, order_type="GTC", **kw):
    price, shares = D(str(price)), D(str(shares))
    usdc = price * shares
    maker, taker = (usdc, shares) if side == "BUY" else (shares, usdc)
    return e.place_order(order_id=f"0x{next(_ids):064x}", owner="key", account=acct, token_id=token, side=side,
                         maker_amount=maker, taker_amount=taker, order_type=order_type, **kw)


def market_buy(e, acct, token, usdc, cap, order_type="FAK"):
    usdc, cap = D(str(usdc)), D(str(cap))
    return e.place_order(order_id=f"0x{next(_ids):064x}", owner="key", account=acct, token_id=token, side="BUY",
                         maker_amount=usdc, taker_amount=(usdc / cap).quantize(D("0.000001")),
                         order_type=order_type)


def test_ladder_is_around_the_mid_and_the_other_token_mirrors_it():
    e, m, yes = engine()
    assert (e.best_bid(yes), e.best_ask(yes)) == (D("0.49"), D("0.51"))
    no = m.token_ids[1]
    assert e.best_bid(no) + e.best_ask(yes) == 1 and e.best_ask(no) + e.best_bid(yes) == 1


def test_sell_below_the_bid_fills_at_the_bid_and_reserves_nothing_after():
    e, m, yes = engine()
    e.fund(A, usdc=0, token_id=yes, shares=10)
    r = order(e, A, yes, "SELL", "0.30", 10)
    assert r["status"] == "matched" and D(r["takingAmount"]) == D("4.9")   # 10 at 0.49
    assert e.balance(A, yes) == 0


def test_open_sells_reserve_shares():
    e, m, yes = engine()
    e.fund(A, token_id=yes, shares=10)
    order(e, A, yes, "SELL", "0.60", 10)
    assert e.available(A, yes) == 0
    with pytest.raises(SimReject, match="not enough balance / allowance"):
        order(e, A, yes, "SELL", "0.40", 5, "FAK")


def test_a_taker_buy_gets_every_share_and_pays_the_fee_in_usdc_and_makers_pay_none():
    """FACTS.md Part 0, 0.1 (V2): the fee is USDC on top of the notional, floored to 5 decimals."""
    e, m, yes = engine()
    e.set_book(yes, bids=[], asks=[])
    e.fund(A, usdc=100)
    e.fund(B, token_id=yes, shares=50)
    order(e, B, yes, "SELL", "0.51", 30)   # B's resting order is the maker of the next fill
    market_buy(e, A, yes, 10.2, "0.51")
    fee = (D(20) * D("0.02") * (D("0.51") * D("0.49")) ** 2).quantize(D("0.00001"), rounding="ROUND_DOWN")
    assert fee == D("0.02498")
    assert e.balance(A, yes) == 20 and e.balance(A, "COLLATERAL") == 100 - D("10.2") - fee
    trade = e._trades[-1]
    assert (trade.fee, trade.taker_account, trade.maker_account) == (fee, A, B)
    assert e.balance(B, "COLLATERAL") == D("10.2") and e.balance(B, yes) == 30   # the maker pays nothing


def test_fok_all_or_nothing_and_fak_partial():
    e, m, yes = engine()
    e.set_book(yes, bids=[(D("0.48"), D(100))], asks=[(D("0.52"), D(10))])
    e.fund(A, usdc=100)
    with pytest.raises(SimReject, match="FOK orders are fully filled or killed"):
        market_buy(e, A, yes, 10, "0.55", "FOK")
    assert e.balance(A, "COLLATERAL") == 100
    r = market_buy(e, A, yes, 10, "0.55", "FAK")
    fee = D("0.01246")   # 10 x 0.02 x (0.52 x 0.48)^2 = 0.012460032, floored to 5 decimals
    assert D(r["takingAmount"]) == 10 and e.balance(A, "COLLATERAL") == D("94.8") - fee


def test_no_self_trade_and_post_only():
    e, m, yes = engine()
    e.set_book(yes, bids=[], asks=[])
    e.fund(A, usdc=100, token_id=yes, shares=50)
    order(e, A, yes, "SELL", "0.55", 10)
    r = order(e, A, yes, "BUY", "0.56", 10)   # would cross its own ask: rests instead
    assert r["status"] == "live" and e.balances(A)["open_orders"] == 2
    e.fund(B, usdc=100)
    with pytest.raises(SimReject, match="post-only order: order crosses book"):
        order(e, B, yes, "BUY", "0.55", 10, post_only=True)


def test_tick_minimum_size_and_dollar_minimum():
    e, m, yes = engine()
    e.fund(A, usdc=100, token_id=yes, shares=50)
    with pytest.raises(SimReject, match="breaks minimum tick size rule: 0.01"):
        order(e, A, yes, "SELL", "0.555", 10)
    with pytest.raises(SimReject, match="lower than the minimum: 5"):
        order(e, A, yes, "SELL", "0.70", 4)
    with pytest.raises(SimReject, match=r"min size: \$1"):
        market_buy(e, A, yes, "0.9", "0.52")


def test_rising_market_fills_a_resting_sell_at_its_price():
    e, m, yes = engine()
    e.fund(A, token_id=yes, shares=10)
    r = order(e, A, yes, "SELL", "0.57", 10)
    e.move_price(yes, "0.56")
    assert e.order_view(r["orderID"])["status"] == "LIVE"
    e.move_price(yes, "0.60")
    assert e.order_view(r["orderID"]) is None   # the venue forgets orders no longer live (FACTS 0.3)
    view = e.order_view(r["orderID"], include_forgotten=True)
    assert view["status"] == "MATCHED" and view["size_matched"] == "10"
    assert e.balance(A, "COLLATERAL") == D("5.7")
    trade = e.trades(A)[0]
    # as the venue reports a maker's trade: the taker's side at the top level, the account's fill in maker_orders
    assert trade["trader_side"] == "MAKER" and trade["side"] == "BUY" and trade["price"] == "0.57"
    assert trade["maker_orders"][0]["order_id"] == r["orderID"] and trade["maker_orders"][0]["side"] == "SELL"


def test_cancel_answers():
    e, m, yes = engine()
    e.fund(A, token_id=yes, shares=10)
    r = order(e, A, yes, "SELL", "0.60", 10)
    assert e.cancel(B, [r["orderID"]]) == {"canceled": [], "not_canceled": {r["orderID"]: "order not found"}}
    assert e.cancel(A, [r["orderID"]])["canceled"] == [r["orderID"]]
    assert e.available(A, yes) == 10   # the reservation went with it
    assert e.cancel(A, [r["orderID"]])["not_canceled"] == {r["orderID"]: "already canceled or matched"}


def test_settlement_delay_blocks_selling_fresh_shares():
    e, m, yes = engine(settlement_delay_s=5)
    e.fund(A, usdc=100)
    market_buy(e, A, yes, 10.2, "0.51")
    with pytest.raises(SimReject, match="not enough balance"):
        order(e, A, yes, "SELL", "0.40", 10, "FAK")
    e.clock.advance(6)
    assert order(e, A, yes, "SELL", "0.40", 10, "FAK")["status"] == "matched"


def test_resolution_cancels_orders_and_pays_winners():
    e, m, yes = engine()
    e.fund(A, usdc=0, token_id=yes, shares=10)
    order(e, A, yes, "SELL", "0.70", 5)
    e.resolve(m.condition_id, "Yes")
    assert e.balances(A) == {"usdc": D(10), "tokens": {}, "open_orders": 0}
    with pytest.raises(SimReject, match="closed"):
        order(e, A, yes, "SELL", "0.70", 5)


def test_living_market_is_deterministic_and_consistent():
    def walk(seed):
        e = Engine(seed=seed, clock=SimulatedClock(), default_volatility=D("0.01"))
        m = e.add_market("Walk?", yes_price="0.5")
        mids = []
        for _ in range(50):
            e.clock.advance(1)
            e.advance()
            mids.append(e.midpoint(m.token_ids[0]))
            assert e.midpoint(m.token_ids[0]) + e.midpoint(m.token_ids[1]) == 1
        return mids
    assert walk(3) == walk(3) and walk(3) != walk(4)
    assert len(set(walk(3))) > 3


def test_market_maker_never_trades_with_itself():
    e, m, yes = engine()
    e.set_book(yes, bids=[(D("0.55"), D(10))], asks=[(D("0.50"), D(10))])   # crossed MM levels stay resting
    assert e.trades(MM_ACCOUNT) == []
    assert e.best_bid(yes) == D("0.55") and e.best_ask(yes) == D("0.50")


def test_delayed_order_reserves_its_funds_and_resolution_cancels_it():
    e = Engine(seed=1, clock=SimulatedClock())
    m = e.add_market("Delayed?", yes_price="0.5", volatility=0, seconds_delay=3)
    yes = m.token_ids[0]
    e.fund(A, usdc=10)
    r = market_buy(e, A, yes, 8, "0.55")
    assert r["status"] == "delayed" and e.order_view(r["orderID"])["status"] == "DELAYED"
    assert e.available(A, "COLLATERAL") < 3   # reserved while it waits
    with pytest.raises(SimReject, match="not enough balance"):
        market_buy(e, A, yes, 8, "0.55")
    e.resolve(m.condition_id, "No")
    e.clock.advance(5)
    e.advance()
    assert e.order_view(r["orderID"]) is None
    assert e.order_view(r["orderID"], include_forgotten=True)["status"] == "CANCELED_MARKET_RESOLVED"
    assert e.balance(A, "COLLATERAL") == 10


def test_dynamic_tick_follows_the_random_walk_across_the_edge():
    e = Engine(seed=2, clock=SimulatedClock(), default_volatility=D("0.01"))
    m = e.add_market("Edge?", yes_price="0.955", dynamic_tick=True)
    seen = set()
    for _ in range(400):
        e.clock.advance(1)
        e.advance()
        fine = m.yes_mid > D("0.96") or m.yes_mid < D("0.04")
        assert m.tick_size == (D("0.001") if fine else D("0.01")) and m.yes_mid % m.tick_size == 0
        seen.add(m.tick_size)
    assert seen == {D("0.001"), D("0.01")}
