"""doctor's approval checks against bot/sim: the pUSD allowance of each spender each kind of market needs (V1: CTF
exchange; V1 neg-risk: neg-risk exchange and adapter; Protocol V2: ExchangeV3), the share approvals and the auto-redeem
operator read on-chain (``isApprovedForAll`` by JSON-RPC), and the simulator's side of it: per-account, per-contract
approvals, the JSON-RPC it answers, and orders refused only on the kind whose contract lacks its approval."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest
import requests

from bot.doctor import IS_APPROVED_FOR_ALL, Doctor, auto_redeem_approvals, auto_redeem_approved
from bot.errors import OrderRejected
from bot.venue.live import LiveVenue
from tests.e2e.test_doctor import setup as doctor_setup  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]
# polymarket-client 0.14.0's config (polymarket/environments.py); the doctor reads them from LiveVenue.contracts().
CTF_EXCHANGE = "0xE111180000d2663C0091e4f400237545B87B996B"
NEG_RISK_EXCHANGE = "0xe2222d279d744050d28e00520010520000310F59"
#: The current neg-risk adapter (polymarket-client's ``neg_risk_collateral_adapter``, in its list of trading
#: approvals) and the CLOB V1 one it replaced (its ``neg_risk_adapter``, retired on 2026-07-17).
NEG_RISK_ADAPTER = "0xadA2005600Dec949baf300f4C6120000bDB6eAab"
OLD_ADAPTER = "0xd91E80cF2E7be2e162c6513ceD06f1dD0dA35296"
EXCHANGE_V3 = "0xe3333700cA9d93003F00f0F71f8515005F6c00Aa"
AUTO_REDEEM = "0xa1200000d0002264C9a1698e001292D00E1b00af"
CONDITIONAL_TOKENS = "0x4D97DCd97eC945f40cF65F87097ACe5EA0476045"
POSITION_MANAGER = "0x006F54F7f9A22e0000CC2AB60031000000ae9fEF"
#: Some other contract's address, approved, that the venue does not check.
OTHER_SPENDER = "0x1111111111111111111111111111111111111111"
MAX = str(2**256 - 1)


@pytest.fixture
def setup(doctor_setup):  # noqa: F811 (the fixture imported above, by name)
    """test_doctor's account and config (three markets, a funded plain wallet), the config written once."""
    return {**doctor_setup, "cfg": doctor_setup["write"]()}


def run(setup) -> dict:
    doctor = Doctor(setup["cfg"], env=setup["env"], dotenv_path=None)
    return {c.name: c for c in doctor.run()} | {"_ok": doctor.ok}


def venue(setup) -> LiveVenue:
    return LiveVenue(setup["sim"].clob_url, private_key=setup["key"], funder=setup["address"], signature_type=0)


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def rpc_at(monkeypatch, url: str) -> None:
    """LiveVenue.contracts() with another rpc_url (the sim's CLOB serves the JSON-RPC otherwise)."""
    original = LiveVenue.contracts
    monkeypatch.setattr(LiveVenue, "contracts", lambda self: {**original(self), "rpc_url": url})


# -- the doctor ---------------------------------------------------------------------------------------------------

def test_everything_approved_gives_ok_lines(setup):
    checks = run(setup)
    assert checks["_ok"] is True
    for name in ("allowance", "share_approvals", "auto_redeem"):
        assert checks[name].status == "ok", (name, checks[name].message)
    for kind in ("V1 standard markets", "V1 neg-risk markets", "Protocol V2 markets"):
        assert kind in checks["allowance"].message and kind in checks["share_approvals"].message
    assert "ExchangeV3 on the PositionManager" in checks["share_approvals"].message
    # new wallets have not approved the auto-redeem operator (the sim's default)
    redeem = checks["auto_redeem"].message
    assert "not approved" in redeem and "by hand on polymarket.com" in redeem


