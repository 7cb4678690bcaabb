"""The seed's phases 3 and 5 on bot/sim: --live-once trades exactly one smallest valid position to its end;
convert --to monitor rolls concurrent positions back to monitoring."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

from eth_account import Account

from bot.config import feed_urls, with_overrides
from bot.doctor import smallest_trade
from bot.position_manager import CloseReason, ExitMode, PositionState, PositionStore
from tests.e2e.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]


def live_config(tmp_path, sim, **strategy):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "bot": {"dry_run": False, "loop_interval_seconds": 0.2, "positions_file": str(tmp_path / "positions.json"),
                "log_file": None},
        "capital": {"total": 50, "max_trade_size": 10, "max_positions": 5},
        "trading": {"use_concurrent_orders": True, "order_check_interval_seconds": 0.2},
        "strategy": {"min_liquidity": 0, "min_hours_to_end": 0, "scan_interval_seconds": 0.2,
                     "max_hold_hours": 1.5 / 3600, **strategy},
        "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url},
        "feeds": feed_urls(sim.ws_url),
    }))
    return cfg


def wallet(sim, usdc=50):
    acct = Account.create()
    sim.fund(acct.address, usdc=usdc)
    key = "0x" + acct.key.hex().removeprefix("0x")
    return acct.address, {**os.environ, "POLY_PRIVATE_KEY": key, "POLY_FUNDER_ADDRESS": acct.address}


def main_bot(*args, env, timeout=120, stdin=subprocess.DEVNULL):
    return subprocess.run([sys.executable, "main_bot.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=stdin)


def test_live_once_trades_one_smallest_position_to_its_end(sim, tmp_path):
    for i in range(3):
        sim.create_market(f"Once {i}?", yes_price=0.5, volatility=0)
    address, env = wallet(sim)
    cfg = live_config(tmp_path, sim)
    done = main_bot("--config", str(cfg), "--live-once", "--yes", env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "0 error(s)" in done.stdout and "stopping (--live-once)" in done.stderr
    state = PositionStore(tmp_path / "positions.json").load()
    assert len(state.all_positions()) == 1
    pos = state.all_positions()[0]
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TIME_EXIT
    assert pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.tp_order_id is None
    # the smallest valid size: enough for a 5-share TP at 0.51, far below max_trade_size (the fee comes on top)
    entry = next(r for r in pos.orders if r.role.value == "entry")
    assert D("2.5") < entry.usdc <= smallest_trade(D("0.51"), D(5), True) and pos.entry_shares >= 5
    assert pos.entry_cost == entry.usdc + entry.fee
    assert sim.balances(address)["open_orders"] == 0


def test_live_once_refuses_on_doctor_errors_and_without_a_terminal(sim, tmp_path):
    sim.create_market("Refuse?", yes_price=0.5, volatility=0)
    address, env = wallet(sim)
    cfg = live_config(tmp_path, sim)
    no_tty = main_bot("--config", str(cfg), "--live-once", env=env)
    assert no_tty.returncode == 1 and "add --yes" in no_tty.stderr
    sim.fund(address, allowance=False)
    refused = main_bot("--config", str(cfg), "--live-once", "--yes", env=env)
    assert refused.returncode == 1 and "doctor found errors" in refused.stderr
    assert not (tmp_path / "positions.json").exists() or \
        not PositionStore(tmp_path / "positions.json").load().all_positions()


def test_convert_to_monitor_cancels_tps_and_keeps_managing(sim, tmp_path):
    a = sim.create_market("Convert A?", yes_price=0.5, volatility=0)
    b = sim.create_market("Convert B?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path, capital__max_positions=2)
    h.loop(2)
    h.no_new_trades()
    first = next(p for p in h.positions if p.token_id == a["token_ids"][0])
    second = next(p for p in h.positions if p.token_id == b["token_ids"][0])
    assert h.venue_balances()["open_orders"] == 2
    sim.set_price(b["token_ids"][0], 0.65)   # B's TP fills before the user converts
    lines = h.bot.manage.convert_to_monitor(h.bot.now())
    assert first.exit_mode == ExitMode.MONITOR and first.tp_order_id is None
    assert first.fallback_reason == "converted to monitor by the user"
    assert second.status == PositionState.CLOSED and second.close_reason == CloseReason.TAKE_PROFIT
    assert any("now monitored" in line for line in lines) and any("had filled" in line for line in lines)
    assert h.venue_balances()["open_orders"] == 0
    # the seed's rollback flag
    h.config = h.bot.config = with_overrides(h.config, trading__use_concurrent_orders=False)
    sim.set_price(a["token_ids"][0], 0.40)
    h.loop()
    assert first.status == PositionState.CLOSED and first.close_reason == CloseReason.STOP_LOSS


def test_convert_command(sim, tmp_path):
    sim.create_market("Convert CLI?", yes_price=0.5, volatility=0)
    address, env = wallet(sim)
    cfg = live_config(tmp_path, sim, max_hold_hours=24)
    opened = main_bot("--config", str(cfg), "--loops", "2", env=env)
    assert opened.returncode == 0, opened.stderr[-2000:]
    pos_id = PositionStore(tmp_path / "positions.json").load().all_positions()[0].id
    unknown = main_bot("convert", "--config", str(cfg), "--to", "monitor", "--id", "nope", env=env)
    assert "no open limit_orders position with id nope" in unknown.stdout
    done = main_bot("convert", "--config", str(cfg), "--to", "monitor", "--id", pos_id, env=env)
    assert done.returncode == 0 and f"{pos_id}: now monitored" in done.stdout
    assert PositionStore(tmp_path / "positions.json").load().all_positions()[0].exit_mode == ExitMode.MONITOR
    assert sim.balances(address)["open_orders"] == 0


def test_status_of_a_stopped_bot_reads_the_books_once_and_says_so(sim, tmp_path):
    sim.create_market("Status?", yes_price=0.5, volatility=0)
    _, env = wallet(sim)
    cfg = live_config(tmp_path, sim, max_hold_hours=1)
    done = main_bot("--config", str(cfg), "--loops", "3", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    before = sim.request_counts()["by_endpoint"].get("POST /books", 0)
    shown = main_bot("--config", str(cfg), "status", "--json", env=env)
    assert shown.returncode == 0, shown.stderr[-2000:]
    payload = json.loads(shown.stdout)
    assert sim.request_counts()["by_endpoint"].get("POST /books", 0) == before + 1   # one batched read
    assert "not running: bids read now" in payload["totals"]["bids_from"]
    pos = only_open(payload)
    assert pos["bid"] == "0.49" and D(pos["unrealized_pnl"]) < 0 and pos["ticks_to_sl"] == "4"
    assert D(payload["totals"]["open_value"]) > 0 and payload["totals"]["cash"] is not None
    text = main_bot("--config", str(cfg), "status", env=env).stdout
    assert "upnl" in text and "total: cash $" in text


def only_open(payload):
    rows = [p for p in payload["positions"] if p["status"] == "open"]
    assert len(rows) == 1, rows
    return rows[0]
