"""doctor for a deposit wallet (signature_type 3) against bot/sim: a good setup passes, and each
misconfiguration is named with what to do on polymarket.com."""
from __future__ import annotations

import json
import socket

import pytest
from eth_account import Account

from bot.doctor import Doctor


@pytest.fixture
def setup(sim, tmp_path):
    for i in range(3):
        sim.create_market(f"Doctor market {i}?", yes_price=0.5, volatility=0)

    def write(**api):
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps({
            "bot": {"dry_run": False, "positions_file": str(tmp_path / "positions.json"), "log_file": None},
            "trading": {"use_concurrent_orders": True},
            "strategy": {"min_liquidity": 0, "min_hours_to_end": 0},
            "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url, "relayer_host": sim.relayer_url,
                    "signature_type": 3, **api},
        }))
        return str(cfg)

    def wallet(deployed=True):
        w = sim.new_wallet(usdc=100, signature_type=3, deployed=deployed)
        return w, {"POLY_PRIVATE_KEY": w["private_key"], "POLY_FUNDER_ADDRESS": w["address"]}

    return {"sim": sim, "write": write, "wallet": wallet}


def run(cfg, env) -> dict:
    doctor = Doctor(cfg, env=env, dotenv_path=None)
    return {c.name: c for c in doctor.run()} | {"_ok": doctor.ok}


def test_a_deployed_deposit_wallet_passes(setup):
    w, env = setup["wallet"]()
    checks = run(setup["write"](), env)
    assert checks["_ok"] is True, {k: v.message for k, v in checks.items() if k != "_ok"}
    for name in ("credentials", "deposit_wallet", "api_credentials", "balance", "allowance", "share_approvals",
                 "auto_redeem"):
        assert checks[name].status == "ok", (name, checks[name].message)
    assert "deposit wallet" in checks["credentials"].message and w["address"] in checks["credentials"].message
    assert w["owner"] in checks["deposit_wallet"].message
    assert "$100" in checks["balance"].message   # the wallet's balance, read with signature_type 3


def test_funder_is_the_keys_own_address(setup):
    w, env = setup["wallet"]()
    checks = run(setup["write"](), {**env, "POLY_FUNDER_ADDRESS": w["owner"]})
    c = checks["credentials"]
    assert c.status == "error" and checks["_ok"] is False
    assert "the key's own address" in c.message and w["address"] in c.message   # names the right wallet
    assert "profile menu" in c.fix and "polymarket.com" in c.fix and "POLY_FUNDER_ADDRESS" in c.fix


def test_funder_is_another_owners_wallet(setup):
    mine, env = setup["wallet"]()
    theirs, _ = setup["wallet"]()
    checks = run(setup["write"](), {**env, "POLY_FUNDER_ADDRESS": theirs["address"]})
    c = checks["credentials"]
    assert c.status == "error" and "not the deposit wallet of this key" in c.message
    assert mine["owner"] in c.message and mine["address"] in c.message and "owner key" in c.fix


def test_no_funder(setup):
    _, env = setup["wallet"]()
    checks = run(setup["write"](), {"POLY_PRIVATE_KEY": env["POLY_PRIVATE_KEY"]})
    assert checks["credentials"].status == "error" and "needs POLY_FUNDER_ADDRESS" in checks["credentials"].message


def test_undeployed_wallet(setup):
    w, env = setup["wallet"](deployed=False)
    checks = run(setup["write"](), env)
    c = checks["deposit_wallet"]
    assert c.status == "error" and "not deployed" in c.message and w["address"] in c.message
    assert "polymarket.com" in c.fix and "first deposit" in c.fix and checks["_ok"] is False
    setup["sim"].deploy_deposit_wallet(w["address"])
    assert run(setup["write"](), env)["deposit_wallet"].status == "ok"


def test_relayer_unreachable_is_a_warning(setup):
    _, env = setup["wallet"]()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    checks = run(setup["write"](relayer_host=dead), env)
    assert checks["deposit_wallet"].status == "warning" and dead in checks["deposit_wallet"].message
    assert checks["_ok"] is True


def test_deposit_wallet_with_signature_type_0(setup):
    w, env = setup["wallet"]()
    checks = run(setup["write"](signature_type=0), env)
    c = checks["credentials"]
    assert c.status == "error" and "signature_type 0" in c.message and "3 (deposit wallet)" in c.fix


def test_plain_key_with_signature_type_3(setup):
    acct = Account.create()
    env = {"POLY_PRIVATE_KEY": "0x" + acct.key.hex().removeprefix("0x"), "POLY_FUNDER_ADDRESS": acct.address}
    checks = run(setup["write"](), env)
    assert checks["credentials"].status == "error" and "the key's own address" in checks["credentials"].message
