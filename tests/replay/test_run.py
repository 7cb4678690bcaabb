"""A replay runs the bot's own loop over recorded prices (bot/replay): hand-computed exits, the fill model's rules,
bad input, and a long random path's invariants."""
from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from bot.config import BotConfig
from bot.replay import run
from bot.replay.market import FillModel, ReplayMarket


def replay(*args, **kwargs):
    """A replay through main_bot's loop (bot/ never imports main_bot: the CLI hands it down)."""
    from main_bot import Bot

    return run.replay(*args, bot_class=Bot, **kwargs)


T0 = 1_780_000_000   # a fixed base: nothing here depends on today's date
STEP = 60


def token(i: int, k: int) -> str:
    return str((0xC7F1 << 200) + (0x5A5A5A5A5A5A << 40) + i * 10 + k)


def market(i: int, path: list[str], winner: str = "Yes", fee_rate: str = "0.02", question: str | None = None,
           liquidity: float = 50_000) -> ReplayMarket:
    toks = [token(i, 1), token(i, 2)]
    times = [T0 + STEP * j for j in range(len(path))]
    yes = [D(p) for p in path]
    gamma = {"id": str(i), "question": question or f"Market {i}?", "conditionId": "0x" + f"{i:064x}",
             "slug": f"m{i}", "endDate": "2026-06-30T00:00:00Z", "liquidityNum": liquidity, "volumeNum": 100_000,
             "outcomes": json.dumps(["Yes", "No"]), "clobTokenIds": json.dumps(toks), "version": "v1",
             "orderPriceMinTickSize": 0.01, "orderMinSize": 5, "negRisk": False}
    return ReplayMarket(gamma=gamma, tokens=toks, outcomes=["Yes", "No"],
                        series={toks[0]: (times, yes), toks[1]: (times, [1 - p for p in yes])},
                        payouts={toks[0]: D(winner == "Yes"), toks[1]: D(winner == "No")},
                        fee_rate=D(fee_rate), fee_exponent=1)


def config(**strategy) -> BotConfig:
    return BotConfig.model_validate({
        "bot": {"positions_file": "unused.json", "log_file": None},
        "capital": {"total": 100, "max_trade_size": 10, "max_positions": 2},
        "trading": {"use_concurrent_orders": True},
        "strategy": {"take_profit_pct": "0.10", "stop_loss_pct": "0.10", "min_liquidity": 0, "min_volume": 0,
                     "min_hours_to_end": 0, "max_spread": "0.1", "scan_interval_seconds": 60, **strategy}})


def fee(shares: str, price: str) -> D:
    """The market's taker fee by hand: shares x 0.02 x p(1-p), floored to 5 decimals as the venue does."""
    return (D(shares) * D("0.02") * D(price) * (1 - D(price))).quantize(D("0.00001"), rounding="ROUND_DOWN")


