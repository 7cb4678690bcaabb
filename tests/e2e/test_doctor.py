"""doctor against bot/sim: every check passes on a good setup, and each failure is provoked once."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from bot.clock import SimulatedClock
from bot.doctor import Doctor, smallest_trade
from bot.venue.sdk import SDK_PIN

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup(sim, tmp_path):
    for i in range(3):
        sim.create_market(f"Doctor market {i}?", yes_price=0.5, volatility=0)
    acct = Account.create()
    sim.fund(acct.address, usdc=100)
    key = "0x" + acct.key.hex().removeprefix("0x")

    def write(**api):
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps({
            "bot": {"dry_run": False, "positions_file": str(tmp_path / "positions.json"), "log_file": None},
            "trading": {"use_concurrent_orders": True},
            "strategy": {"min_liquidity": 0, "min_hours_to_end": 0},
            "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url, **api},
        }))
        return str(cfg)

    return {"sim": sim, "key": key, "address": acct.address, "write": write,
            "env": {"POLY_PRIVATE_KEY": key, "POLY_FUNDER_ADDRESS": acct.address}}


def run(cfg, env, clock=None) -> dict:
    doctor = Doctor(cfg, env=env, clock=clock, dotenv_path=None)
    return {c.name: c for c in doctor.run()} | {"_ok": doctor.ok}


def test_all_checks_pass_on_a_good_setup(setup):
    checks = run(setup["write"](), setup["env"])
    assert checks["_ok"] is True
    for name in ("sdk", "config", "credentials", "clob", "gamma", "clock", "api_credentials", "balance", "allowance",
                 "share_approvals", "auto_redeem", "positions", "trade_size"):
        assert checks[name].status == "ok", (name, checks[name].message)
    assert "derived from the key" in checks["api_credentials"].message
    assert "$100" in checks["balance"].message
    assert checks["sdk"].message == f"polymarket-client {SDK_PIN} installed (the pinned version)"


def test_sdk_not_the_pinned_version(monkeypatch):
    from bot.venue import sdk

    monkeypatch.setattr(sdk, "installed_version", lambda: "0.15.0")
    doctor = Doctor("unused.json", env={}, dotenv_path=None)
    doctor.check_sdk()
    c = doctor.checks[0]
    assert c.status == "error" and "polymarket-client 0.15.0" in c.message and SDK_PIN in c.message
    assert f"polymarket-client=={SDK_PIN}" in c.fix


def test_sdk_missing(monkeypatch):
    real = importlib.metadata.version

    def version(name):
        if name == "polymarket-client":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    doctor = Doctor("unused.json", env={}, dotenv_path=None)
    doctor.check_sdk()
    c = doctor.checks[0]
    assert c.status == "error" and "polymarket-client is not installed" in c.message
    assert "requirements.txt" in c.fix and "py-clob-client-v2" not in c.message + c.fix


def test_rejected_v1_sdk_is_a_warning(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "py_clob_client" else
                        real(name, *a))
    doctor = Doctor("unused.json", env={}, dotenv_path=None)
    doctor.check_sdk()
    v1 = {c.name: c for c in doctor.checks}["sdk_v1"]
    assert v1.status == "warning" and "rejected by Polymarket" in v1.message
    assert v1.fix == "pip uninstall py-clob-client"


def test_bad_key(setup):
    checks = run(setup["write"](), {**setup["env"], "POLY_PRIVATE_KEY": "0x1234"})
    assert checks["credentials"].status == "error" and "not a 64-hex-digit" in checks["credentials"].message
    assert "0x1234" not in checks["credentials"].message and checks["_ok"] is False


def test_wrong_funder_for_the_signature_type(setup):
    checks = run(setup["write"](), {**setup["env"], "POLY_FUNDER_ADDRESS": "0x" + "12" * 20})
    c = checks["credentials"]
    assert c.status == "error" and "signature_type 0" in c.message and "signature_type to 1" in c.fix


def test_no_allowance(setup):
    setup["sim"].fund(setup["address"], allowance=False)
    checks = run(setup["write"](), setup["env"])
    assert checks["allowance"].status == "error" and "no allowance" in checks["allowance"].message
    assert checks["_ok"] is False


def test_skewed_clock(setup):
    skewed = SimulatedClock(start=setup["sim"].clock.time() + 120)
    checks = run(setup["write"](), setup["env"], clock=skewed)
    assert checks["clock"].status == "error" and "ahead of the venue by 12" in checks["clock"].message


def test_bad_host(setup):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    checks = run(setup["write"](clob_host=dead), setup["env"])
    assert checks["clob"].status == "error" and dead in checks["clob"].message and checks["_ok"] is False


def test_wrong_api_credentials(setup):
    env = {**setup["env"], "POLY_API_KEY": "k", "POLY_API_SECRET": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
           "POLY_API_PASSPHRASE": "p"}
    checks = run(setup["write"](), env)
    assert checks["api_credentials"].status == "error" and "401" in checks["api_credentials"].message


def test_trade_size_too_small_for_a_resting_tp(setup, tmp_path):
    cfg = Path(setup["write"]())
    data = json.loads(cfg.read_text())
    data["capital"] = {"total": 2, "max_trade_size": 2}
    cfg.write_text(json.dumps(data))
    checks = run(str(cfg), setup["env"])
    assert checks["trade_size"].status == "warning" and "too small for a resting TP" in checks["trade_size"].message
    assert "at least $2.66" in checks["trade_size"].fix


def test_smallest_trade():
    assert smallest_trade(__import__("decimal").Decimal("0.10"), 5, False) == 1
    # 5 sh x 1.02 x (0.50 + 2 ticks)
    assert str(smallest_trade(__import__("decimal").Decimal("0.50"), 5, True)) == "2.66"


def test_doctor_command_exit_codes(setup):
    cfg = setup["write"]()
    ok = subprocess.run([sys.executable, "main_bot.py", "doctor", "--config", cfg, "--json"], cwd=ROOT,
                        env={**__import__("os").environ, **setup["env"]}, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    setup["sim"].fund(setup["address"], allowance=False)
    bad = subprocess.run([sys.executable, "main_bot.py", "doctor", "--config", cfg], cwd=ROOT,
                         env={**__import__("os").environ, **setup["env"]}, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "error    allowance" in bad.stdout


def test_broken_config_and_corrupt_positions_file(setup, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"capital": {"max_positions": 0}}')
    checks = run(str(bad), setup["env"])
    assert checks["config"].status == "error" and "capital.max_positions" in checks["config"].message
    cfg = setup["write"]()
    (tmp_path / "positions.json").write_text("{not json")
    checks = run(cfg, setup["env"])
    assert checks["positions"].status == "error" and "not valid JSON" in checks["positions"].message
