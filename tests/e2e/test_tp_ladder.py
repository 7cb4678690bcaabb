"""The take-profit ladder (bot/ladder.py), end to end on bot/sim with the real SDK: a two-rung ladder whose first rung
fills, then the stop-loss sells only the rest (nothing sold twice), in both exit modes; a kill between two rung
fills and the restart (nothing lost, the stop not lowered); rungs under the market's minimum merged."""
from __future__ import annotations

import logging
from decimal import Decimal as D

import pytest

from bot.cli import print_status
from bot.clock import SimulatedClock
from bot.ladder import remaining
from bot.money import fmt
from bot.orders import Role
from bot.position_manager import CloseReason, ExitMode, PositionState
from bot.report import build_report, format_text
from bot.sim import SimExchange
from tests.e2e.conftest import Harness


def walk(sim, h, token, prices, advance=2.0):
    for p in prices:
        sim.set_price(token, p)
        h.loop(advance=advance)


def resting_sells(sim, h, token) -> list[dict]:
    return [o for o in sim.engine.open_orders(h.wallet["address"]) if o["side"] == "SELL" and o["asset_id"] == token]


def offered(order: dict) -> D:
    return D(str(order["original_size"])) - D(str(order["size_matched"]))


def assert_nothing_sold_twice(h, pos, usdc_before: D) -> None:
    """Every share bought was sold once: by the rungs and the exit together, as the venue's account shows; the
    P&L booked is the account's cash change."""
    assert abs(pos.sold_shares - pos.entry_shares) < D("0.01")
    assert h.held(pos.token_id) < D("0.01")
    cash = D(str(h.venue_balances()["usdc"])) - usdc_before
    assert abs(cash - pos.realized_pnl) <= D("0.000002"), (cash, pos.realized_pnl)


def opened(sim, tmp_path, question: str, mode: str = "limit_orders", ladder: str | None = "0.05:0.5/0.30:0.5",
           **settings) -> tuple[Harness, str, D]:
    """A bot that bought one position on a new market at 0.51 (its Yes token), with this ladder; no more entries.
    Returns (harness, token, the account's USDC before the buy)."""
    m = sim.create_market(question, yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path, trading__use_concurrent_orders=mode == "limit_orders",
                strategy__take_profit_ladder=ladder, **settings)
    usdc_before = D(str(h.venue_balances()["usdc"]))
    h.loop()
    h.no_new_trades()
    return h, m["token_ids"][0], usdc_before


@pytest.mark.parametrize("mode", ["limit_orders", "monitor"])
def test_rung_one_fills_then_the_stop_sells_only_the_rest(sim, tmp_path, mode, capsys):
    h, yes, usdc_before = opened(sim, tmp_path, "Climbs a rung?", mode)
    pos = h.positions[0]
    assert pos.exit_mode == ExitMode(mode)
    first, second = pos.tp_ladder
    assert (first.price, second.price) == (D("0.54"), D("0.67"))   # 0.51 x 1.05 and x 1.30, rounded up to the tick
    assert first.shares + second.shares == D(str(int(pos.shares * 100))) / 100
    assert pos.tp_price == second.price   # the last rung: every stop stays under it
    if mode == "limit_orders":
        orders = resting_sells(sim, h, yes)
        # each rung rests as its own GTC sell; together they are what the account holds, never more
        assert sorted((D(str(o["price"])), offered(o)) for o in orders) == [(first.price, first.shares),
                                                                         (second.price, second.shares)]
        assert sum(offered(o) for o in orders) <= h.held(yes)
        assert len(pos.tp_order_ids) == 2
    else:
        assert not resting_sells(sim, h, yes)
    walk(sim, h, yes, ["0.56"])   # bid 0.55: rung 1 (0.54) fills, or is sold, rung 2 does not
    assert pos.status == PositionState.OPEN, (pos.status, pos.close_reason)
    assert abs(pos.shares - second.shares) < D("0.01") and abs(h.held(yes) - pos.shares) < D("0.01")
    assert pos.metrics["rungs_filled"] == [0]
    assert pos.close_reason is None and pos.exit_rung is None
    print_status(h.bot.state, as_json=False)
    shown = capsys.readouterr().out
    assert f"tp ladder {pos.id}: 0.54 x{fmt(first.shares)} sold | 0.67 x{fmt(second.shares)} " in shown
    assert " 0.67L " in shown   # the TP column shows the next rung
    walk(sim, h, yes, ["0.50", "0.46", "0.44"])   # bid 0.43: through the stop (0.45)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert not resting_sells(sim, h, yes)
    exits = [r for r in pos.orders if r.role == Role.EXIT and r.filled > 0]
    stop_sale = [r for r in exits if r.rung is None]
    assert len(stop_sale) == 1 and abs(stop_sale[0].filled - second.shares) < D("0.01")   # only the rest
    rung_sales = [r for r in pos.orders if r.rung == 0 and r.filled > 0]
    assert abs(sum(r.filled for r in rung_sales) - first.shares) < D("0.01")
    assert all(r.role == (Role.TP if mode == "limit_orders" else Role.EXIT) for r in rung_sales)
    assert_nothing_sold_twice(h, pos, usdc_before)
    report = build_report(h.bot.state)
    config = report["exit_configs"]["TP ladder +5%/+30%"]
    assert config["closed"] == 1 and config["rungs_filled"] == 1
    assert "TP ladder +5%/+30%: 1 closed" in format_text(report)


