"""What ``status`` shows of an open position (bid, unrealized P&L after the taker fee, ticks to the stop and the
target, age) and of the account (cash, open value, realized P&L today and overall)."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from bot import lifecycle as lc
from bot.fees import taker_fee
from bot.orders import Role
from bot.position_manager import BotState, CloseReason, Position, PositionState
from bot.status import age_text, mark, record_bid, record_fee_curve, totals

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def opened(shares="20", cost="10", fee="0.0125") -> Position:
    pos = Position(token_id="1", status=PositionState.OPENING, opened_at=NOW - timedelta(hours=26, minutes=5),
                   updated_at=NOW, tick_size=D("0.01"))
    lc.apply(pos, lc.OrderIntent(Role.ENTRY, D("0.51"), D(cost)), NOW)
    lc.apply(pos, lc.OrderSigned("0xb", 1.0), NOW)
    lc.apply(pos, lc.EntryFilled("0xb", D(shares), D(cost), D(fee), D("0.5"), D("0.55"), D("0.45")), NOW)
    return pos


def test_unrealized_pnl_is_an_exit_at_the_bid_after_the_taker_fee_less_the_cost():
    pos = opened()
    record_fee_curve(pos, D("0.05"), 1)
    record_bid(pos, D("0.53"), NOW)
    m = mark(pos, NOW)
    fee = taker_fee(D(20), D("0.53"), D("0.05"), 1)
    assert m.bid == D("0.53") and m.exit_value == D(20) * D("0.53") - fee
    assert m.unrealized_pnl == D(20) * D("0.53") - fee - D("10.0125")   # the cost includes the buy's fee
    assert (m.ticks_to_sl, m.ticks_to_tp) == (D(8), D(2)) and age_text(m.age_hours) == "1d2h"
    # a bid read now (a stopped bot) wins over the recorded one
    assert mark(pos, NOW, D("0.44")).ticks_to_sl == D(-1)


def test_a_partly_sold_position_counts_only_the_cost_of_what_it_still_holds():
    pos = opened()
    lc.apply(pos, lc.TpResting("0xtp"), NOW)
    lc.apply(pos, lc.TpFilled("0xtp", D(5), D("2.75")), NOW)
    m = mark(pos, NOW, D("0.5"))
    assert m.unrealized_pnl == D(15) * D("0.5") - D("10.0125") * 15 / 20   # no fee curve recorded: none
    assert not m.fee_known


def test_totals_add_the_open_positions_and_the_pnl_closed_today():
    state = BotState()
    a, b, old = opened(), opened(), opened()
    for p in (a, b, old):
        state.add(p)
    for p, when, price in ((b, NOW - timedelta(hours=1), "6"), (old, NOW - timedelta(days=2), "11")):
        lc.apply(p, lc.ExitStarted(CloseReason.STOP_LOSS, D("0.3"), when), when)
        lc.apply(p, lc.SellFilled("0xs" + p.id, D(20), D(price)), when)
    state.counters["cash"] = {"usdc": "80.5", "at": NOW.isoformat()}
    marks = {a.id: mark(a, NOW, D("0.5"))}
    t = totals(state, marks, NOW)
    assert t.cash == D("80.5") and t.open_value == D(10) and t.unrealized_pnl == D("-0.0125")
    assert t.realized_today == b.realized_pnl and t.realized == b.realized_pnl + old.realized_pnl


def test_recording_a_bid_is_a_measurement_not_a_change():
    pos = opened()
    line = pos.json_line()
    record_bid(pos, D("0.52"), NOW)
    assert pos.json_line() == line and '"bid": "0.52"' in pos.json_line(fresh=True)


def test_hand_edited_measurements_never_break_status():
    pos = opened()
    pos.metrics["fee_curve"] = ["abc", "x"]
    pos.metrics["bid"] = "not a price"
    m = mark(pos, NOW)
    assert m.bid is None and m.unrealized_pnl is None
    m = mark(pos, NOW, D("0.5"))
    assert not m.fee_known and m.unrealized_pnl == D(10) - D("10.0125")
