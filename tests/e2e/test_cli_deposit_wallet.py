"""The command line from a deposit wallet (signature_type 3): --sim --sim-wallet deposit trades on the embedded
exchange, and --live-once goes through doctor and trades one position to its end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bot.config import feed_urls
from bot.position_manager import CloseReason, PositionState, PositionStore

ROOT = Path(__file__).resolve().parents[2]
#: --sim-loop-seconds for --sim runs: the demo's 1 s loops, shortened.
FAST = "0.1"


def main_bot(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "main_bot.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_sim_run_from_a_deposit_wallet(tmp_path):
    sim_dir = tmp_path / "sim"
    done = main_bot("--sim", "--sim-wallet", "deposit", "--loops", "8", "--sim-dir", str(sim_dir), "--seed", "3",
                    "--sim-loop-seconds", FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "throwaway deposit wallet (signature_type 3, owner 0x" in done.stderr
    assert "Placing BUY" in done.stderr and "BOUGHT" in done.stderr
    # (a FAK buy may find the moving market gone: that refusal is the market's, never the wallet's)
    assert "not allowed" not in done.stderr and "invalid signature" not in done.stderr, done.stderr[-2000:]
    assert "has to be the address of the API KEY" not in done.stderr
    positions = json.loads((sim_dir / "positions.json").read_text())["positions"]
    assert positions and all(p["entry_order_id"] for p in positions)


def test_live_once_from_a_deposit_wallet(sim, tmp_path):
    for i in range(3):
        sim.create_market(f"Once {i}?", yes_price=0.5, volatility=0)
    wallet = sim.new_wallet(usdc=50, signature_type=3)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "bot": {"dry_run": False, "loop_interval_seconds": 0.2, "positions_file": str(tmp_path / "positions.json"),
                "log_file": None},
        "capital": {"total": 50, "max_trade_size": 10, "max_positions": 5},
        "trading": {"use_concurrent_orders": True, "order_check_interval_seconds": 0.2},
        "strategy": {"min_liquidity": 0, "min_hours_to_end": 0, "scan_interval_seconds": 0.2,
                     "max_hold_hours": 1.5 / 3600},
        "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url, "relayer_host": sim.relayer_url,
                "signature_type": 3},
        "feeds": feed_urls(sim.ws_url),
    }))
    env = {**os.environ, "POLY_PRIVATE_KEY": wallet["private_key"], "POLY_FUNDER_ADDRESS": wallet["address"]}
    done = main_bot("--config", str(cfg), "--live-once", "--yes", env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ok       deposit_wallet" in done.stdout and "0 error(s)" in done.stdout
    pos = PositionStore(tmp_path / "positions.json").load().all_positions()
    assert len(pos) == 1 and pos[0].status == PositionState.CLOSED and pos[0].close_reason == CloseReason.TIME_EXIT
    assert sim.balances(wallet["address"])["open_orders"] == 0
    assert sim.balances(wallet["owner"]) == {"usdc": "0", "tokens": {}, "open_orders": 0}


def test_live_once_refuses_an_undeployed_deposit_wallet(sim, tmp_path):
    sim.create_market("Refuse?", yes_price=0.5, volatility=0)
    wallet = sim.new_wallet(usdc=50, signature_type=3, deployed=False)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "bot": {"dry_run": False, "positions_file": str(tmp_path / "positions.json"), "log_file": None},
        "strategy": {"min_liquidity": 0, "min_hours_to_end": 0},
        "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url, "relayer_host": sim.relayer_url,
                "signature_type": 3},
    }))
    env = {**os.environ, "POLY_PRIVATE_KEY": wallet["private_key"], "POLY_FUNDER_ADDRESS": wallet["address"]}
    refused = main_bot("--config", str(cfg), "--live-once", "--yes", env=env)
    assert refused.returncode == 1 and "doctor found errors" in refused.stderr
    assert "error    deposit_wallet" in refused.stdout and "not deployed" in refused.stdout
