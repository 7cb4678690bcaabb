"""The bot trading from a deposit wallet (signature type 3, POLY_1271) through the real SDK against bot/sim,
the venue's refusals of a bad setup as the bot reports them, and the order id the bot saves before sending
an order for every signature type."""
from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal as D

import pytest
from eth_account import Account

from bot.position_manager import CloseReason, ExitMode, PositionState
from tests.e2e.conftest import Harness, sim_order_status


def still_market(sim, yes_price=0.5, question="Will it rain?", **kw):
    return sim.create_market(question, yes_price=yes_price, volatility=0, **kw)


def only(positions):
    assert len(positions) == 1, positions
    return positions[0]


def deposit_harness(sim, tmp_path, **overrides) -> Harness:
    h = Harness(sim, tmp_path, signature_type=3, api__signature_type=3, **overrides)
    assert h.wallet["address"] != h.wallet["owner"] and h.venue.funder == h.wallet["address"]
    return h


def eoa_untouched(h) -> None:
    owner = h.sim.balances(h.wallet["owner"])
    assert owner == {"usdc": "0", "tokens": {}, "open_orders": 0}


# -- whole lifecycles -----------------------------------------------------------------------------------


def test_limit_orders_buy_tp_resting_tp_fill(sim, tmp_path):
    m = still_market(sim)
    h = deposit_harness(sim, tmp_path)
    h.loop()
    pos = only(h.positions)
    assert pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.status == PositionState.OPEN
    assert h.held(pos.token_id) >= pos.shares > 0   # the wallet holds the shares, not the key's EOA
    resting = h.venue.open_orders()
    assert [o.order_id for o in resting] == [pos.tp_order_id]   # the id saved before sending is the venue's
    assert h.venue_balances()["open_orders"] == 1
    h.no_new_trades()
    sim.set_price(m["token_ids"][0], 0.65)
    h.clock.advance(30)
    h.loop()
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert pos.exit_price == pos.tp_price and pos.realized_pnl > 0
    bal = h.venue_balances()
    assert bal["open_orders"] == 0 and h.held(pos.token_id) < D("0.01") and D(bal["usdc"]) > 100
    eoa_untouched(h)


def test_limit_orders_buy_tp_resting_sl_exit(sim, tmp_path):
    m = still_market(sim)
    h = deposit_harness(sim, tmp_path)
    h.loop()
    pos = only(h.positions)
    tp_id = pos.tp_order_id
    assert tp_id and h.venue.get_order(tp_id).status.value == "open"
    sim.set_price(m["token_ids"][0], 0.40)
    h.loop()
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert pos.realized_pnl < 0 and pos.tp_order_id is None
    assert h.venue.get_order(tp_id) is None and sim_order_status(sim, tp_id) == "CANCELED"   # forgotten
    assert h.venue_balances()["open_orders"] == 0 and h.held(pos.token_id) < D("0.01")
    eoa_untouched(h)


@pytest.mark.parametrize("move,reason", [(0.66, CloseReason.TAKE_PROFIT), (0.40, CloseReason.STOP_LOSS)],
                         ids=["tp", "sl"])
def test_monitor_mode_buy_and_exit(sim, tmp_path, move, reason):
    m = still_market(sim)
    h = deposit_harness(sim, tmp_path, trading__use_concurrent_orders=False)
    h.loop()
    pos = only(h.positions)
    assert pos.exit_mode == ExitMode.MONITOR and pos.status == PositionState.OPEN and pos.tp_order_id is None
    assert h.venue_balances()["open_orders"] == 0 and h.held(pos.token_id) >= pos.shares
    h.no_new_trades()
    sim.set_price(m["token_ids"][0], move)
    h.loop()
    assert pos.status == PositionState.CLOSED and pos.close_reason == reason
    assert (pos.realized_pnl > 0) == (reason == CloseReason.TAKE_PROFIT)
    assert h.held(pos.token_id) < D("0.01")
    eoa_untouched(h)


# -- refusals, as the bot reports them -------------------------------------------------------------------


