"""Stops that follow the price (bot/stops.py), end to end on bot/sim with the real SDK: a run-up then a fall exits
at the trailed stop, not the original one; a break-even exit at the price computed with the exit's fee; a restart
resumes at the saved stop, never lower; a trailed stop crossed between two loops fires from the market channel."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.cli import print_status
from bot.fees import taker_fee
from bot.position_manager import CloseReason, PositionState
from bot.report import build_report, format_text
from bot.stops import break_even_price
from tests.e2e.conftest import Harness
from tests.e2e.test_feeds import fsim, harness, settle, until  # noqa: F401 (fixtures)


def walk(sim, h, token, prices, advance=2.0):
    for p in prices:
        sim.set_price(token, p)
        h.loop(advance=advance)


@pytest.mark.parametrize("mode", ["limit_orders", "monitor"])
def test_a_run_up_then_a_fall_exits_at_the_trailed_stop(sim, tmp_path, mode):
    m = sim.create_market("Runs up?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    h = Harness(sim, tmp_path, trading__use_concurrent_orders=mode == "limit_orders",
                strategy__take_profit_pct="0.60", strategy__trailing_stop_pct="0.05")
    h.loop()
    pos = h.positions[0]
    first_sl = pos.sl_price
    h.no_new_trades()
    walk(sim, h, yes, ["0.55", "0.60", "0.65"])   # bids 0.54, 0.59, 0.64: the stop follows, 5% under
    assert pos.high_bid == D("0.64") and pos.sl_price == D("0.60") and pos.stop_why == "trailing"
    assert pos.metrics["sl_initial"] == str(first_sl) and pos.status == PositionState.OPEN
    walk(sim, h, yes, ["0.63", "0.62"])   # falling: the stop stays where it was
    assert pos.sl_price == D("0.60") and pos.high_bid == D("0.64")
    walk(sim, h, yes, ["0.61", "0.60", "0.59"])   # bid 0.60 reaches it
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    sold = [r for r in pos.orders if r.role.value == "exit" and r.filled > 0]
    assert sold and sold[-1].usdc / sold[-1].filled >= D("0.59")   # sold near the trailed stop, not at the first
    assert pos.realized_pnl > 0 and first_sl < D("0.50")
    assert D(str(h.venue_balances()["tokens"].get(yes, 0))) < D("0.01")
    report = build_report(h.bot.state)
    assert report["exit_configs"] == {"trailing 5%": {"closed": 1, "win_rate": 1.0, "total_pnl": float(
        round(pos.realized_pnl, 4)), "avg_pnl": float(round(pos.realized_pnl, 4)), "stops_raised": 1,
        "rungs_filled": 0}}
    assert "by exit configuration:\n  trailing 5%: 1 closed" in format_text(report)


def test_a_break_even_stop_exits_at_the_price_that_returns_the_cost(sim, tmp_path):
    m = sim.create_market("Breaks even?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    h = Harness(sim, tmp_path, trading__use_concurrent_orders=False, strategy__take_profit_pct="0.30",
                strategy__break_even_at_pct="0.06")
    h.loop()
    pos = h.positions[0]
    h.no_new_trades()
    rate, exponent = D(pos.metrics["fee_curve"][0]), int(pos.metrics["fee_curve"][1])
    expected = break_even_price(pos.shares, pos.entry_cost, rate, exponent, pos.tick_size)
    walk(sim, h, yes, ["0.53"])   # bid 0.52: not yet 6% over the entry 0.51
    assert pos.sl_price < pos.entry_price and pos.stop_why is None
    walk(sim, h, yes, ["0.56"])   # bid 0.55 >= 0.51 x 1.06
    assert pos.sl_price == expected and pos.stop_why == "break_even"
    walk(sim, h, yes, ["0.55", "0.54", "0.53", "0.52"])   # down a tick at a time: the bid meets the stop exactly
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert pos.exit_proceeds + taker_fee(pos.sold_shares, expected, rate, exponent) >= pos.sold_shares * expected - \
        D("0.000001")
    # what is left over (under the venue's minimum) is not sold; what was sold returned its share of the cost
    assert pos.exit_proceeds >= pos.entry_cost * pos.sold_shares / pos.entry_shares - D("0.01")


def test_a_restart_resumes_at_the_saved_stop_never_lower(sim, tmp_path, capsys):
    m = sim.create_market("Restarts?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    h = Harness(sim, tmp_path, strategy__take_profit_pct="0.60", strategy__trailing_stop_pct="0.05",
                strategy__trailing_activation_pct="0.10")
    h.loop()
    h.no_new_trades()
    walk(sim, h, yes, ["0.54"])   # bid 0.53: under the activation (0.51 x 1.10 = 0.561): the fixed stop holds
    pos = h.positions[0]
    assert pos.stop_why is None and pos.high_bid == D("0.53")
    walk(sim, h, yes, ["0.70"])   # bid 0.69: trailing, stop 0.65
    stop, high = h.positions[0].sl_price, h.positions[0].high_bid
    assert (stop, high) == (D("0.65"), D("0.69"))
    sim.set_price(yes, "0.68")    # while the bot is down the price falls, still above the stop
    h.restart()
    h.loop()
    pos = h.positions[0]
    assert pos.sl_price == stop and pos.high_bid == high and pos.status == PositionState.OPEN
    assert h.bot.config.strategy.trailing_stop_pct == D("0.05")
    print_status(h.bot.state, as_json=False)
    shown = capsys.readouterr().out
    assert " 0.65T " in shown
    assert (f"stops {pos.id}: trailing 5% from +10%; highest bid 0.69, stop 0.65 (raised "
            f"from {pos.metrics['sl_initial']}, trailing)") in shown


def test_a_trailed_stop_crossed_between_two_loops_fires_from_the_market_channel(fsim, harness):  # noqa: F811
    m = fsim.create_market("Pushes?", yes_price=0.5, volatility=0)
    token = m["token_ids"][0]
    h = harness(strategy__take_profit_pct="0.60", strategy__trailing_stop_pct="0.05")
    h.loop()
    settle(h, [token])
    h.no_new_trades()
    wakes = h.wakes
    fsim.set_price(token, "0.70")   # a new high between two loops: it wakes the loop, which raises the stop
    until(lambda: h.wakes > wakes, "the wake-up for the new high")
    h.bot.run_events()
    pos = h.positions[0]
    assert pos.sl_price == D("0.65") and pos.status == PositionState.OPEN
    wakes = h.wakes
    fsim.set_price(token, "0.62")   # through the trailed stop, between two loops
    until(lambda: h.wakes > wakes, "the wake-up for the crossed stop")
    h.bot.run_events()
    pos = h.positions[0]
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert pos.metrics["trigger_source"] == "push" and pos.realized_pnl > 0