@pytest.mark.parametrize("mode", ["limit_orders", "monitor"])
def test_both_rungs_take_the_whole_position_as_a_take_profit(sim, tmp_path, mode):
    h, yes, usdc_before = opened(sim, tmp_path, "Climbs both?", mode)
    pos = h.positions[0]
    walk(sim, h, yes, ["0.56", "0.62", "0.70"], advance=31)   # bid 0.55 then 0.69: one rung, then the other
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert pos.exit_price is not None and pos.exit_price > D("0.54")
    assert_nothing_sold_twice(h, pos, usdc_before)
    assert pos.realized_pnl > 0


def test_a_jump_through_both_rungs_sells_both_at_once_when_monitored(sim, tmp_path):
    h, yes, usdc_before = opened(sim, tmp_path, "Jumps?", "monitor", "0.05:0.5/0.15:0.5")
    pos = h.positions[0]
    walk(sim, h, yes, ["0.66"])   # bid 0.65 is over both rungs (0.54, 0.59): one sale of everything
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert len([r for r in pos.orders if r.role == Role.EXIT and r.filled > 0]) == 1
    assert_nothing_sold_twice(h, pos, usdc_before)


def test_a_kill_between_two_rung_fills_loses_nothing_and_keeps_the_stop(sim, tmp_path):
    h, yes, usdc_before = opened(sim, tmp_path, "Killed between rungs?", ladder="0.05:0.34/0.15:0.33/0.40:0.33",
                                 capital__max_trade_size="20", strategy__trailing_stop_pct="0.05")
    pos = h.positions[0]
    assert [r.price for r in pos.tp_ladder] == [D("0.54"), D("0.59"), D("0.72")]
    assert len(resting_sells(sim, h, yes)) == 3
    walk(sim, h, yes, ["0.56"])   # bid 0.55: rung 1 fills; the stop trails 5% under the bid
    pos = h.positions[0]
    stop = pos.sl_price
    assert pos.metrics["rungs_filled"] == [0] and stop == D("0.52") and pos.stop_why == "trailing"
    # the bot is killed here (nothing after its last save is known); meanwhile rung 2 fills on the venue
    sim.set_price(yes, "0.61")
    assert len(resting_sells(sim, h, yes)) == 1
    h.clock.advance(30)
    h.restart()
    h.loop()
    pos = h.positions[0]
    assert pos.status == PositionState.OPEN
    assert pos.sl_price >= stop and pos.high_bid is not None and pos.high_bid >= D("0.55")   # never lowered
    assert sorted(pos.metrics["rungs_filled"]) == [0, 1]
    assert abs(pos.shares - pos.tp_ladder[2].shares) < D("0.01") and abs(h.held(yes) - pos.shares) < D("0.01")
    [third] = resting_sells(sim, h, yes)
    assert third["id"] in pos.tp_order_ids and offered(third) == pos.tp_ladder[2].shares
    assert sum(remaining(r) for r in pos.live_tps) <= h.held(yes)
    # the stop trails the bid 0.60 up to 0.57, over the rungs sold (0.54): the file still loads at the next start
    walk(sim, h, yes, ["0.61"])
    assert h.positions[0].sl_price == D("0.57") > h.positions[0].tp_ladder[0].price
    h.restart()
    h.loop()
    pos = h.positions[0]
    assert pos.sl_price == D("0.57") and pos.status == PositionState.OPEN and len(pos.live_tps) == 1
    walk(sim, h, yes, ["0.58", "0.56"])   # under the trailed stop: the rest is sold, rung 3 cancelled first
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert not resting_sells(sim, h, yes)
    assert_nothing_sold_twice(h, pos, usdc_before)


