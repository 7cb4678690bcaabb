"""The lifecycle table: every event in every state either has a row or is refused, and the rows do the
bookkeeping on order records (quantities are derived from them)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from bot import lifecycle as lc
from bot.orders import RecordState, Role
from bot.position_manager import CloseReason, ExitMode, Position, PositionState, Rung

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
S = PositionState


def opening() -> Position:
    pos = Position(token_id="1", condition_id="0xc", status=S.OPENING, exit_mode=ExitMode.LIMIT_ORDERS,
                   opened_at=NOW, updated_at=NOW)
    lc.apply(pos, lc.OrderIntent(Role.ENTRY, D("0.53"), D("10")), NOW)
    lc.apply(pos, lc.OrderSigned("0xbuy", NOW.timestamp()), NOW)
    return pos


def opened() -> Position:
    pos = opening()
    lc.apply(pos, lc.EntryFilled("0xbuy", D("19.58"), D("10"), D("0.0125"), D("0.51"), D("0.57"), D("0.45")), NOW)
    return pos


EXAMPLES: dict[type, object] = {
    lc.OrderIntent: lc.OrderIntent(Role.EXIT, D("0.4"), D("5")),
    lc.OrderSigned: lc.OrderSigned("0xid", 1.0),
    lc.OrderNotPlaced: lc.OrderNotPlaced("refused"),
    lc.EntryFilled: lc.EntryFilled("0xb", D(5), D("2.5"), D(0), D("0.5"), D("0.55"), D("0.45")),
    lc.EntryUnfilled: lc.EntryUnfilled("refused"),
    lc.TpResting: lc.TpResting("0xtp"),
    lc.TpFilled: lc.TpFilled("0xtp", D(1), D("0.57")),
    lc.FellBack: lc.FellBack("refused"),
    lc.ExitStarted: lc.ExitStarted(CloseReason.STOP_LOSS, D("0.44"), NOW),
    lc.ExitReanchored: lc.ExitReanchored(CloseReason.STOP_LOSS, D("0.3")),
    lc.ExitBackoff: lc.ExitBackoff("rejected", 1.0),
    lc.BalanceShort: lc.BalanceShort(),
    lc.SellFilled: lc.SellFilled("0xs", D(1), D("0.44")),
    lc.NothingLeft: lc.NothingLeft(),
    lc.DustHeld: lc.DustHeld(),
    lc.BidSeen: lc.BidSeen(D("0.4")),
    lc.StopRaised: lc.StopRaised(D("0.6"), D("0.52"), "trailing"),
    lc.RungFilled: lc.RungFilled(0),
    lc.MarketResolved: lc.MarketResolved(D(1)),
    lc.AttentionNeeded: lc.AttentionNeeded("account holds 0 shares"),
    lc.AgreesAgain: lc.AgreesAgain(),
    lc.ClosedByHand: lc.ClosedByHand(),
    lc.TpChecked: lc.TpChecked(NOW),
    lc.CancelRaced: lc.CancelRaced(),
    lc.ExitPricesSet: lc.ExitPricesSet(D("0.57"), D("0.45")),
    lc.VenueRecorded: lc.VenueRecorded("paper", None),
    lc.FillsChecked: lc.FillsChecked("0xbuy", D("19.58"), D("10"), D("0.0125"), D(0), True),
    lc.SharesLeft: lc.SharesLeft(D(1), "sold by hand"),
}


def test_every_event_has_an_example():
    assert set(EXAMPLES) == {t for _, t in lc.TABLE}


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("event_type", list(EXAMPLES))
def test_an_event_without_a_row_is_refused_and_changes_nothing(state, event_type):
    pos = opened()
    if state == S.OPENING:
        pos = opening()
    pos.status = state   # the test sets up the state directly; the bot only ever moves it through apply
    before = pos.model_dump()
    event = EXAMPLES[event_type]
    if (state, event_type) in lc.TABLE:
        return
    with pytest.raises(lc.IllegalTransition, match=f"{event_type.__name__} is not allowed in state {state.value}"):
        lc.apply(pos, event, NOW)
    assert pos.model_dump() == before


def test_closed_is_final():
    # (only where it lives may still be written on a closed position of an older file)
    assert [key for key in lc.TABLE if key[0] == S.CLOSED] == [(S.CLOSED, lc.VenueRecorded)]
    assert lc.TABLE[(S.CLOSED, lc.VenueRecorded)].next is None


def test_an_entry_is_recorded_before_it_is_sent_and_owned_from_its_fill():
    pos = opening()
    assert pos.pending is not None and pos.pending.state == RecordState.SENT and pos.shares == 0
    lc.apply(pos, lc.EntryFilled("0xbuy", D("19.58"), D("10"), D("0.0125"), D("0.51"), D("0.57"), D("0.45")), NOW)
    # CLOB V2: every share bought is held, the fee is paid in USDC on top of the cost
    assert pos.status == S.OPEN and pos.shares == D("19.58") and pos.entry_cost == D("10.0125") and pos.pending is None
    assert pos.entry_order_id == "0xbuy" and pos.fees_paid == D("0.0125") and pos.tp_price == D("0.57")


def test_a_tp_filling_in_steps_closes_as_take_profit_with_its_proceeds():
    pos = opened()
    lc.apply(pos, lc.OrderIntent(Role.TP, D("0.57"), D("19.58")), NOW)
    lc.apply(pos, lc.OrderSigned("0xtp", NOW.timestamp()), NOW)
    lc.apply(pos, lc.TpResting("0xtp"), NOW)
    assert pos.tp_order_id == "0xtp"
    lc.apply(pos, lc.TpFilled("0xtp", D(8), D("4.56")), NOW)
    lc.apply(pos, lc.TpFilled("0xtp", D(5), D("2.85")), NOW)   # an older answer never takes back fills
    assert pos.status == S.OPEN and pos.shares == D("11.58") and pos.tp_filled_shares == D(8)
    lc.apply(pos, lc.TpFilled("0xtp", D("19.58"), D("11.1606"), final=True), NOW + timedelta(minutes=1))
    assert pos.status == S.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT and pos.tp_order_id is None
    assert pos.exit_proceeds == D("11.1606") and pos.realized_pnl == D("1.1481") and pos.exit_price == D("0.57")


def test_a_stop_loss_exit_sells_the_rest_net_of_its_fee_and_closes_with_its_reason():
    pos = opened()
    lc.apply(pos, lc.ExitStarted(CloseReason.STOP_LOSS, D("0.44"), NOW), NOW)
    assert pos.status == S.EXITING and pos.trigger_bid == D("0.44")
    lc.apply(pos, lc.OrderIntent(Role.EXIT, D("0.39"), D("19.58")), NOW)
    lc.apply(pos, lc.OrderSigned("0xsell", NOW.timestamp()), NOW)
    lc.apply(pos, lc.SellFilled("0xsell", D(10), D("4.4"), D("0.01")), NOW)
    assert pos.status == S.EXITING and pos.shares == D("9.58")
    lc.apply(pos, lc.SellFilled("0xsell2", D("9.58"), D("4.2152"), D("0.01")), NOW)
    assert pos.status == S.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert pos.exit_proceeds == D("8.5952") and pos.realized_pnl == D("-1.4173") and pos.exit_order_ids == ["0xsell",
                                                                                                         "0xsell2"]


def test_dust_is_held_to_resolution_and_its_payout_booked():
    pos = opened()
    lc.apply(pos, lc.ExitStarted(CloseReason.STOP_LOSS, D("0.44"), NOW), NOW)
    lc.apply(pos, lc.SellFilled("0xsell", D("18"), D("7.92")), NOW)
    lc.apply(pos, lc.DustHeld(), NOW)
    assert pos.status == S.HELD and pos.is_active and pos.shares == D("1.58")
    lc.apply(pos, lc.MarketResolved(D(1)), NOW)
    assert pos.status == S.CLOSED and pos.close_reason == CloseReason.STOP_LOSS and pos.exit_proceeds == D("9.50")


def test_attention_then_agreeing_again_resumes_where_it_was():
    pos = opened()
    lc.apply(pos, lc.ExitStarted(CloseReason.TIME_EXIT, D("0.5"), NOW), NOW)
    lc.apply(pos, lc.AttentionNeeded("short"), NOW)
    assert pos.status == S.NEEDS_ATTENTION and pos.attention_reason == "short"
    lc.apply(pos, lc.AgreesAgain(), NOW)
    assert pos.status == S.EXITING and pos.attention_reason is None
    lc.apply(pos, lc.AttentionNeeded("gone"), NOW)
    lc.apply(pos, lc.ClosedByHand(), NOW)
    assert pos.status == S.CLOSED and pos.close_reason == CloseReason.MANUAL


def test_an_older_file_loads_into_records_with_the_same_quantities():
    old = {"token_id": "1", "shares": "11.58", "entry_shares": "19.58", "entry_cost": "10", "entry_price": "0.51",
           "sold_shares": "8", "exit_proceeds": "4.56", "tp_filled_shares": "8", "tp_order_id": "0xtp",
           "tp_price": "0.57", "sl_price": "0.45", "entry_order_id": "0xbuy", "exit_mode": "limit_orders"}
    pos = Position.from_dict(old)
    assert (pos.shares, pos.entry_shares, pos.entry_cost, pos.sold_shares, pos.exit_proceeds) == \
        (D("11.58"), D("19.58"), D(10), D(8), D("4.56"))
    assert pos.tp_order_id == "0xtp" and pos.entry_order_id == "0xbuy"
    assert [r.role for r in pos.orders] == [Role.ENTRY, Role.TP]
    assert Position.from_dict(pos.to_dict()) == pos


def test_an_exit_records_what_triggered_it_and_the_delay_to_its_first_sell():
    pos = opened()
    lc.apply(pos, lc.ExitStarted(CloseReason.STOP_LOSS, D("0.44"), NOW, "push", 100.0), NOW)
    lc.apply(pos, lc.OrderIntent(Role.EXIT, D("0.40"), D("19.58")), NOW)
    lc.apply(pos, lc.OrderSigned("0xsell", 100.0125), NOW)
    assert pos.metrics["trigger_source"] == "push" and pos.metrics["trigger_delay_ms"] == 12.5
    lc.apply(pos, lc.OrderNotPlaced("refused"), NOW)
    lc.apply(pos, lc.OrderIntent(Role.EXIT, D("0.40"), D("19.58")), NOW)
    lc.apply(pos, lc.OrderSigned("0xsell2", 105.0), NOW)
    assert pos.metrics["trigger_delay_ms"] == 12.5, "measured to the first sell only"
    plain = opened()
    lc.apply(plain, lc.ExitStarted(CloseReason.TIME_EXIT, D("0.5"), NOW), NOW)
    assert "trigger_source" not in plain.metrics


def test_a_tp_fill_records_how_it_was_learned_unless_an_exit_already_says():
    pos = opened()
    lc.apply(pos, lc.TpResting("0xtp"), NOW)
    lc.apply(pos, lc.TpFilled("0xtp", D("5"), D("2.85"), source="push"), NOW)
    assert pos.metrics["trigger_source"] == "push"
    lc.apply(pos, lc.ExitStarted(CloseReason.STOP_LOSS, D("0.44"), NOW, "poll", 10.0), NOW)
    lc.apply(pos, lc.TpFilled("0xtp", D("6"), D("3.42"), final=True, source="push"), NOW)
    assert pos.metrics["trigger_source"] == "poll", "the exit's own trigger"


# -- a match is not a settlement (FACTS.md Part 0, 0.2) ----------------------------------------------------

def exiting_with_unconfirmed_sale() -> Position:
    pos = opened()
    lc.apply(pos, lc.ExitStarted(CloseReason.STOP_LOSS, D("0.44"), NOW), NOW)
    lc.apply(pos, lc.OrderIntent(Role.EXIT, D("0.39"), D("19.58")), NOW)
    lc.apply(pos, lc.OrderSigned("0xsell", NOW.timestamp()), NOW)
    lc.apply(pos, lc.SellFilled("0xsell", D("19.58"), D("8.6152"), D("0.05"), confirmed=False), NOW)
    return pos


def test_a_close_waits_for_the_venue_to_settle_its_trades():
    pos = exiting_with_unconfirmed_sale()
    assert pos.status == S.SETTLING and pos.close_reason == CloseReason.STOP_LOSS and pos.realized_pnl is None
    lc.apply(pos, lc.FillsChecked("0xsell", D("19.58"), D("8.6152"), D("0.04999"), D(0), True), NOW)
    # the trades' own numbers are booked (the venue floors each trade's fee)
    assert pos.status == S.CLOSED and pos.fees_paid == D("0.06249")
    assert pos.realized_pnl == D("8.6152") - D("0.04999") - D("10.0125")


def test_an_exit_sale_whose_trades_failed_is_sold_again():
    pos = exiting_with_unconfirmed_sale()
    lc.apply(pos, lc.FillsChecked("0xsell", D(0), D(0), D(0), D("19.58"), True), NOW)
    assert pos.status == S.EXITING and pos.shares == D("19.58") and pos.close_reason == CloseReason.STOP_LOSS
    assert pos.record("0xsell").failed == D("19.58") and pos.metrics["failed_fills"] == 1


def test_a_tp_fill_that_failed_puts_the_shares_back_under_protection():
    pos = opened()
    lc.apply(pos, lc.OrderIntent(Role.TP, D("0.57"), D("19.58")), NOW)
    lc.apply(pos, lc.OrderSigned("0xtp", NOW.timestamp()), NOW)
    lc.apply(pos, lc.TpResting("0xtp"), NOW)
    lc.apply(pos, lc.TpFilled("0xtp", D("19.58"), D("11.1606"), final=True, confirmed=False), NOW)
    assert pos.status == S.SETTLING and pos.close_reason == CloseReason.TAKE_PROFIT
    lc.apply(pos, lc.FillsChecked("0xtp", D(0), D(0), D(0), D("19.58"), True), NOW)
    assert pos.status == S.OPEN and pos.close_reason is None and pos.shares == D("19.58") and pos.tp_order_id is None
    # the venue may still report the failed shares in the order's size_matched: never booked again
    lc.apply(pos, lc.TpFilled("0xtp", D(0), D(0), final=True, failed=D("19.58")), NOW)
    assert pos.shares == D("19.58")


def test_a_buy_that_never_settled_closes_as_unfilled_with_nothing_booked():
    pos = opening()
    lc.apply(pos, lc.EntryFilled("0xbuy", D(10), D(5), D("0.0125"), D("0.5"), D("0.55"), D("0.45"), confirmed=False),
             NOW)
    assert pos.status == S.OPEN and pos.shares == 10
    lc.apply(pos, lc.FillsChecked("0xbuy", D(0), D(0), D(0), D(10), True), NOW)
    assert pos.status == S.CLOSED and pos.close_reason == CloseReason.ENTRY_UNFILLED and pos.realized_pnl == 0


def test_trades_not_visible_yet_neither_confirm_nor_take_back_a_fill():
    pos = exiting_with_unconfirmed_sale()
    lc.apply(pos, lc.FillsChecked("0xsell", D(0), D(0), D(0), D(0), True), NOW)   # no trade seen yet
    assert pos.status == S.SETTLING and pos.shares == 0 and not pos.record("0xsell").confirmed


def test_fills_beyond_what_was_bought_need_a_person():
    pos = exiting_with_unconfirmed_sale()
    lc.apply(pos, lc.FillsChecked("0xbuy", D(5), D("2.5"), D(0), D("14.58"), True), NOW)
    assert pos.status == S.NEEDS_ATTENTION and "beyond what the account held" in pos.attention_reason


def test_shares_that_left_outside_the_bot_are_booked_at_cost():
    pos = opened()
    lc.apply(pos, lc.SharesLeft(D("9.79"), "sold by hand"), NOW)
    assert pos.status == S.OPEN and pos.shares == D("9.79")
    lc.apply(pos, lc.SharesLeft(D("9.79"), "sold by hand"), NOW)
    assert pos.status == S.CLOSED and pos.close_reason == CloseReason.SOLD_OUTSIDE
    assert pos.realized_pnl == 0   # neither profit nor loss: what they brought went to the account


def test_an_older_file_whose_buy_fee_was_taken_in_shares_loads_with_the_same_numbers():
    rec = {"role": "entry", "order_id": "0xb", "state": "done", "filled": "9.98", "usdc": "5", "fee": "0.01"}
    pos = Position.from_dict({"token_id": "1", "entry_price": "0.5", "orders": [rec], "entry_cost": "5",
                              "shares": "9.98"})
    assert pos.entry_cost == D(5) and pos.orders[0].fee_in == "shares"


def laddered() -> Position:
    """19.58 shares bought at 0.51, in two rungs: 9.79 at 0.54, 9.79 at 0.67."""
    pos = opening()
    rungs = (Rung(pct=D("0.05"), price=D("0.54"), shares=D("9.79")), Rung(pct=D("0.30"), price=D("0.67"),
                                                                         shares=D("9.79")))
    lc.apply(pos, lc.EntryFilled("0xbuy", D("19.58"), D("10"), D(0), D("0.51"), D("0.54"), D("0.45"), True, rungs,
                                 ("a note",)), NOW)
    return pos


def test_a_monitored_rung_sale_returns_the_position_to_open_once_the_rung_is_sold():
    pos = laddered()
    assert pos.tp_ladder[1].price == D("0.67") and pos.ladder_notes == ["a note"]
    lc.apply(pos, lc.ExitStarted(CloseReason.TAKE_PROFIT, D("0.55"), NOW, rung=0), NOW)
    assert (pos.status, pos.exit_rung) == (S.EXITING, 0)
    lc.apply(pos, lc.OrderIntent(Role.EXIT, D("0.49"), D("9.79"), rung=0), NOW)
    lc.apply(pos, lc.SellFilled("0xs", D("5"), D("2.75")), NOW)
    lc.apply(pos, lc.RungFilled(0), NOW)   # half of it: still exiting
    assert pos.status == S.EXITING and pos.orders[-1].rung == 0
    lc.apply(pos, lc.OrderIntent(Role.EXIT, D("0.49"), D("4.79"), rung=0), NOW)
    lc.apply(pos, lc.SellFilled("0xs2", D("4.79"), D("2.6345")), NOW)
    lc.apply(pos, lc.RungFilled(0), NOW)
    assert (pos.status, pos.close_reason, pos.exit_rung, pos.trigger_bid) == (S.OPEN, None, None, None)
    assert pos.shares == D("9.79") and pos.metrics["rungs_filled"] == [0]


def test_a_rung_sale_that_meets_the_stop_sells_everything():
    pos = laddered()
    lc.apply(pos, lc.ExitStarted(CloseReason.TAKE_PROFIT, D("0.55"), NOW, rung=0), NOW)
    lc.apply(pos, lc.ExitReanchored(CloseReason.TAKE_PROFIT, D("0.50")), NOW)   # another step down: still the rung
    assert pos.exit_rung == 0
    lc.apply(pos, lc.ExitReanchored(CloseReason.STOP_LOSS, D("0.44")), NOW)
    assert (pos.exit_rung, pos.close_reason) == (None, CloseReason.STOP_LOSS)
    lc.apply(pos, lc.RungFilled(0), NOW)   # (a resting rung's news during a full exit moves nothing)
    assert pos.status == S.EXITING
