"""The A/B report from a known history: figures, verdict, JSON, plot."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

from bot.position_manager import BotState, CloseReason, ExitMode, Position, PositionState, PositionStore
from bot.report import MIN_SAMPLE, build_report, format_text, plot, slippage

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def closed(mode, reason, entry, exit_price, shares=D(10), minutes=0, **metrics):
    p = Position(token_id=f"t{minutes}{mode.value}", exit_mode=mode, status=PositionState.CLOSED, close_reason=reason,
                 entry_price=entry, entry_cost=entry * shares, entry_shares=shares, shares=D(0),
                 tp_price=entry + D("0.05"), sl_price=entry - D("0.05"), sold_shares=shares,
                 exit_proceeds=exit_price * shares, exit_price=exit_price,
                 realized_pnl=(exit_price - entry) * shares, opened_at=T0 + timedelta(minutes=minutes),
                 updated_at=T0, closed_at=T0 + timedelta(minutes=minutes + 5), metrics=metrics,
                 tp_filled_shares=shares if reason == CloseReason.TAKE_PROFIT and mode == ExitMode.LIMIT_ORDERS else 0)
    return p


def known_state() -> BotState:
    L, M = ExitMode.LIMIT_ORDERS, ExitMode.MONITOR
    state = BotState(positions=[
        closed(L, CloseReason.TAKE_PROFIT, D("0.50"), D("0.55"), minutes=1),
        closed(L, CloseReason.STOP_LOSS, D("0.50"), D("0.44"), minutes=2, exit_retries=2, cancel_race=True),
        closed(M, CloseReason.TAKE_PROFIT, D("0.40"), D("0.46"), minutes=3),
        closed(M, CloseReason.STOP_LOSS, D("0.40"), D("0.34"), minutes=4),
        closed(M, CloseReason.TIME_EXIT, D("0.40"), D("0.41"), minutes=5, trigger_bid="0.42"),
    ])
    state.positions[2].fallback_reason = "TP refused"
    state.counters = {"run_seconds": 7200, "api_calls_by_hour": {
        "2026-11-20T12:00": {"limit_orders": {"POST /books": 100, "GET /data/orders": 20},
                             "monitor": {"POST /books": 300}, "shared": {"GET /data/orders": 3}}}}
    return state


def test_figures_of_a_known_history():
    r = build_report(known_state())
    lim, mon = r["modes"]["limit_orders"], r["modes"]["monitor"]
    assert (lim["opened"], lim["closed"], mon["closed"]) == (2, 2, 3)
    assert lim["win_rate"] == 0.5 and mon["win_rate"] == round(2 / 3, 4)
    assert lim["total_pnl"] == -0.1 and mon["total_pnl"] == 0.1
    assert lim["tp_fill_rate"] == 0.5 and lim["tp_filled_as_maker"] == 1 and mon["tp_filled_as_maker"] == 0
    # slippage against the target: TP 0.55 hit exactly (0), SL 0.45 filled at 0.44 (-1 tick, -$0.10)
    assert lim["avg_slippage_ticks"] == -0.5 and lim["worst_slippage_ticks"] == -1.0
    assert lim["worst_slippage_usd"] == -0.1
    # monitor: TP 0.45 sold at 0.46 (+1), SL 0.35 at 0.34 (-1), time exit at 0.41 vs trigger bid 0.42 (-1)
    assert mon["avg_slippage_ticks"] == round(-1 / 3, 3)
    assert lim["api_calls_per_hour"] == 60.0 and mon["api_calls_per_hour"] == 150.0
    assert r["shared_api_calls"] == 3 and r["difference"]["api_calls_per_hour"] == -90.0
    assert lim["errors_per_position"] == 1.5 and mon["fallbacks"] == 1
    assert "Too few closed positions" in r["verdict"] and str(MIN_SAMPLE) in r["verdict"]


def test_verdict_with_a_large_sample():
    L, M = ExitMode.LIMIT_ORDERS, ExitMode.MONITOR
    ps = []
    for i in range(40):
        ps.append(closed(L, CloseReason.TAKE_PROFIT, D("0.50"), D("0.55") + D(i % 3) / 100, minutes=i))
        ps.append(closed(M, CloseReason.STOP_LOSS, D("0.50"), D("0.45") - D(i % 3) / 100, minutes=i))
    r = build_report(BotState(positions=ps))
    assert r["difference"]["welch_t"] > 2 and r["verdict"].startswith("limit_orders earns more per position")


def test_since_filters_positions():
    r = build_report(known_state(), since=T0 + timedelta(minutes=3))
    assert r["modes"]["limit_orders"]["opened"] == 0 and r["modes"]["monitor"]["opened"] == 3


def test_text_table_and_plot(tmp_path):
    text = format_text(build_report(known_state()))
    assert "limit_orders" in text.splitlines()[2] and "win rate" in text and "verdict:" in text
    assert "50.0%" in text and "$-0.1000" in text
    png = tmp_path / "ab.png"
    plot(known_state(), str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_slippage_is_none_without_a_target():
    p = closed(ExitMode.MONITOR, CloseReason.MANUAL, D("0.4"), D("0.41"))
    assert slippage(p) is None


def test_report_command_json_and_plot(tmp_path):
    PositionStore(tmp_path / "positions.json").save(known_state())
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"bot": {"positions_file": str(tmp_path / "positions.json"), "log_file": None}}))
    out = subprocess.run([sys.executable, "main_bot.py", "report", "--config", str(cfg), "--json", "--plot",
                          str(tmp_path / "r.png")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["modes"]["monitor"]["closed"] == 3 and (tmp_path / "r.png").stat().st_size > 0
    bad = subprocess.run([sys.executable, "main_bot.py", "report", "--config", str(cfg), "--since", "yesterday"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr


def test_status_and_report_say_how_exits_were_triggered_and_how_fast():
    from bot.report import _triggers, trigger_text

    def closed(source, delay):
        p = Position(token_id="t", status=PositionState.CLOSED, exit_mode=ExitMode.MONITOR,
                     close_reason=CloseReason.STOP_LOSS)
        p.metrics = {"trigger_source": source, **({"trigger_delay_ms": delay} if delay is not None else {})}
        return p

    assert trigger_text(closed("push", 12.4)) == "push 12ms"
    assert trigger_text(closed("poll", 3100.0)) == "poll 3.1s"
    assert trigger_text(closed("push", None)) == "push"
    assert trigger_text(Position(token_id="t")) == "-"
    out = _triggers([closed("push", 10.0), closed("push", 30.0), closed("push", 20.0), closed("poll", 4000.0)])
    assert out == {"push": {"exits": 3, "p50_delay_ms": 20.0, "max_delay_ms": 30.0},
                   "poll": {"exits": 1, "p50_delay_ms": 4000.0, "max_delay_ms": 4000.0}}