def test_a_path_that_crosses_one_positions_tp_and_anothers_sl_books_exactly_those_exits():
    """Both markets trade at 0.49 (book 0.48 / 0.50: the model's 2-tick spread): both are bought at the ask 0.50,
    $10 -> 20 shares, the taker fee 20 x 0.02 x 0.25 = $0.10 on top: cost $10.10; TP 0.55, SL 0.45.
    Market 1 then trades at 0.56, through its TP: 20 sold at 0.55 as a maker (no fee): 11.00 - 10.10 = +0.90.
    Market 2 falls to 0.45 in one step (bid 0.44, under the SL): the TP is cancelled and the 20 shares sold at the
    bid 0.44, fee 20 x 0.02 x 0.44 x 0.56 = 0.09856: 8.80 - 0.09856 - 10.10 = -1.39856.
    Market 1, not blacklisted, is bought again at 0.57: $10 buys 17.543859 shares (the venue fills a market buy's
    dollars to 6 decimals of a share; 17.543859 x 0.57 = 9.99999963 -> $10.000000), fee 17.543859 x 0.02 x 0.57 x
    0.43 = 0.0859999... -> 0.08599; held to its resolution (Yes: 1 a share): 17.543859 - 10.08599 = +7.457869."""
    up = market(1, ["0.49"] * 4 + ["0.56"] * 3, question="Goes up?", liquidity=60_000)
    down = market(2, ["0.49"] * 4 + ["0.45"] * 3, winner="No", question="Goes down?")
    result = replay(config(), [up, down], T0, T0 + STEP * 10)
    first_up, second_up = [r for r in result.rows if r["question"] == "Goes up?"]
    (sl,) = [r for r in result.rows if r["question"] == "Goes down?"]
    for r in (first_up, sl):
        assert (r["entry_price"], r["entry_shares"], r["tp_price"], r["sl_price"]) == (0.5, 20, 0.55, 0.45)
        assert r["entry_cost"] == pytest.approx(10.1, abs=1e-9) and fee("20", "0.50") == D("0.1")
    assert (first_up["close_reason"], first_up["exit_price"], first_up["exit_proceeds"]) == ("take_profit", 0.55, 11)
    assert first_up["pnl"] == pytest.approx(0.9, abs=1e-9)
    assert sl["close_reason"] == "stop_loss" and fee("20", "0.44") == D("0.09856")
    assert sl["exit_proceeds"] == pytest.approx(8.8 - 0.09856, abs=1e-9)
    assert sl["pnl"] == pytest.approx(-1.39856, abs=1e-9)
    assert (second_up["entry_price"], second_up["entry_shares"], second_up["close_reason"]) == \
        (0.57, 17.543859, "market_resolved")
    assert fee("17.543859", "0.57") == D("0.08599")
    assert second_up["entry_cost"] == pytest.approx(10 + 0.08599, abs=1e-9)
    assert second_up["pnl"] == pytest.approx(17.543859 - 10.08599, abs=1e-9)
    assert result.pnl == pytest.approx(0.9 - 1.39856 + 7.457869, abs=1e-9) and result.trades == 3
    assert result.max_drawdown == pytest.approx(1.39856, abs=1e-9)   # the fall after the first close
    assert [round(total, 5) for _, total in result.curve] == [0.9, round(0.9 - 1.39856, 5),
                                                              round(0.9 - 1.39856 + 7.457869, 5)]
    modes = result.report["modes"]["limit_orders"]
    assert modes["closed"] == 3 and modes["close_reasons"] == {"take_profit": 1, "stop_loss": 1, "market_resolved": 1}


def test_a_touch_fills_the_tp_only_when_the_model_says_touch():
    path = ["0.49"] * 4 + ["0.55"] * 3   # the price reaches the TP 0.55 exactly, never trades through it
    through = replay(config(), [market(1, path)], T0, T0 + STEP * 10)
    touch = replay(config(), [market(1, path)], T0, T0 + STEP * 10, FillModel(tp_fill="touch"))
    assert [r["close_reason"] for r in through.rows] == ["market_resolved"]   # held to the end: never filled
    assert [(r["close_reason"], r["exit_price"]) for r in touch.rows][0] == ("take_profit", 0.55)


def test_an_exit_latency_fills_the_stop_loss_on_a_later_book():
    path = ["0.49"] * 4 + ["0.45", "0.40", "0.40"]
    now = replay(config(), [market(2, path)], T0, T0 + STEP * 6)
    late = replay(config(), [market(2, path)], T0, T0 + STEP * 6, FillModel(exit_latency_steps=1))
    assert now.rows[0]["exit_proceeds"] == pytest.approx(float(20 * D("0.44") - fee("20", "0.44")), abs=1e-9)
    assert late.rows[0]["exit_proceeds"] == pytest.approx(float(20 * D("0.39") - fee("20", "0.39")), abs=1e-9)


