"""Push feeds end to end: the bot's feed client (bot/feeds.py) on bot/sim's WebSocket channels, orders through
the real SDK. A stop-loss crossed between two loops fires from the market channel, a TP fill arrives on the user
channel, and each way a feed fails (a dropped connection, a silent socket that still answers PING, a lost
subscription, events lost while reconnecting) is found and covered by REST until the feed is back.

The sim runs on a simulated clock (it never ticks by itself); messages travel in real time, so the tests wait
for what must arrive (generous deadlines) and never assert how fast it came."""
from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal as D

import pytest

from bot.clock import SimulatedClock
from bot.config import with_overrides
from bot.position_manager import CloseReason, PositionState
from bot.sim import SimExchange
from tests.e2e.conftest import Harness

PNL_TOLERANCE = D("0.001")
ORDER_READS = ("GET /data/order/{id}", "GET /data/orders", "GET /data/trades")


@pytest.fixture
def fsim():
    with SimExchange(seed=3, clock=SimulatedClock(start=1_800_000_000)) as exchange:
        yield exchange


@pytest.fixture
def harness(fsim, tmp_path):
    made: list[Harness] = []

    def make(**overrides) -> Harness:
        settings = {"feeds__check_seconds": 30, "feeds__resubscribe_timeout_seconds": 0.5,
                    "feeds__reconnect_min_seconds": 0.05, "feeds__reconnect_max_seconds": 0.2, **overrides}
        h = Harness(fsim, tmp_path / f"h{len(made)}", feeds=True, **settings)
        made.append(h)
        return h

    (tmp_path / "h0").mkdir()
    yield make
    for h in made:
        h.close()


