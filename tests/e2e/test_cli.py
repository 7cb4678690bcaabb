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
