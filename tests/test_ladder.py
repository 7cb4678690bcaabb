"""The take-profit ladder's arithmetic (bot/ladder.py): rung prices and sizes, merges under the market's minimum,
progress from the order records (a FAILED fill makes a rung due again), the rung orders to rest (never more than
the position holds) and the monitored sale's size (no remainder under the minimum)."""
from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import load_bot_config as load_config
from bot.errors import ConfigError
from bot.ladder import (
    ladder_text,
    next_rung,
    next_target,
    plan_ladder,
    reached_rung,
    remaining,
    rung_exit_done,
    rung_exit_size,
    rung_left,
    rungs_to_place,
    tps_missing,
)
from bot.money import round_shares
from bot.orders import OrderRecord, RecordState, Role
from bot.position_manager import ExitMode, Position, PositionState, Rung

TICK, MIN = D("0.01"), D(5)
HALVES = [(D("0.05"), D("0.5")), (D("0.12"), D("0.5"))]


def test_rungs_are_on_the_tick_and_add_up_to_the_position():
    plan = plan_ladder(HALVES, D("0.51"), D("19.607843"), TICK, MIN)
    assert [(r.price, r.shares) for r in plan.rungs] == [(D("0.54"), D("9.80")), (D("0.58"), D("9.80"))]
    assert plan.notes == []
    thirds = [(D("0.03"), D("0.333333")), (D("0.06"), D("0.333333")), (D("0.10"), D("0.333334"))]
    plan = plan_ladder(thirds, D("0.40"), D("30.5"), TICK, MIN)
    assert [r.shares for r in plan.rungs] == [D("10.16"), D("10.16"), D("10.18")]   # the last takes the rest
    assert [r.price for r in plan.rungs] == [D("0.42"), D("0.43"), D("0.44")]


def test_a_rung_under_the_minimum_merges_into_the_next_and_too_small_gets_one_tp():
    spec = [(D("0.05"), D("0.2")), (D("0.10"), D("0.4")), (D("0.20"), D("0.4"))]
    plan = plan_ladder(spec, D("0.50"), D("20"), TICK, MIN)   # 4 + 8 + 8: the first is under 5
    assert [(r.price, r.shares) for r in plan.rungs] == [(D("0.55"), D("12.00")), (D("0.60"), D("8.00"))]
    assert "merged into the next" in plan.notes[0]
    plan = plan_ladder([(D("0.05"), D("0.8")), (D("0.10"), D("0.2"))], D("0.50"), D("20"), TICK, MIN)   # 16 + 4
    assert [(r.price, r.shares) for r in plan.rungs] == [(D("0.53"), D("20.00"))]
    assert "merged into the rung at 0.53" in plan.notes[0] and "too few for two rungs" in plan.notes[-1]
    plan = plan_ladder(HALVES, D("0.50"), D("8"), TICK, MIN)   # 4 + 4
    assert [(r.price, r.shares) for r in plan.rungs] == [(D("0.56"), D("8.00"))]


def test_rungs_that_meet_on_the_tick_are_one_and_prices_stay_under_one():
    plan = plan_ladder([(D("0.001"), D("0.5")), (D("0.002"), D("0.5"))], D("0.50"), D("20"), TICK, MIN)
    assert [(r.price, r.shares) for r in plan.rungs] == [(D("0.51"), D("20.00"))]
    plan = plan_ladder([(D("0.5"), D("0.5")), (D("0.9"), D("0.5"))], D("0.90"), D("20"), TICK, MIN)
    assert [r.price for r in plan.rungs] == [D("0.99")]   # both capped at 1 - tick


@given(entry=st.integers(1, 99), shares=st.decimals(D("0.01"), D(500), places=6),
       pcts=st.lists(st.integers(1, 300), min_size=1, max_size=5, unique=True),
       weights=st.lists(st.integers(1, 10), min_size=5, max_size=5), tick=st.sampled_from([D("0.01"), D("0.001")]),
       minimum=st.sampled_from([D(5), D(1), D(15)]))
def test_any_ladder_sells_exactly_what_is_held_in_rungs_over_the_minimum(entry, shares, pcts, weights, tick, minimum):
    pcts = sorted(pcts)
    total_w = sum(weights[:len(pcts)])
    spec = [(D(p) / 100, D(w) / total_w) for p, w in zip(pcts, weights, strict=False)]
    entry_price = D(entry) / 100
    plan = plan_ladder(spec, entry_price, shares, tick, minimum)
    assert plan.rungs and len(plan.rungs) <= len(spec)
    assert sum(r.shares for r in plan.rungs) == round_shares(shares)
    assert all(r.shares >= minimum for r in plan.rungs) or len(plan.rungs) == 1
    assert all(r.price % tick == 0 and tick <= r.price <= 1 - tick for r in plan.rungs)
    assert all(a.price < b.price for a, b in zip(plan.rungs, plan.rungs[1:], strict=False))
    assert (len(plan.rungs) < len(spec)) == bool(plan.notes) or len(plan.rungs) == len(spec)


