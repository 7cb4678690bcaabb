"""The command line as a user runs it: --sim trades on the embedded exchange, status reads the result,
SIGTERM finishes the step and saves."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args, timeout=120):
    return subprocess.run([sys.executable, "main_bot.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_sim_run_then_status_json(tmp_path):
    sim_dir = tmp_path / "sim"
    done = run("--sim", "--loops", "8", "--sim-dir", str(sim_dir), "--seed", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Placing BUY" in done.stderr and "Loop 8:" in done.stderr
    status = run("status", "--sim", "--sim-dir", str(sim_dir), "--json")
    assert status.returncode == 0, status.stderr
    payload = json.loads(status.stdout)
    assert set(payload) >= {"positions", "blacklist", "paused"}
    assert payload["positions"], "an 8-loop sim run opens positions"
    for p in payload["positions"]:
        for key in ("id", "token_id", "condition_id", "exit_mode", "status", "close_reason", "shares", "entry_price",
                    "tp_price", "sl_price", "tp_order_id", "sl_order_id", "realized_pnl"):
            assert key in p
        assert p["exit_mode"] in ("monitor", "limit_orders")
        assert p["sl_order_id"] is None
    log = (sim_dir / "bot.log").read_text()
    assert "Bot stopped after 8 loop(s)" in log


def test_sigterm_finishes_the_step_and_saves(tmp_path):
    sim_dir = tmp_path / "sim"
    proc = subprocess.Popen([sys.executable, "main_bot.py", "--sim", "--sim-dir", str(sim_dir)], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "Loop 3:" in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "finishing this step, saving, exiting" in rest and "Bot stopped" in rest
    state = json.loads((sim_dir / "positions.json").read_text())
    assert state["schema_version"] == 2


def test_bad_config_is_a_clear_error(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text('{"strategy": {"min_price": 0.9, "max_price": 0.5}}')
    done = run("--config", str(cfg), "--loops", "1")
    assert done.returncode == 2
    assert f"{cfg}: strategy.min_price: must be below strategy.max_price" in done.stderr
    assert "Traceback" not in done.stderr


def test_corrupt_positions_file_stops_the_bot_and_is_kept(tmp_path):
    cfg = tmp_path / "config.json"
    positions = tmp_path / "positions.json"
    positions.write_text('{"positions": [{"token_id": ')
    cfg.write_text(json.dumps({"bot": {"positions_file": str(positions), "log_file": None}}))
    done = run("--config", str(cfg), "--loops", "1")
    assert done.returncode == 2 and "not valid JSON" in done.stderr and "left untouched" in done.stderr
    assert positions.read_text() == '{"positions": [{"token_id": '


def test_live_run_never_writes_a_secret(tmp_path):
    """A live run on the simulated venue: the private key and the API secret appear nowhere it writes."""
    import base64
    import hashlib  # noqa: F401
    import os

    from eth_account import Account

    from bot.sim import SimExchange

    acct = Account.create()
    key = "0x" + acct.key.hex().removeprefix("0x")
    with SimExchange(seed=9, markets=3) as sim:
        sim.fund(acct.address, usdc=100)
        creds = sim.state.keys.creds_for(acct.address, 0)
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps({
            "bot": {"dry_run": False, "loop_interval_seconds": 0.2, "positions_file": str(tmp_path / "positions.json"),
                    "log_file": str(tmp_path / "logs" / "bot.log"), "log_level": "DEBUG"},
            "strategy": {"min_liquidity": 0, "min_hours_to_end": 0, "scan_interval_seconds": 0.2},
            "trading": {"use_concurrent_orders": True},
            "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url},
        }))
        env = {**os.environ, "POLY_PRIVATE_KEY": key, "POLY_FUNDER_ADDRESS": acct.address,
               "POLY_API_KEY": creds["apiKey"], "POLY_API_SECRET": creds["secret"],
               "POLY_API_PASSPHRASE": creds["passphrase"]}
        done = subprocess.run([sys.executable, "main_bot.py", "--config", str(cfg), "--loops", "5"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "LIVE TRADING" in done.stderr and "up to $10 per trade" in done.stderr
        assert sim.balances(acct.address)["open_orders"] >= 1   # it really traded: TPs rest
        # a bad key is refused without being echoed
        bad = "0x" + "g" * 64
        refused = subprocess.run([sys.executable, "main_bot.py", "--config", str(cfg), "--loops", "1"], cwd=ROOT,
                                 env={**env, "POLY_PRIVATE_KEY": bad}, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "POLY_PRIVATE_KEY is not a 64-hex-digit" in refused.stderr
    secret_bytes = base64.urlsafe_b64decode(creds["secret"]).hex()
    needles = [key, key[2:], creds["secret"], creds["passphrase"], secret_bytes, "g" * 64]
    written = [done.stdout, done.stderr, refused.stdout, refused.stderr]
    written += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.name != "config.json"]
    for text in written:
        for needle in needles:
            assert needle not in text