def test_rungs_under_the_minimum_merge_and_a_small_position_gets_one_tp(sim, tmp_path, caplog, capsys):
    # $4 at 0.51: 7.84 shares; a half is under the minimum of 5: one TP, at the second rung's price
    with caplog.at_level(logging.WARNING, logger="bot"):
        h, yes, _ = opened(sim, tmp_path, "Too small for rungs?", capital__max_trade_size="4")
    pos = h.positions[0]
    assert len(pos.tp_ladder) == 1 and pos.tp_ladder[0].price == D("0.67")
    assert pos.tp_ladder[0].shares == D("7.84") and pos.tp_price == D("0.67")
    assert any("too few for two rungs" in note for note in pos.ladder_notes)
    assert "merged into the next" in caplog.text
    [order] = resting_sells(sim, h, yes)
    assert D(str(order["price"])) == D("0.67") and offered(order) == D("7.84")
    print_status(h.bot.state, as_json=False)
    assert "too few for two rungs" in capsys.readouterr().out


def test_a_tp_refused_when_placed_again_leaves_nothing_resting_for_the_monitored_position(sim, tmp_path):
    """Regression: a single TP that went away and was refused when placed again fell back to monitoring, and the same
    loop placed it again: a monitored position with a TP on the book that nobody checked."""
    h, yes, _ = opened(sim, tmp_path, "TP refused?", ladder=None)
    pos = h.positions[0]
    assert not pos.tp_ladder
    h.venue.cancel(pos.tp_order_ids[0])
    sim.refuse_orders(next=1, message="invalid order payload")
    h.loop(advance=31)
    assert pos.exit_mode == ExitMode.MONITOR and pos.fallback_reason
    assert not resting_sells(sim, h, yes) and not pos.live_tps
    walk(sim, h, yes, ["0.58"])   # monitored: the TP (0.57) is sold at the bid
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT


def test_a_refused_rung_cancels_the_others_and_the_position_is_monitored(sim, tmp_path):
    h, yes, _ = opened(sim, tmp_path, "Rung refused?")
    pos = h.positions[0]
    assert len(resting_sells(sim, h, yes)) == 2
    # rung 2's order goes away (cancelled outside the bot); placed again, it is refused: the position is monitored
    # from now on, without a rung left on the book
    h.venue.cancel(pos.tp_order_ids[1])
    sim.refuse_orders(next=1, message="invalid order payload")
    h.loop(advance=31)   # the open-orders check finds it gone and places it again: refused
    pos = h.positions[0]
    assert pos.exit_mode == ExitMode.MONITOR and pos.fallback_reason
    assert not resting_sells(sim, h, yes) and not pos.live_tps
    walk(sim, h, yes, ["0.56"])   # monitored now: rung 1 is sold when the bid reaches it
    assert pos.status == PositionState.OPEN and pos.metrics["rungs_filled"] == [0]
    assert abs(h.held(yes) - pos.shares) < D("0.01")


@pytest.mark.parametrize("ladder", [None, "0.05:0.5/0.30:0.5"], ids=["single_tp", "ladder"])
def test_an_exit_that_starts_while_a_tps_answer_is_lost_waits_for_its_look_up(sim, tmp_path, caplog, ladder):
    """Regression (found by the property test): a TP placed again had its answer lost, and the stop-loss was crossed
    in the same loop; the exit tried to sell while the TP's outcome was still unknown (an order still pending: an
    unexpected error every loop). The exit now waits for the TP's look-up, then cancels it and sells."""
    h, yes, usdc_before = opened(sim, tmp_path, "Lost TP answer?", ladder=ladder)
    pos = h.positions[0]
    for order_id in pos.tp_order_ids:   # the TPs go away outside the bot: the next check places them again...
        h.venue.cancel(order_id)
    sim.set_price(yes, "0.40")             # ...while the bid falls through the stop (0.45)
    sim.set_faults(1.0, statuses=[500], paths=["/order"], after=True)   # ...and the placement's answer is lost
    with caplog.at_level(logging.ERROR, logger="bot"):
        h.loop(advance=31)
        sim.set_faults()
        assert pos.status == PositionState.EXITING and pos.pending is not None
        h.loop(n=3, advance=5)
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert not resting_sells(sim, h, yes)
    assert_nothing_sold_twice(h, pos, usdc_before)