def ladder_position(mode: ExitMode = ExitMode.LIMIT_ORDERS, shares: str = "20") -> Position:
    pos = Position(token_id="1", exit_mode=mode, status=PositionState.OPEN, entry_price=D("0.50"),
                   tp_price=D("0.53"), sl_price=D("0.45"),
                   tp_ladder=[Rung(pct=D("0.05"), price=D("0.53"), shares=D(6)),
                              Rung(pct=D("0.10"), price=D("0.55"), shares=D(7)),
                              Rung(pct=D("0.20"), price=D("0.60"), shares=D(7))])
    pos.orders = [OrderRecord(role=Role.ENTRY, state=RecordState.DONE, filled=D(shares), usdc=D(shares) / 2)]
    return pos


def tp(rung: int, size: str, filled: str = "0", state=RecordState.LIVE, failed: str = "0") -> OrderRecord:
    return OrderRecord(role=Role.TP, order_id=f"tp{rung}-{size}-{filled}", state=state, price=D("0.5"), size=D(size),
                       filled=D(filled), usdc=D(filled) / 2, failed=D(failed), rung=rung)


def test_progress_comes_from_the_records_and_a_failed_fill_makes_the_rung_due_again():
    pos = ladder_position()
    assert next_rung(pos) == 0 and next_target(pos) == D("0.53")
    assert [o.size for o in rungs_to_place(pos)] == [D(6), D(7), D(7)] and tps_missing(pos)
    pos.orders = [*pos.orders, tp(0, "6", "6", RecordState.DONE), tp(1, "7"), tp(2, "7")]
    assert next_rung(pos) == 1 and next_target(pos) == D("0.55") and rung_left(pos) == [0, 7, 7]
    assert rungs_to_place(pos) == [] and not tps_missing(pos)
    assert "0.53 x6 sold | 0.55 x7 resting 7 | 0.6 x7 resting 7" == ladder_text(pos)
    # the first rung's trades FAILED: taken back, the shares are the position's again and the rung is due
    pos.orders = [pos.orders[0], tp(0, "6", "0", RecordState.DONE, failed="6"), tp(1, "7"), tp(2, "7")]
    assert next_rung(pos) == 0 and [(o.rung, o.size) for o in rungs_to_place(pos)] == [(0, D(6))]


def test_a_rungs_own_fills_are_its_own_and_what_it_sold_beyond_them_goes_to_the_rungs_below():
    pos = ladder_position()
    # the two lower rungs' fills FAILED (taken back), the top one's went through: the lower two are due again, at
    # their own prices, not the top rung's
    pos.orders = [*pos.orders, tp(0, "6", "0", RecordState.DONE, failed="6"), tp(1, "7", "0", RecordState.DONE,
                                                                                 failed="7"),
                  tp(2, "7", "7", RecordState.DONE)]
    assert rung_left(pos) == [6, 7, 0] and next_rung(pos) == 0
    assert [(o.rung, o.price, o.size) for o in rungs_to_place(pos)] == [(0, D("0.53"), D(6)), (1, D("0.55"), D(7))]
    # rung 1 sold 4 of its 6 and went away; its 2 left rode with rung 2's order, which filled 9: rung 1 is done
    pos = ladder_position()
    pos.orders = [*pos.orders, tp(0, "6", "4", RecordState.DONE), tp(1, "9", "9", RecordState.DONE)]
    assert rung_left(pos) == [0, 0, 7] and next_rung(pos) == 2
    # a monitored sale up to rung 2 (13 shares) covers rungs 1 and 2, lowest first
    pos = ladder_position(ExitMode.MONITOR)
    pos.orders = [*pos.orders, OrderRecord(role=Role.EXIT, state=RecordState.DONE, filled=D(10), usdc=D(5), rung=1)]
    assert rung_left(pos) == [0, 3, 7] and next_target(pos) == D("0.55")


def test_resting_rungs_never_add_up_to_more_than_the_position_holds():
    pos = ladder_position(shares="15")   # 5 shares left the account (sold by hand): 15 held, rungs of 20
    pos.orders = [*pos.orders, tp(1, "7")]
    orders = rungs_to_place(pos)
    assert sum(o.size for o in orders) + sum(remaining(r) for r in pos.live_tps) <= D(15)
    # rung 1 rests 6, rung 3's 2 left (under the minimum, the last) join it
    assert [(o.rung, o.size) for o in orders] == [(0, D(8))]