def test_exchange_v3_revoked_is_named_with_protocol_v2_markets(setup):
    setup["sim"].set_approval(setup["address"], "exchange_v3", False)
    checks = run(setup)
    allowance, shares = checks["allowance"], checks["share_approvals"]
    assert allowance.status == "warning" and checks["_ok"] is True   # the other kinds still trade
    assert "ExchangeV3" in allowance.message and EXCHANGE_V3 in allowance.message
    assert "cannot trade Protocol V2 markets" in allowance.message
    assert "V1" not in allowance.message.split("the other kinds")[0]   # only the V2 kind is named as broken
    assert "polymarket.com" in allowance.fix and EXCHANGE_V3 in allowance.fix and "approve" in allowance.fix
    assert shares.status == "warning" and "ExchangeV3" in shares.message and POSITION_MANAGER in shares.message
    assert "Protocol V2 markets" in shares.message and "setApprovalForAll" in shares.fix


def test_current_neg_risk_adapter_revoked_is_named(setup):
    setup["sim"].set_approval(setup["address"], "neg_risk_adapter", False, token="collateral")
    checks = run(setup)
    c = checks["allowance"]
    assert c.status == "warning" and "neg-risk adapter" in c.message and NEG_RISK_ADAPTER in c.message
    assert "cannot trade V1 neg-risk markets" in c.message and "old" not in c.message
    assert checks["share_approvals"].status == "ok"   # only its pUSD allowance was revoked


def test_an_old_neg_risk_adapter_approved_but_not_the_current_one_is_named_as_such(setup):
    sim, address = setup["sim"], setup["address"]
    sim.set_approval(address, "neg_risk_adapter", False, token="collateral")
    sim.set_approval(address, OLD_ADAPTER, True, token="collateral")
    c = run(setup)["allowance"]
    assert c.status == "warning" and f"old neg-risk adapter {OLD_ADAPTER}" in c.message
    assert "retired on 2026-07-17" in c.message and f"the current one is {NEG_RISK_ADAPTER}" in c.message
    assert NEG_RISK_ADAPTER in c.fix and OLD_ADAPTER not in c.fix


def test_another_approved_spender_is_named_as_not_counting(setup):
    sim, address = setup["sim"], setup["address"]
    sim.set_approval(address, "neg_risk_adapter", False, token="collateral")
    sim.set_approval(address, OTHER_SPENDER, True, token="collateral")
    c = run(setup)["allowance"]
    assert c.status == "warning" and OTHER_SPENDER in c.message
    assert f"not the current neg-risk adapter {NEG_RISK_ADAPTER}" in c.message and "retired" not in c.message


