"""Markets of both kinds on Gamma (FACTS.md Part 0, 0.8), traded through the unified SDK: CTF (V1) markets by their
``clobTokenIds`` on the CTF exchanges, Protocol V2 markets by their ``positionIds`` on ExchangeV3, never a market
without a known version. Whole lifecycles (take-profit and stop-loss, both exit modes) on each kind, from a plain
wallet and from a deposit wallet: the ids saved before sending are the venue's, and the books are the wallet's."""
from __future__ import annotations

import json
import logging
from decimal import Decimal as D

import pytest
import requests

from bot.position_manager import CloseReason, ExitMode, PositionState
from tests.e2e.conftest import Harness, sim_order_status


def test_markets_of_both_kinds_are_bought_and_one_without_a_version_is_not(sim, tmp_path, caplog):
    # the V2 and the unversioned markets are the most liquid: a scanner that ignored versions would pick them first
    v2 = sim.create_market("Protocol V2?", yes_price=0.5, volatility=0, version="v2", liquidity_depth=9)
    bare = sim.create_market("No version?", yes_price=0.5, volatility=0, version=None, liquidity_depth=9)
    v1 = sim.create_market("Version one?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path, capital__max_positions=3)
    with caplog.at_level(logging.INFO, logger="bot"):
        h.loop(4, advance=2)
    held = {p.condition_id: p for p in h.positions if p.status == PositionState.OPEN}
    assert set(held) == {v1["condition_id"], v2["condition_id"]}
    assert held[v1["condition_id"]].market_version == "v1" and held[v1["condition_id"]].token_id in v1["token_ids"]
    assert held[v2["condition_id"]].market_version == "v2" and held[v2["condition_id"]].token_id in v2["token_ids"]
    assert f"Gamma market {bare['id']}: Gamma gives it no version" in caplog.text
    assert caplog.text.count(f"Gamma market {bare['id']}:") == 1   # said once, not every scan


def test_a_v2_market_is_never_traded_by_its_clob_token_ids(sim, tmp_path):
    """Gamma gives a V2 market both fields; its clobTokenIds are CTF-shaped ids the CLOB does not trade. The bot
    takes positionIds (the version's field), and its orders are signed for ExchangeV3: the sim refuses a V2 position
    signed for a CTF exchange ("invalid signature"), so an order that went through took the V2 path."""
    v2 = sim.create_market("Protocol V2?", yes_price=0.5, volatility=0, version="v2")
    raw = requests.get(f"{sim.gamma_url}/markets/{v2['id']}", timeout=5).json()
    decoys = json.loads(raw["clobTokenIds"])
    assert raw["positionIds"] == v2["token_ids"] and not set(decoys) & set(v2["token_ids"])
    h = Harness(sim, tmp_path)
    h.loop()
    pos = h.positions[0]
    assert pos.token_id in v2["token_ids"] and pos.token_id not in decoys and pos.market_version == "v2"
    assert pos.status == PositionState.OPEN and pos.entry_shares > 0
    # the shares are V2 positions: read as CONDITIONAL-V2 (a CONDITIONAL read of a V2 id answers 0)
    assert h.venue.token_balance(pos.token_id) == pos.entry_shares


def _market(sim, kind: str):
    return sim.create_market(f"A {kind} market?", yes_price=0.5, volatility=0, version="v2" if kind.startswith("v2")
                             else "v1", neg_risk=kind.endswith("neg_risk"))


@pytest.mark.parametrize("exit_", ["take_profit", "stop_loss"])
@pytest.mark.parametrize("mode", ["limit_orders", "monitor"])
@pytest.mark.parametrize("wallet", ["eoa", "deposit_wallet"])
@pytest.mark.parametrize("kind", ["v1", "v2", "v2_neg_risk"])
def test_a_whole_lifecycle_on_each_kind_of_market_from_each_kind_of_wallet(sim, tmp_path, kind, wallet, mode, exit_):
    m = _market(sim, kind)
    yes = m["token_ids"][0]
    h = Harness(sim, tmp_path, signature_type=3 if wallet == "deposit_wallet" else 0,
                trading__use_concurrent_orders=mode == "limit_orders")
    start_usdc = D(h.venue_balances()["usdc"])
    h.loop()
    pos = h.positions[0]
    assert pos.token_id == yes and pos.market_version == kind[:2] and pos.status == PositionState.OPEN
    assert pos.exit_mode == (ExitMode.LIMIT_ORDERS if mode == "limit_orders" else ExitMode.MONITOR)
    # the ids saved before sending are the venue's own (the sim keeps every order under the id it answered)
    assert sim_order_status(sim, pos.entry_order_id) == "MATCHED"
    if mode == "limit_orders":
        assert sim_order_status(sim, pos.tp_order_id) == "LIVE"
        assert [o.order_id for o in h.venue.open_orders()] == [pos.tp_order_id]
    assert h.venue.token_balance(yes) == pos.entry_shares   # CONDITIONAL-V2 for a V2 position id
    h.no_new_trades()
    sim.set_price(yes, 0.65 if exit_ == "take_profit" else 0.40)
    h.clock.advance(30)
    h.loop(3, advance=6)   # (fills settle from their trades)
    pos = h.positions[0]
    assert pos.status == PositionState.CLOSED, (pos.status, pos.attention_reason)
    assert pos.close_reason == CloseReason(exit_)
    assert (pos.realized_pnl > 0) == (exit_ == "take_profit")
    bal = h.venue_balances()
    assert bal["open_orders"] == 0 and D(str(bal["tokens"].get(yes, 0))) < D("0.01")
    cash = D(bal["usdc"]) - start_usdc
    assert abs(cash - (pos.exit_proceeds - pos.entry_cost)) <= D("0.001"), (cash, pos.exit_proceeds, pos.entry_cost)