def refused_buy(h, caplog) -> str:
    with caplog.at_level(logging.WARNING, logger="bot"):
        h.loop()
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.ENTRY_UNFILLED
    assert h.venue_balances()["open_orders"] == 0
    lines = [r.getMessage() for r in caplog.records if "BUY refused" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    return lines[0]


def tamper_signatures(venue) -> None:
    """Flip one byte of the owner's signature inside each signed order on its way to the venue."""
    post = venue._sdk.post_order

    def tampered(signed, *args, **kwargs):
        raw = bytearray(bytes.fromhex(signed.order.signature.removeprefix("0x")))
        raw[5] ^= 0xFF
        order = dataclasses.replace(signed.order, signature="0x" + raw.hex())
        return post(dataclasses.replace(signed, order=order), *args, **kwargs)

    venue._sdk.post_order = tampered


def test_tampered_signature_is_refused(sim, tmp_path, caplog):
    still_market(sim)
    h = deposit_harness(sim, tmp_path)
    tamper_signatures(h.venue)
    line = refused_buy(h, caplog)
    assert "invalid signature" in line and "api.signature_type 3" in line and h.wallet["address"] in line
    assert "main_bot.py doctor" in line


def test_another_owners_wallet_is_refused(sim, tmp_path, caplog):
    still_market(sim)
    victim = sim.new_wallet(usdc=100, signature_type=3)
    mine = sim.new_wallet(usdc=100, signature_type=3)   # funded, but the funder below is someone else's
    h = Harness(sim, tmp_path, wallet={**mine, "address": victim["address"]})
    line = refused_buy(h, caplog)
    assert "maker address not allowed, please use the deposit wallet flow" in line
    assert f"POLY_FUNDER_ADDRESS {victim['address']} is not a deployed deposit wallet of the key's address " \
           f"{mine['owner']}" in line
    assert sim.balances(victim["address"])["usdc"] == "100"


def test_undeployed_wallet_is_refused_until_deployed(sim, tmp_path, caplog):
    still_market(sim)
    still_market(sim, question="Will it snow?")
    h = Harness(sim, tmp_path, wallet=sim.new_wallet(usdc=100, signature_type=3, deployed=False))
    line = refused_buy(h, caplog)
    assert "maker address not allowed" in line and "is not a deployed deposit wallet" in line
    sim.deploy_deposit_wallet(h.wallet["address"])
    h.loop()
    assert [p.status for p in h.positions] == [PositionState.CLOSED, PositionState.OPEN]


# -- the order id saved before sending, for every signature type -------------------------------------------


def wallet_for(sim, signature_type: int) -> dict:
    if signature_type in (0, 3):
        return sim.new_wallet(usdc=100, signature_type=signature_type)
    # Types 1 (Magic proxy) and 2 (Safe): the sim checks the EOA signature and that the signer is the API
    # key's address; it does not model which proxy/Safe an EOA owns. The SDK derives the signature type from the
    # wallet's address, so the wallet is the key's real proxy / Safe address (by the SDK's own derivation).
    from polymarket._internal.environment import PRODUCTION_CONFIG
    from polymarket._internal.wallet import derive_proxy_wallet_address, derive_safe_wallet_address
    acct = Account.create()
    derive = derive_proxy_wallet_address if signature_type == 1 else derive_safe_wallet_address
    proxy = derive(acct.address, PRODUCTION_CONFIG.wallet_derivation)
    sim.fund(proxy, usdc=100)
    return {"private_key": "0x" + acct.key.hex().removeprefix("0x"), "address": proxy, "owner": acct.address,
            "signature_type": signature_type}


@pytest.mark.parametrize("neg_risk", [False, True], ids=["standard", "neg_risk"])
@pytest.mark.parametrize("signature_type", [0, 1, 2, 3])
def test_order_id_saved_before_sending_is_the_venues(sim, tmp_path, signature_type, neg_risk):
    m = still_market(sim, neg_risk=neg_risk)
    yes = m["token_ids"][0]
    wallet = wallet_for(sim, signature_type)
    sim.fund(wallet["address"], token_id=yes, shares=20)
    h = Harness(sim, tmp_path, wallet=wallet)
    info = h.venue.get_market_info(yes)
    assert info.neg_risk == neg_risk
    saved: list[str] = []
    fill = h.venue.limit_sell(yes, D("0.60"), D(10), info, before_post=saved.append)
    assert fill.status == "live" and saved == [fill.order_id]
    assert [o.order_id for o in h.venue.open_orders()] == saved
    assert sim.balances(wallet["address"])["open_orders"] == 1