def test_a_part_under_the_minimum_joins_the_next_rung_or_is_left_to_the_stop():
    pos = ladder_position()
    # rung 1 filled 4 of 6 and went away: its 2 left join rung 2 (resting nothing)
    pos.orders = [*pos.orders, tp(0, "6", "4", RecordState.DONE)]
    assert [(o.rung, o.size) for o in rungs_to_place(pos)] == [(1, D(9)), (2, D(7))]
    # rungs 1 and 2 rest; rung 3 filled 4 of 7 and went away: its 3 left are under the minimum, nothing to join
    pos.orders = [pos.orders[0], tp(0, "6"), tp(1, "7"), tp(2, "7", "4", RecordState.DONE)]
    assert rungs_to_place(pos) == [] and not tps_missing(pos)


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 800), st.booleans(), st.integers(0, 300)), max_size=6),
       st.integers(1000, 2500))
def test_any_records_never_rest_more_than_held(records, held):
    pos = ladder_position(shares=str(D(held) / 100))
    for rung, filled, live, failed in records:
        size = D(max(filled + failed, 500)) / 100
        pos.orders = [*pos.orders, tp(rung, str(size), str(D(filled) / 100),
                                      RecordState.LIVE if live else RecordState.DONE, str(D(failed) / 100))]
    if pos.sold_shares > pos.entry_shares:
        return
    reserved = sum((remaining(r) for r in pos.live_tps), D(0))
    placed = sum((o.size for o in rungs_to_place(pos)), D(0))
    assert placed == 0 or reserved + placed <= round_shares(pos.shares)
    assert all(o.size >= pos.min_order_size for o in rungs_to_place(pos)) or not pos.live_tps


def test_a_monitored_sale_sells_up_to_the_rung_reached_and_leaves_no_remainder_under_the_minimum():
    pos = ladder_position(ExitMode.MONITOR)
    assert reached_rung(pos, D("0.52")) is None and reached_rung(pos, D("0.53")) == 0
    assert reached_rung(pos, D("0.57")) == 1 and reached_rung(pos, D("0.99")) == 2
    assert rung_exit_size(pos, 0) == D(6) and rung_exit_size(pos, 1) == D(13) and rung_exit_size(pos, 2) == D(20)
    pos.orders = [*pos.orders, OrderRecord(role=Role.EXIT, state=RecordState.DONE, filled=D(4), usdc=D(2), rung=0)]
    assert not rung_exit_done(pos, 0)
    assert rung_exit_size(pos, 0) == D(5)   # the 2 it lacks are under the minimum: 5
    pos.orders = [*pos.orders, OrderRecord(role=Role.EXIT, state=RecordState.DONE, filled=D(9), usdc=D(4), rung=1)]
    assert rung_exit_done(pos, 0) and rung_exit_done(pos, 1)
    assert rung_exit_size(pos, 2) == D(7)
    small = ladder_position(ExitMode.MONITOR, shares="17")   # 3 shares left the account: rung 2 would leave 4
    assert rung_exit_size(small, 1) == D(17)


def test_the_config_refuses_a_ladder_that_cannot_mean_anything(tmp_path):
    def load(ladder):
        path = tmp_path / "config.json"
        path.write_text(f'{{"strategy": {{"take_profit_ladder": {ladder}}}}}')
        return load_config(path)

    assert load("[[0.05, 0.5], [0.12, 0.5]]").strategy.take_profit_ladder == ((D("0.05"), D("0.5")),
                                                                             (D("0.12"), D("0.5")))
    assert load('"0.05:0.5/0.12:0.5"').strategy.take_profit_ladder == load("[[0.05, 0.5], [0.12, 0.5]]") \
        .strategy.take_profit_ladder
    assert load("null").strategy.take_profit_ladder is None
    for bad, says in [("[[0.05, 0.5], [0.12, 0.6]]", "add up to 1"), ("[[0.12, 0.5], [0.05, 0.5]]", "must rise"),
                      ("[[0, 1]]", "profit_pct must be above 0"), ("[[0.05, 0]]", "share must be above 0"),
                      ("[]", "at least one"), ('"0.05"', "profit:share"), ("[[0.05]]", "take_profit_ladder")]:
        with pytest.raises(ConfigError, match=says) as err:
            load(bad)
        assert "strategy" in str(err.value)