def test_nothing_approved_is_an_error_and_the_command_exits_non_zero(setup):
    setup["sim"].fund(setup["address"], allowance=False)
    checks = run(setup)
    assert checks["allowance"].status == "error" and "no allowance" in checks["allowance"].message
    for address in (CTF_EXCHANGE, NEG_RISK_EXCHANGE, NEG_RISK_ADAPTER, EXCHANGE_V3):
        assert address in checks["allowance"].message
    assert checks["share_approvals"].status == "error" and "every SELL would be refused" in \
        checks["share_approvals"].message
    assert checks["_ok"] is False
    done = subprocess.run([sys.executable, "main_bot.py", "doctor", "--config", setup["cfg"]], cwd=ROOT,
                          env={**os.environ, **setup["env"]}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error    allowance" in done.stdout and "error    share_approvals" in done.stdout
    assert setup["key"] not in done.stdout + done.stderr


def test_shares_not_approved_where_the_bot_can_buy_is_an_error(setup):
    """pUSD approved for ExchangeV3 but not the PositionManager's shares: the bot would buy V2 and could not sell."""
    setup["sim"].set_approval(setup["address"], "exchange_v3", False, token="position_manager")
    checks = run(setup)
    assert checks["allowance"].status == "ok"
    c = checks["share_approvals"]
    assert c.status == "error" and "buy in Protocol V2 markets but not sell" in c.message and checks["_ok"] is False


def test_auto_redeem_on_and_off(setup):
    sim, address = setup["sim"], setup["address"]
    v = venue(setup)
    assert auto_redeem_approved(v) is False
    sim.set_approval(address, "auto_redeem_operator", True)
    c = run(setup)["auto_redeem"]
    assert c.status == "ok" and AUTO_REDEEM in c.message and "winning positions redeem by themselves" in c.message
    assert "by hand" not in c.message
    assert auto_redeem_approved(v) is True
    sim.set_approval(address, "auto_redeem_operator", False, token="position_manager")
    c = run(setup)["auto_redeem"]
    assert c.status == "ok" and "not on the PositionManager" in c.message and "by hand on polymarket.com" in c.message
    assert auto_redeem_approvals(v) == {"conditional_tokens": True, "position_manager": False}
    assert auto_redeem_approved(v) is False


def test_rpc_unreachable_is_a_warning_naming_the_url(setup, monkeypatch):
    dead = dead_url()
    rpc_at(monkeypatch, dead)
    checks = run(setup)
    c = checks["share_approvals"]
    assert c.status == "warning" and dead in c.message and "could not read" in c.message
    assert "auto_redeem" not in checks and checks["allowance"].status == "ok" and checks["_ok"] is True
    assert auto_redeem_approved(venue(setup)) is None


def test_rpc_error_answer_is_a_warning(setup, monkeypatch):
    rpc_at(monkeypatch, setup["sim"].gamma_url)   # a server that is no JSON-RPC node
    c = run(setup)["share_approvals"]
    assert c.status == "warning" and setup["sim"].gamma_url in c.message


def test_a_deposit_wallet_is_asked_about_the_wallet(sim, tmp_path):
    sim.create_market("Deposit?", yes_price=0.5, volatility=0)
    w = sim.new_wallet(usdc=100, signature_type=3)
    sim.set_approval(w["address"], "auto_redeem_operator", True)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "bot": {"dry_run": False, "positions_file": str(tmp_path / "positions.json"), "log_file": None},
        "strategy": {"min_liquidity": 0, "min_hours_to_end": 0},
        "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url, "relayer_host": sim.relayer_url,
                "signature_type": 3}}))
    doctor = Doctor(str(cfg), env={"POLY_PRIVATE_KEY": w["private_key"], "POLY_FUNDER_ADDRESS": w["address"]},
                    dotenv_path=None)
    checks = {c.name: c for c in doctor.run()}
    assert checks["share_approvals"].status == "ok"
    assert "redeem by themselves" in checks["auto_redeem"].message   # the wallet's approval, not the key's


def test_selector_is_is_approved_for_all():
    from eth_utils import keccak

    assert IS_APPROVED_FOR_ALL == "0x" + keccak(text="isApprovedForAll(address,address)")[:4].hex()


# -- the simulator --------------------------------------------------------------------------------------------

def eth_call(sim, to: str, owner: str, operator: str, selector: str = IS_APPROVED_FOR_ALL, rid=1) -> dict:
    data = selector + "".join(a.lower().removeprefix("0x").rjust(64, "0") for a in (owner, operator))
    return {"jsonrpc": "2.0", "id": rid, "method": "eth_call", "params": [{"to": to, "data": data}, "latest"]}


