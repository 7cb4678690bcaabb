"""Markets of both kinds on Gamma (FACTS.md Part 0, 0.8): the bot takes a market's outcome ids from the field its
version names, never trades a market without a known version, and (on py-clob-client-v2, which cannot sign for
ExchangeV3) never trades a Protocol V2 market through the V1 path, even when both id fields are present."""
from __future__ import annotations

import logging

from bot.position_manager import PositionState
from tests.e2e.conftest import Harness


def test_only_markets_whose_version_the_bot_can_trade_are_bought(sim, tmp_path, caplog):
    # the V2 and the unversioned markets are the most liquid: a scanner that ignored versions would pick them
    v2 = sim.create_market("Protocol V2?", yes_price=0.5, volatility=0, version="v2", liquidity_depth=9)
    bare = sim.create_market("No version?", yes_price=0.5, volatility=0, version=None, liquidity_depth=9)
    v1 = sim.create_market("Version one?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path, capital__max_positions=3)
    with caplog.at_level(logging.INFO, logger="bot"):
        h.loop(4, advance=2)
    held = {p.condition_id for p in h.positions if p.status == PositionState.OPEN}
    assert held == {v1["condition_id"]}
    pos = h.positions[0]
    assert pos.market_version == "v1" and pos.token_id in v1["token_ids"]
    assert f"Gamma market {v2['id']}: a Protocol V2 market" in caplog.text
    assert f"Gamma market {bare['id']}: Gamma gives it no version" in caplog.text
    assert caplog.text.count(f"Gamma market {v2['id']}:") == 1   # said once, not every scan
