"""Whole position lifecycles: the bot, the real SDK, the simulated venue's matching engine."""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from bot.position_manager import CloseReason, ExitMode, PositionState
from tests.e2e.conftest import Harness, sim_order_status


def still_market(sim, yes_price=0.5, question="Will it rain?"):
    """A market that moves only when the test says so."""
    return sim.create_market(question, yes_price=yes_price, volatility=0)


def only(positions):
    assert len(positions) == 1, positions
    return positions[0]


@pytest.mark.parametrize("dry_run", [False, True], ids=["live", "dry_run"])
def test_tp_fills_and_position_closes_with_profit(sim, tmp_path, dry_run):
    m = still_market(sim)
    h = Harness(sim, tmp_path, dry_run=dry_run)
    h.loop()
    pos = only(h.positions)
    assert pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.status == PositionState.OPEN
    assert pos.token_id == m["token_ids"][0] and pos.tp_order_id
    assert pos.sl_order_id is None  # the SL is watched: it never rests on Polymarket
    assert pos.tp_order_id.startswith("dry_run_") == dry_run
    if not dry_run:
        assert h.venue_balances()["open_orders"] == 1
    h.no_new_trades()
    sim.set_price(m["token_ids"][0], 0.65)   # the market rises through the TP
    h.clock.advance(30)
    h.loop()
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert pos.exit_price == pos.tp_price   # filled as maker at exactly the TP price
    assert pos.realized_pnl > 0
    if not dry_run:
        bal = h.venue_balances()
        assert bal["open_orders"] == 0
        assert D(str(bal["tokens"].get(pos.token_id, 0))) < D("0.01")


@pytest.mark.parametrize("dry_run", [False, True], ids=["live", "dry_run"])
def test_stop_loss_cancels_tp_sells_and_blacklists(sim, tmp_path, dry_run):
    m = still_market(sim)
    h = Harness(sim, tmp_path, dry_run=dry_run)
    h.loop()
    pos = only(h.positions)
    tp_id = pos.tp_order_id
    sim.set_price(m["token_ids"][0], 0.40)
    h.loop()
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert pos.tp_order_id is None and pos.realized_pnl < 0
    if dry_run:
        assert h.venue.get_order(tp_id).status.value == "canceled"
    else:   # the venue forgets orders that are no longer live (FACTS.md Part 0, 0.3)
        assert h.venue.get_order(tp_id) is None and sim_order_status(sim, tp_id) == "CANCELED"
    assert h.bot.state.is_blacklisted(m["condition_id"], h.bot.now())
    if not dry_run:
        bal = h.venue_balances()
        assert bal["open_orders"] == 0
        assert D(str(bal["tokens"].get(pos.token_id, 0))) < D("0.01")
    # the blacklisted market is not bought again
    h.loop(3)
    assert len(h.positions) == 1


def test_time_exit_sells_after_max_hold(sim, tmp_path):
    still_market(sim)
    h = Harness(sim, tmp_path, trading__use_concurrent_orders=False)
    h.loop()
    pos = only(h.positions)
    assert pos.exit_mode == ExitMode.MONITOR and pos.tp_order_id is None
    h.no_new_trades()
    h.clock.advance(23 * 3600)
    h.loop()
    assert only(h.positions).status == PositionState.OPEN
    h.clock.advance(3600)
    h.bot.run_once()
    pos = h.positions[0]
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TIME_EXIT
    assert D(str(h.venue_balances()["tokens"].get(pos.token_id, 0))) < D("0.01")


def test_monitor_mode_sells_when_bid_reaches_tp(sim, tmp_path):
    m = still_market(sim)
    h = Harness(sim, tmp_path, trading__use_concurrent_orders=False)
    h.loop()
    pos = only(h.positions)
    assert h.venue_balances()["open_orders"] == 0   # nothing rests in monitor mode
    h.no_new_trades()
    sim.set_price(m["token_ids"][0], 0.66)
    h.loop()
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert pos.exit_price >= pos.tp_price and pos.realized_pnl > 0


def test_tp_refused_falls_back_to_monitoring(sim, tmp_path, caplog):
    still_market(sim)
    h = Harness(sim, tmp_path)
    # The venue's balance cache lags: shares just bought cannot be sold yet, so the TP is refused.
    sim.engine.settlement_delay_s = 10_000
    with caplog.at_level(logging.WARNING, logger="bot"):
        h.loop()
    pos = only(h.positions)
    assert pos.exit_mode == ExitMode.MONITOR and pos.tp_order_id is None
    assert "not enough balance" in pos.fallback_reason
    assert "Limit orders failed, using legacy monitoring" in caplog.text
    assert h.venue_balances()["open_orders"] == 0


def test_mixed_modes_in_one_file(sim, tmp_path):
    for i in range(4):
        still_market(sim, question=f"Market {i}?")
    h = Harness(sim, tmp_path, trading__ab_test_ratio=0.5, trading__ab_test_seed=11,
                capital__max_positions=4, capital__max_trade_size="5.5")
    h.loop(4)
    modes = {p.exit_mode for p in h.positions}
    assert modes == {ExitMode.MONITOR, ExitMode.LIMIT_ORDERS}
    on_disk = json.loads((tmp_path / "positions.json").read_text())
    assert {p["exit_mode"] for p in on_disk["positions"]} == {"monitor", "limit_orders"}
    # flipping the flag off affects new positions only
    for p in h.positions:
        sim.set_price(p.token_id, 0.30)
    h.loop()
    assert all(p.status == PositionState.CLOSED and p.close_reason == CloseReason.STOP_LOSS for p in h.positions)
    assert h.venue_balances()["open_orders"] == 0


def test_restart_with_a_positions_file_from_the_previous_version(sim, tmp_path):
    m = still_market(sim)
    yes = m["token_ids"][0]
    wallet = sim.new_wallet(usdc=100)
    sim.fund(wallet["address"], usdc=100, token_id=yes, shares=20)
    # The seed's format: no exit_mode, no status, no TP/SL prices; opened an hour ago on the sim's clock
    # (never a fixed date: the 24 h time exit would fire first once that date is a day old).
    opened = datetime.fromtimestamp(sim.clock.time() - 3600, tz=UTC).isoformat()
    (tmp_path / "positions.json").write_text(json.dumps({"positions": [{
        "token_id": yes, "market_id": m["id"], "condition_id": m["condition_id"], "question": "Will it rain?",
        "entry_price": "0.50", "size": "20", "entry_time": opened,
        "tp_order_id": None, "sl_order_id": None}]}))
    h = Harness(sim, tmp_path, wallet=wallet, capital__max_positions=1)
    pos = only(h.bot.state.all_positions())
    assert pos.exit_mode == ExitMode.MONITOR and pos.status == PositionState.OPEN and pos.tp_price is None
    h.no_new_trades()
    h.loop()   # start-up derives the missing TP/SL from the config
    assert pos.tp_price == D("0.55") and pos.sl_price == D("0.45") and pos.status == PositionState.OPEN
    sim.set_price(yes, 0.60)
    h.loop()
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert D(str(h.venue_balances()["tokens"].get(yes, 0))) < D("0.01")


def test_market_resolution_closes_the_position_at_its_payout(sim, tmp_path):
    m = still_market(sim)
    h = Harness(sim, tmp_path)
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    sim.resolve(m["condition_id"], "Yes")
    h.clock.advance(2)
    h.loop()
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.MARKET_RESOLVED
    assert pos.exit_proceeds == pos.entry_shares and pos.realized_pnl == pos.entry_shares - pos.entry_cost
    assert pos.tp_order_id is None and h.venue_balances()["open_orders"] == 0