def test_sim_serves_per_spender_allowances_and_is_approved_for_all(sim):
    w = sim.new_wallet(usdc=10)
    address = w["address"]
    v = LiveVenue(sim.clob_url, private_key=w["private_key"], funder=address, signature_type=0)
    assert v.collateral_allowances() == {s: D(MAX) / 10**6 for s in
                                         (CTF_EXCHANGE, NEG_RISK_EXCHANGE, NEG_RISK_ADAPTER, EXCHANGE_V3)}
    sim.set_approval(address, "exchange_v3", False)
    assert v.collateral_allowances()[EXCHANGE_V3] == 0 and v.collateral_allowances()[CTF_EXCHANGE] > 0

    def answer(*calls):
        resp = requests.post(sim.clob_url, json=list(calls) if len(calls) > 1 else calls[0], timeout=5)
        assert resp.status_code == 200
        return resp.json()

    assert answer(eth_call(sim, CONDITIONAL_TOKENS, address, CTF_EXCHANGE))["result"] == "0x" + "0" * 63 + "1"
    batch = answer(eth_call(sim, POSITION_MANAGER, address, EXCHANGE_V3, rid=1),
                   eth_call(sim, POSITION_MANAGER, address, AUTO_REDEEM, rid=2),
                   eth_call(sim, CONDITIONAL_TOKENS, address, AUTO_REDEEM, rid=3))
    assert [int(r["result"], 16) for r in batch] == [0, 0, 0] and [r["id"] for r in batch] == [1, 2, 3]
    sim.set_approval(address, "auto_redeem_operator", True)   # the switch: on both share contracts
    assert int(answer(eth_call(sim, POSITION_MANAGER, address, AUTO_REDEEM))["result"], 16) == 1
    assert int(answer(eth_call(sim, CONDITIONAL_TOKENS, address, AUTO_REDEEM))["result"], 16) == 1
    other = answer(eth_call(sim, EXCHANGE_V3, address, AUTO_REDEEM))   # not a contract the sim answers for
    assert "error" in other and "execution reverted" in other["error"]["message"]
    unknown = answer({"jsonrpc": "2.0", "id": 7, "method": "eth_sendRawTransaction", "params": ["0x00"]})
    assert unknown["error"]["code"] == -32601 and unknown["id"] == 7


def test_sim_control_route_sets_and_reads_approvals(sim):
    w = sim.new_wallet()
    url = sim.clob_url + "/_sim/approvals"
    table = requests.post(url, json={"address": w["address"], "spender": "neg_risk_adapter", "approved": False,
                                     "token": "collateral"}, timeout=5).json()
    assert table["collateral"][NEG_RISK_ADAPTER] is False and table["conditional_tokens"][NEG_RISK_ADAPTER] is True
    assert requests.get(url, params={"address": w["address"]}, timeout=5).json() == sim.approvals(w["address"])
    assert sim.approvals(w["address"])["position_manager"] == {EXCHANGE_V3: True, AUTO_REDEEM: False}
    bad = requests.post(url, json={"address": w["address"], "spender": "no_such_contract"}, timeout=5)
    assert bad.status_code == 400 and "unknown contract" in bad.json()["error"]


def test_sim_refuses_only_the_kind_whose_exchange_lacks_its_approval(sim):
    v1 = sim.create_market("V1?", yes_price=0.5, volatility=0)
    neg = sim.create_market("V1 neg-risk?", yes_price=0.5, volatility=0, neg_risk=True)
    v2 = sim.create_market("V2?", yes_price=0.5, volatility=0, version="v2")
    w = sim.new_wallet(usdc=100)
    v = LiveVenue(sim.clob_url, private_key=w["private_key"], funder=w["address"], signature_type=0)

    def buy(market):
        token = market["token_ids"][0]
        return v.market_buy(token, D(5), D("0.6"), v.get_market_info(token))

    sim.set_approval(w["address"], "exchange_v3", False, token="collateral")
    with pytest.raises(OrderRejected) as refused:
        buy(v2)
    assert "not enough balance / allowance" in refused.value.message and EXCHANGE_V3 in refused.value.message
    assert buy(v1).filled_shares > 0 and buy(neg).filled_shares > 0
    # a SELL needs the share approval of its kind: ExchangeV3 on the PositionManager for a V2 position
    sim.set_approval(w["address"], "exchange_v3", True, token="collateral")
    bought = buy(v2)
    assert bought.filled_shares > 0
    sim.set_approval(w["address"], "exchange_v3", False, token="position_manager")
    token = v2["token_ids"][0]
    with pytest.raises(OrderRejected) as refused:
        v.limit_sell(token, D("0.9"), D(5), v.get_market_info(token))
    assert EXCHANGE_V3 in refused.value.message and "shares" in refused.value.message
    assert buy(v2).filled_shares > 0   # buying still works
    # a V1 neg-risk order needs the neg-risk adapter too (the sim's conservative rule)
    sim.set_approval(w["address"], "neg_risk_adapter", False)
    with pytest.raises(OrderRejected) as refused:
        buy(neg)
    assert NEG_RISK_ADAPTER in refused.value.message
    assert buy(v1).filled_shares > 0
