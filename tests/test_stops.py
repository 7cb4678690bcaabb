"""The stop arithmetic (bot/stops.py): the trailing stop, its activation, the break-even price with the exit's fee,
never down, never at or over the take-profit."""
from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from bot.fees import taker_fee
from bot.stops import StopRules, break_even_price, next_stop, trailing_stop

TICK = D("0.01")


def test_the_trailing_stop_follows_the_high_bid_once_activated():
    assert trailing_stop(D("0.50"), D("0.52"), D("0.05"), D("0.05"), TICK) is None   # 0.52 < 0.50 x 1.05
    assert trailing_stop(D("0.50"), D("0.525"), D("0.05"), D("0.05"), TICK) == D("0.49")   # 0.49875 -> down
    assert trailing_stop(D("0.50"), D("0.70"), D("0.05"), D(0), TICK) == D("0.66")   # 0.665 -> 0.66


def test_break_even_returns_the_cost_after_the_exit_fee():
    # 20 shares that cost $10.10 (0.50 each plus a $0.10 fee); fee 0.02 x p(1-p) a share
    p = break_even_price(D(20), D("10.10"), D("0.02"), 1, TICK)
    assert p == D("0.51")   # 20 x 0.51 = 10.20, fee 20 x 0.02 x 0.51 x 0.49 = 0.09996: 10.10004 >= 10.10
    below = p - TICK
    assert 20 * below - taker_fee(D(20), below, D("0.02"), 1) < D("10.10")
    assert break_even_price(D(20), D("10.00"), D(0), 0, TICK) == D("0.50")
    assert break_even_price(D(1), D("2"), D(0), 0, TICK) is None   # no price under 1 returns it
    assert break_even_price(D(0), D("1"), D(0), 0, TICK) is None


def test_next_stop_takes_the_higher_rule_and_never_moves_down():
    rules = StopRules(trailing_pct=D("0.10"), break_even_at_pct=D("0.04"))
    # bid 0.52 reached: break-even (0.51 with the fee) beats the trailing stop (0.468)
    assert next_stop(D("0.45"), rules, D("0.50"), D("0.52"), D(20), D("10.10"), D("0.55"), TICK, D("0.02"), 1) == \
        (D("0.51"), "break_even")
    assert next_stop(D("0.51"), rules, D("0.50"), D("0.52"), D(20), D("10.10"), D("0.55"), TICK, D("0.02"), 1) \
        is None   # already there
    # far higher, the trailing stop leads, capped a tick under the TP
    assert next_stop(D("0.51"), rules, D("0.50"), D("0.80"), D(20), D("10.10"), D("0.90"), TICK) == \
        (D("0.72"), "trailing")
    assert next_stop(D("0.51"), rules, D("0.50"), D("0.99"), D(20), D("10.10"), D("0.90"), TICK) == \
        (D("0.89"), "trailing")
    assert next_stop(D("0.45"), StopRules(), D("0.50"), D("0.99"), D(20), D("10.10"), D("0.55"), TICK) is None


@given(st.lists(st.integers(min_value=1, max_value=99), min_size=1, max_size=60),
       st.sampled_from([D("0.03"), D("0.05"), D("0.10"), D("0.25")]),
       st.sampled_from([D(0), D("0.02"), D("0.10")]))
def test_a_stop_fed_any_path_of_bids_never_moves_down_nor_reaches_the_tp(cents, trail, activation):
    rules = StopRules(trailing_pct=trail, activation_pct=activation, break_even_at_pct=D("0.05"))
    entry, tp, stop, high = D("0.50"), D("0.60"), D("0.45"), D(0)
    for c in cents:
        high = max(high, D(c) / 100)
        moved = next_stop(stop, rules, entry, high, D(20), D("10.10"), tp, TICK, D("0.02"), 1)
        if moved is not None:
            assert moved[0] > stop and moved[0] < tp
            stop = moved[0]