def test_converting_a_ladder_to_monitoring_cancels_its_rungs_in_one_request_and_keeps_the_ladder(sim, tmp_path):
    h, yes, usdc_before = opened(sim, tmp_path, "Converted?")
    pos = h.positions[0]
    assert len(pos.live_tps) == 2
    sim.reset_request_counts()
    lines = h.bot.manage.convert_to_monitor(h.bot.now())
    assert "now monitored" in lines[0] and pos.exit_mode == ExitMode.MONITOR and not pos.live_tps
    counts = sim.request_counts()["by_endpoint"]
    assert counts.get("DELETE /orders") == 1 and not counts.get("DELETE /order")   # both rungs in one request
    assert not resting_sells(sim, h, yes)
    walk(sim, h, yes, ["0.56"])   # monitored now: rung 1 (0.54) is sold at the bid, the rest kept
    assert pos.status == PositionState.OPEN and pos.metrics["rungs_filled"] == [0]
    walk(sim, h, yes, ["0.68"])   # and the last rung (0.67)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert_nothing_sold_twice(h, pos, usdc_before)


@pytest.mark.parametrize("mode", ["limit_orders", "monitor"])
def test_a_dry_run_ladder_sells_on_paper_as_live(sim, tmp_path, mode):
    m = sim.create_market("Paper rungs?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    h = Harness(sim, tmp_path, dry_run=True, trading__use_concurrent_orders=mode == "limit_orders",
                strategy__take_profit_ladder="0.05:0.5/0.30:0.5")
    h.loop()
    h.no_new_trades()
    pos = h.positions[0]
    assert pos.venue == "paper" and len(pos.tp_ladder) == 2
    assert len(h.venue.open_orders()) == (2 if mode == "limit_orders" else 0)
    walk(sim, h, yes, ["0.56"], advance=31)
    assert pos.status == PositionState.OPEN and pos.metrics["rungs_filled"] == [0]
    walk(sim, h, yes, ["0.44"], advance=31)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert abs(pos.sold_shares - pos.entry_shares) < D("0.01") and h.venue.open_orders() == []
    assert h.held(yes) < D("0.01")
    assert not resting_sells(sim, h, yes)   # nothing of a dry run reaches the venue's book


def test_a_stop_loss_with_every_rung_resting_cancels_them_in_one_request(sim, tmp_path):
    h, yes, usdc_before = opened(sim, tmp_path, "Straight down?", ladder="0.05:0.3/0.10:0.3/0.30:0.4")
    pos = h.positions[0]
    assert len(pos.live_tps) == 3
    sim.reset_request_counts()
    walk(sim, h, yes, ["0.44"])   # bid 0.43: through the stop with three rungs resting
    counts = sim.request_counts()["by_endpoint"]
    assert counts.get("DELETE /orders") == 1 and not counts.get("DELETE /order")
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert not resting_sells(sim, h, yes)
    assert_nothing_sold_twice(h, pos, usdc_before)


@pytest.mark.parametrize("ladder", [None, "0.05:0.5/0.30:0.5"], ids=["single_tp", "ladder"])
def test_a_tp_that_crosses_at_once_as_a_ghost_fill_waits_in_settling_then_rests_again(tmp_path, caplog, ladder):
    """Regression (found by the property test): a TP placed while the bid stood over it took everything at once as a
    taker, in a match the venue later FAILED; the position waited in ``settling`` with its TP record still "live",
    and the next loop checked that TP in ``settling`` (an unexpected error each loop until the trades failed)."""
    with SimExchange(seed=3, clock=SimulatedClock(start=1_800_000_000.0)) as sim:   # (the ghost fails on its clock)
        crosses_at_once(sim, tmp_path, caplog, ladder)


def crosses_at_once(sim, tmp_path, caplog, ladder) -> None:
    h, yes, usdc_before = opened(sim, tmp_path, "Crosses at once?", ladder=ladder)
    pos = h.positions[0]
    tps = pos.tp_order_ids
    for order_id in tps:   # the TPs go away outside the bot...
        h.venue.cancel(order_id)
    sim.set_price(yes, "0.70")   # ...the bid rises over every one of them...
    sim.ghost_fills(len(tps), fail_after_s=60)   # ...and what they take at once when placed again never settles
    with caplog.at_level(logging.ERROR, logger="bot"):
        h.loop(advance=31)
        assert pos.status == PositionState.SETTLING and not pos.live_tps
        h.loop(n=3, advance=5)   # the trades are still MATCHED: it waits, checking nothing it no longer has
        assert pos.status == PositionState.SETTLING
        h.loop(n=4, advance=31)   # they FAILED: the shares are back, and so are the TPs (this time they settle)
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert pos.metrics.get("failed_fills")
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert_nothing_sold_twice(h, pos, usdc_before)