def until(cond: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def still_market(sim, yes_price=0.5, question="Will it rain?"):
    return sim.create_market(question, yes_price=yes_price, volatility=0)


def only(positions):
    assert len(positions) == 1, positions
    return positions[0]


def reads(sim) -> dict[str, int]:
    return sim.request_counts()["by_endpoint"]


def settle(h: Harness, tokens: list[str], user: bool = True) -> None:
    """Loop until every token's feed is fresh (snapshot + a REST read that agrees) and, with ``user``, the user
    channel is connected and reconciled over REST."""
    assert h.feeds is not None
    feeds = h.feeds
    for token in tokens:
        until(lambda t=token: feeds.seen_at(t) is not None, f"the book snapshot of {token[:8]}")
    if user:
        until(lambda: feeds.stats()["user_connected"], "the user channel")
    for _ in range(5):
        h.loop()
        if all(feeds.fresh(t) for t in tokens) and (not user or feeds.user_fresh()):
            return
        time.sleep(0.05)
    raise AssertionError(f"feeds not fresh: {feeds.stats()}")


def usdc(h) -> D:
    return D(str(h.venue_balances()["usdc"]))


def test_a_stop_loss_crossed_between_two_loops_fires_from_the_market_channel(fsim, harness):
    m = still_market(fsim)
    h = harness()
    h.loop()
    pos = only(h.positions)
    token = m["token_ids"][0]
    assert pos.status == PositionState.OPEN and pos.tp_order_id
    settle(h, [token])
    h.no_new_trades()
    fsim.reset_request_counts()
    wakes = h.wakes
    fsim.set_price(token, 0.40)   # a jump through the SL, between two loops
    until(lambda: h.wakes > wakes, "the wake-up for the crossed stop-loss")
    h.bot.run_events()            # what the loop runs when woken
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert pos.metrics["trigger_source"] == "push" and pos.metrics["trigger_delay_ms"] >= 0
    assert "POST /books" not in reads(fsim), "the SL needed no REST book read"
    assert h.venue_balances()["open_orders"] == 0


def test_a_tp_fill_from_the_user_channel_closes_the_position_without_any_rest_order_read(fsim, harness):
    m = still_market(fsim)
    h = harness(feeds__user_ack_seconds=1.0)
    start = usdc(h)
    h.loop()
    pos = only(h.positions)
    token, tp_id = m["token_ids"][0], pos.tp_order_id
    settle(h, [token])
    time.sleep(1.5)
    assert h.feeds.stats()["reconnects"] == 0, "the new TP showed up on the user channel (else: stale, reconnected)"
    h.no_new_trades()
    fsim.reset_request_counts()
    fsim.set_price(token, 0.65)   # the market rises through the resting TP: it fills as a maker
    until(lambda: (o := h.feeds.order(tp_id)) is not None and o.final, "the TP's fill on the user channel")
    h.bot.run_events()
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert pos.exit_price == pos.tp_price and pos.realized_pnl > 0
    assert pos.metrics["trigger_source"] == "push", "status shows how the fill was learned"
    assert not any(reads(fsim).get(r) for r in ORDER_READS), reads(fsim)
    assert abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE
    h.bot.reader.tp_checks.force()   # a REST check afterwards books nothing twice
    h.loop()
    assert only(h.positions).realized_pnl == pos.realized_pnl


def test_a_dropped_connection_falls_back_to_rest_at_once_and_recovers(fsim, harness):
    m = still_market(fsim)
    h = harness()
    h.loop()
    token = m["token_ids"][0]
    settle(h, [token])
    opened = fsim.feed_stats()["opened"]["market"]
    fsim.drop_feeds("market")
    until(lambda: not h.feeds.fresh(token), "the token to go stale")
    fsim.reset_request_counts()
    h.loop()
    assert reads(fsim).get("POST /books", 0) >= 1, "a token whose feed dropped is read over REST"
    until(lambda: fsim.feed_stats()["opened"]["market"] > opened, "the reconnect")
    settle(h, [token], user=False)
    fsim.reset_request_counts()
    h.loop()
    assert "POST /books" not in reads(fsim), "back on the feed"


def test_a_silent_socket_is_found_by_the_rest_check_and_replaced(fsim, harness):
    m = still_market(fsim)
    h = harness()
    h.loop()
    token = m["token_ids"][0]
    settle(h, [token])
    h.no_new_trades()
    opened = fsim.feed_stats()["opened"]["market"]
    fsim.silence_feeds("market")   # still answers PING, never sends another event
    fsim.set_price(token, 0.48)    # the feed does not say so
    h.loop()
    assert h.feeds.fresh(token), "within check_seconds a silent feed cannot be told from a quiet market"
    h.clock.advance(31)            # the staleness limit: the token's REST check finds the feed wrong and silent
    fsim.reset_request_counts()
    h.loop()
    assert not h.feeds.fresh(token) and reads(fsim).get("POST /books", 0) >= 1
    until(lambda: fsim.feed_stats()["opened"]["market"] > opened, "the silent connection replaced")
    settle(h, [token])
    fsim.set_price(token, 0.40)    # and the feed is trusted again: the SL fires from it
    until(lambda: (b := h.feeds.book(token)) is not None and b.best_bid == D("0.39"), "the move pushed")
    h.bot.run_events()
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert pos.metrics["trigger_source"] == "push"


def test_a_lost_subscription_falls_back_for_that_token_only_and_is_restored(fsim, harness):
    a, b = still_market(fsim, question="A?"), still_market(fsim, question="B?")
    h = harness(trading__use_concurrent_orders=False)
    h.loop(2)
    assert len(h.positions) == 2
    ta, tb = a["token_ids"][0], b["token_ids"][0]
    settle(h, [ta, tb])
    h.no_new_trades()
    fsim.stop_subscription(ta)
    fsim.set_price(ta, 0.52)
    fsim.set_price(tb, 0.52)
    until(lambda: h.feeds.book(tb) is not None and h.feeds.book(tb).best_bid == D("0.51"), "B's move pushed")
    h.clock.advance(31)
    h.loop()   # A's check finds the feed silent and wrong; B's feed is alive
    assert not h.feeds.fresh(ta) and h.feeds.fresh(tb)
    until(lambda: h.feeds.seen_at(ta) is not None and h.feeds.book(ta) is None, "A resubscribed")
    settle(h, [ta, tb])


def test_a_tp_fill_lost_while_the_user_channel_reconnects_is_booked_once_by_rest(fsim, harness):
    m = still_market(fsim)
    h = harness(feeds__reconnect_min_seconds=1.0, feeds__reconnect_max_seconds=1.0)
    start = usdc(h)
    h.loop()
    pos = only(h.positions)
    token, tp_id = m["token_ids"][0], pos.tp_order_id
    settle(h, [token])
    h.no_new_trades()
    reconnects = h.feeds.stats()["reconnects"]
    fsim.drop_feeds("user")
    fsim.set_price(token, 0.65)   # the TP fills while the user channel is down: its events are lost
    until(lambda: h.feeds.stats()["reconnects"] > reconnects and h.feeds.stats()["user_connected"], "the reconnect")
    h.bot.run_events()
    assert only(h.positions).status == PositionState.OPEN, "the venue replays nothing"
    assert not h.feeds.user_fresh(), "not trusted before the REST check"
    h.loop()                       # the check after a reconnect reads the orders over REST
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert pos.tp_filled_shares == pos.record(tp_id).filled and pos.metrics["trigger_source"] == "poll"
    assert abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE


def test_a_new_positions_tp_shows_up_on_the_user_channel_without_a_reconnect(fsim, harness):
    a = still_market(fsim, question="A?")
    h = harness(feeds__user_ack_seconds=1.0, capital__max_positions=1)
    h.loop()
    settle(h, [a["token_ids"][0]])
    b = still_market(fsim, question="B?")   # a second market, entered once a slot is free
    h.bot.config = h.bot.manage.config = h.config = with_overrides(h.config, capital__max_positions=2)
    h.loop(2)
    assert len(h.positions) == 2 and all(p.tp_order_id for p in h.positions)
    assert b["token_ids"][0] in {p.token_id for p in h.positions}
    time.sleep(1.5)
    assert h.feeds.stats()["reconnects"] == 0, "its TP's events were lost (the channel was taken for stale)"


def test_a_market_resolved_on_the_feed_books_the_payout_at_once(fsim, harness):
    m = still_market(fsim)
    h = harness()
    h.loop()
    settle(h, [m["token_ids"][0]])
    h.no_new_trades()
    wakes = h.wakes
    fsim.resolve(m["condition_id"], "Yes")
    until(lambda: h.wakes > wakes, "the resolution pushed")
    h.bot.run_events()
    h.loop()
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.MARKET_RESOLVED
    assert pos.realized_pnl > 0, "the Yes shares pay 1 each"
