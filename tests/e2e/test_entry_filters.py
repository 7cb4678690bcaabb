"""Entries that would lose money by construction are never sent (rules 3, 4) and what is stored is the
venue's numbers (rule 10): the bot, the real SDK, the simulated venue."""
from __future__ import annotations

import json
from decimal import Decimal as D

from bot.cli import position_row
from bot.position_manager import ExitMode, PositionState
from tests.e2e.conftest import Harness


def orders_posted(sim) -> int:
    return sum(n for path, n in sim.request_counts()["by_endpoint"].items() if "/order" in path and "POST" in path)


def stored_positions(h) -> list[dict]:
    return json.loads(open(h.config.bot.positions_file).read())["positions"]


def scripted_market(sim, question, bid, ask, size=5000):
    """A market that moves only when the test says so, its Yes book set to one bid and one ask level (large,
    so that the scanner ranks it first by liquidity)."""
    m = sim.create_market(question, yes_price=0.5, volatility=0)
    sim.set_book(m["token_ids"][0], bids=[(bid, size)], asks=[(ask, size)])
    return m


def test_an_ask_of_098_is_skipped_before_any_order_and_the_next_candidate_is_bought(sim, tmp_path, caplog):
    # Its 2-tick cap was 1.00 -> 0.99 + 1e-9, refused by the SDK, and retried every scan as entry_unfilled rows.
    top = scripted_market(sim, "Almost certain?", 0.97, 0.98)
    other = sim.create_market("Will it rain?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path, strategy__max_price="0.99")
    with caplog.at_level("INFO", logger="bot"):
        h.loop()
    assert "Skipping Almost certain?" in caplog.text
    assert [p.token_id for p in h.positions] == [other["token_ids"][0]]
    assert [p["token_id"] for p in stored_positions(h)] == [other["token_ids"][0]]
    assert h.positions[0].status == PositionState.OPEN
    assert top["token_ids"][0] not in h.venue_balances()["tokens"]
    h.loop(3)   # later scans skip it again, still without an order or a row
    assert all(p.token_id != top["token_ids"][0] for p in h.positions)


def test_a_take_profit_clamped_to_099_rests_on_the_venue(sim, tmp_path):
    m = sim.create_market("Very likely?", yes_price=0.93, volatility=0)   # bid 0.92, ask 0.94
    h = Harness(sim, tmp_path, strategy__max_price="0.95")
    h.loop()
    pos = h.positions[0]
    assert pos.token_id == m["token_ids"][0] and pos.status == PositionState.OPEN
    assert pos.tp_price == D("0.99")      # 0.94 * 1.1 = 1.034, clamped to 1 - tick
    assert pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.fallback_reason is None, pos.fallback_reason
    assert h.venue.get_order(pos.tp_order_id).price == D("0.99")
    assert h.venue_balances()["open_orders"] == 1


def test_a_book_whose_bid_is_under_the_stop_loss_is_never_bought(sim, tmp_path, caplog):
    # 0.18 / 0.22 with 10% TP/SL: the bot used to buy at 0.22 and stop out at 0.18 one loop later (-18%).
    scripted_market(sim, "Long shot?", 0.18, 0.22)
    h = Harness(sim, tmp_path, strategy__min_price="0.1")
    with caplog.at_level("INFO", logger="bot"):
        h.loop(3)
    assert h.positions == [] and (not h.store.path.exists() or stored_positions(h) == [])
    assert orders_posted(sim) == 0
    assert "stop-loss 0.19 is at or above the best bid 0.18" in caplog.text


def test_a_penny_book_is_not_bought_above_what_the_filters_allow(sim, tmp_path):
    # 0.02 / 0.03: the 2-tick cap paid 0.05 and the SL sold at 0.01.
    scripted_market(sim, "Penny?", 0.02, 0.03)
    h = Harness(sim, tmp_path, strategy__min_price="0.01")
    h.loop(3)
    assert h.positions == [] and orders_posted(sim) == 0


def test_stored_entry_prices_are_the_venues_numbers(sim, tmp_path):
    # A $10 buy at 0.51 is 9.999999 USDC for 19.607843 shares: stored as 0.5099999525699996679899976759 before.
    sim.create_market("Will it rain?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path)
    h.loop()
    pos = h.positions[0]
    for row in (stored_positions(h)[0], position_row(pos)):
        for key in ("entry_price", "tp_price", "sl_price"):
            assert len(row[key].partition(".")[2]) <= 6, (key, row[key])
        for key in ("shares", "entry_cost", "entry_shares"):
            assert len(row[key].partition(".")[2]) <= 6, (key, row[key])
    assert D(stored_positions(h)[0]["entry_price"]) == D("0.51")
