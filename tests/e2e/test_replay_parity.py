"""Parity: a price path traded live on bot/sim (the real SDK, the sim's matching engine) and the same path replayed
(bot/replay: the paper venue over the fill model) give the same entries, exits and P&L, within one tick of slippage
per exit. The sim's other traders quote one tick either side of the mid and fill a resting order the mid reaches:
the replay's default book (2 ticks of spread) with ``tp_fill="touch"`` is that market."""
from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
import requests

from bot.position_manager import PositionState
from bot.replay import run
from bot.replay.market import FillModel, ReplayMarket
from tests.e2e.conftest import Harness


def replay(*args, **kwargs):
    """A replay through main_bot's loop (bot/ never imports main_bot: the CLI hands it down)."""
    from main_bot import Bot

    return run.replay(*args, bot_class=Bot, **kwargs)


STEP = 60
UP = ["0.50"] * 3 + ["0.52", "0.54", "0.57", "0.60", "0.61", "0.58"]
DOWN = ["0.50"] * 3 + ["0.49", "0.47", "0.45", "0.44", "0.42", "0.45"]
FLAT = ["0.60"] * 3 + ["0.61", "0.62", "0.61", "0.60", "0.59", "0.60"]


def recorded(sim, m: dict, path: list[str], times: list[int], info) -> ReplayMarket:
    gamma = requests.get(f"{sim.gamma_url}/markets/{m['id']}", timeout=5).json()
    yes = [D(p) for p in path]
    toks = m["token_ids"]
    return ReplayMarket(gamma=gamma, tokens=toks, outcomes=json.loads(gamma["outcomes"]),
                        series={toks[0]: (times, yes), toks[1]: (times, [1 - p for p in yes])},
                        payouts={toks[0]: D(1), toks[1]: D(0)}, tick_size=info.tick_size,
                        min_order_size=info.min_order_size, neg_risk=info.neg_risk, fee_rate=info.fee_rate,
                        fee_exponent=info.fee_exponent, ends_at=times[-1] + 10 * STEP)


@pytest.mark.parametrize("mode", ["limit_orders", "monitor"])
def test_a_path_live_on_the_sim_and_replayed_trades_the_same(sim, tmp_path, mode):
    # (liquidity far apart: the scanner ranks by it, and the sim's own moves with its random quote sizes)
    markets = [sim.create_market(q, yes_price=float(path[0]), volatility=0, liquidity_depth=depth)
               for q, path, depth in (("Up?", UP, 12), ("Down?", DOWN, 6), ("Flat?", FLAT, 2))]
    paths = [UP, DOWN, FLAT]
    h = Harness(sim, tmp_path, trading__use_concurrent_orders=mode == "limit_orders", capital__max_positions=3,
                strategy__take_profit_pct="0.10", strategy__stop_loss_pct="0.10",
                strategy__scan_interval_seconds=STEP)
    times: list[int] = []
    for step in range(len(UP)):
        for m, path in zip(markets, paths, strict=True):
            sim.set_price(m["token_ids"][0], path[step])
        times.append(int(h.clock.time()))
        h.loop(advance=STEP)
    live = sorted(h.positions, key=lambda p: (p.opened_at, p.question))
    assert {p.question for p in live} == {"Up?", "Down?", "Flat?"}
    infos = [h.venue.get_market_info(m["token_ids"][0]) for m in markets]
    replayed = replay(h.config, [recorded(sim, m, path, times, info)
                                 for m, path, info in zip(markets, paths, infos, strict=True)],
                      times[0], times[-1], FillModel(tp_fill="touch"))
    rows = sorted(replayed.rows, key=lambda r: (r["opened_at"], r["question"]))
    assert [r["question"] for r in rows] == [p.question for p in live]
    for p, r in zip(live, rows, strict=True):
        q = p.question
        assert (r["entry_price"], r["entry_shares"]) == (float(p.entry_price), float(p.entry_shares)), q
        assert (r["tp_price"], r["sl_price"]) == (float(p.tp_price), float(p.sl_price)), q
        assert r["status"] == p.status.value and r["close_reason"] == (p.close_reason.value if p.close_reason
                                                                      else None), q
        if p.status == PositionState.CLOSED:
            tick = float(infos[0].tick_size)
            assert abs(r["exit_price"] - float(p.exit_price)) <= tick + 1e-9, q
            assert abs(r["pnl"] - float(p.realized_pnl)) <= tick * float(p.entry_shares) + 1e-6, q
    closed = [p for p in live if p.status == PositionState.CLOSED]
    assert {p.close_reason.value for p in closed} == {"take_profit", "stop_loss"}