def test_a_position_held_to_the_end_is_paid_its_resolution():
    path = ["0.49"] * 4 + ["0.50"] * 3
    r = replay(config(max_hold_hours=1000), [market(1, path, winner="Yes")], T0, T0 + STEP * 10)
    row = r.rows[0]
    assert (row["close_reason"], row["exit_price"]) == ("market_resolved", 1.0)
    assert row["pnl"] == pytest.approx(20 - 10.1, abs=1e-9)
    lost = replay(config(max_hold_hours=1000), [market(1, path, winner="No")], T0, T0 + STEP * 10)
    assert lost.rows[0]["pnl"] == pytest.approx(-10.1, abs=1e-9)


def test_bad_input_gives_a_clear_message_and_nothing_wrong_in_the_result():
    empty = market(3, [])   # a market with no history: said, and skipped
    gap = market(4, ["0.49"] * 4 + ["0.49"] * 2)
    times, prices = gap.series[gap.tokens[0]]
    gap.series[gap.tokens[0]] = (times[:3] + [t + 3600 for t in times[3:]], prices)   # an hour's gap
    gap.ends_at = gap.series[gap.tokens[0]][0][-1] + 1
    r = replay(config(), [empty, gap], T0, T0 + 7200)
    assert any("market 3" in w and "no recorded prices" in w for w in r.warnings)
    assert all(row["market_id"] == "4" for row in r.rows)
    with pytest.raises(ValueError, match="tp_fill"):
        FillModel(tp_fill="sometimes")


def test_a_replay_runs_the_stops_that_follow_the_price_and_a_grid_can_sweep_them():
    """Bought at 0.50 (TP 0.75 far away), the price runs to 0.70 (bid 0.69: a 5% trailing stop at 0.65) and falls back
    to 0.60: sold at the bid 0.65 that meets the trailed stop, not at the fixed stop 0.45."""
    path = ["0.49"] * 3 + ["0.55", "0.62", "0.70", "0.68", "0.66", "0.60", "0.55"]
    fixed = replay(config(take_profit_pct="0.50"), [market(1, path)], T0, T0 + STEP * 9)
    trailed = replay(config(take_profit_pct="0.50", trailing_stop_pct="0.05"), [market(1, path)], T0, T0 + STEP * 9)
    assert fixed.rows[0]["close_reason"] == "market_resolved"   # the fixed stop 0.45 was never reached
    row = trailed.rows[0]
    assert (row["close_reason"], row["sl_price"]) == ("stop_loss", 0.65)
    assert row["exit_proceeds"] == pytest.approx(float(20 * D("0.65") - fee("20", "0.65")), abs=1e-9)
    assert trailed.report["exit_configs"]["trailing 5%"]["stops_raised"] == 1


@pytest.mark.parametrize("concurrent", [True, False], ids=["limit_orders", "monitor"])
def test_a_replay_runs_a_take_profit_ladder(concurrent):
    """Bought 20 shares at 0.50 with rungs at +6% (0.53) and +30% (0.65), 10 shares each: the price climbs to 0.56
    (bid 0.55: the first rung sells), then falls to the stop (bid 0.45): only the other 10 are sold there."""
    path = ["0.49"] * 3 + ["0.52", "0.56", "0.50", "0.46", "0.40", "0.40"]
    settings = config(take_profit_ladder="0.06:0.5/0.30:0.5") if concurrent else \
        _monitored(take_profit_ladder="0.06:0.5/0.30:0.5")
    r = replay(settings, [market(1, path)], T0, T0 + STEP * 8)
    row = r.rows[0]
    assert row["close_reason"] == "stop_loss"
    # the first rung rests at 0.53 (a maker: no fee) or is sold at the bid 0.55 (a taker: the fee); the rest at 0.45
    first = 10 * D("0.53") if concurrent else 10 * D("0.55") - fee("10", "0.55")
    assert row["exit_proceeds"] == pytest.approx(float(first + 10 * D("0.45") - fee("10", "0.45")), abs=1e-9)
    assert r.report["exit_configs"]["TP ladder +6%/+30%"]["rungs_filled"] == 1


def _monitored(**strategy) -> BotConfig:
    data = config(**strategy).model_dump(mode="json")
    data["trading"]["use_concurrent_orders"] = False
    return BotConfig.model_validate(data)
