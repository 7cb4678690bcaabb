"""Smoke runs of the benchmarks (benchmarks/sl_latency.py, api_calls.py, replay.py, signing.py): a few positions
each, checking what they measure is there, never how fast it was."""
from __future__ import annotations

import logging

from benchmarks import api_calls, sl_latency
from bot.position_manager import ExitMode


def setup_module() -> None:
    logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)


def test_sl_latency_push_measures_every_exit_and_tp_fill():
    r = sl_latency.run_case(sl_latency.Case("push", 1.0, ExitMode.LIMIT_ORDERS), exits=3, tps=2, seed=1)
    assert r["exits"] == 3 and r["tp_fills"] == 2 and r["not_closed"] == 0
    assert r["trigger_sources"] == {"push": 3} and r["p50_ms"] > 0 and r["tp_fill_known_p50_ms"] > 0


def test_api_calls_push_idle_and_lifecycles():
    row = api_calls.run_case(ExitMode.LIMIT_ORDERS, 3, minutes=5, push=True)
    assert row["feed"] == "push" and row["calls_per_hour"] < 360   # no batched book read every loop
    life = api_calls.run_lifecycles(ExitMode.LIMIT_ORDERS, push=True, count=2, hold_minutes=1)
    assert life["close_reasons"] == {"stop_loss": 1, "take_profit": 1}
    assert life["sl_exits_by_trigger_source"] == {"push": 1}
    assert 0 < life["calls_per_lifecycle_without_discovery"] < life["calls_per_lifecycle"]


def test_replay_prints_what_it_measured():
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "benchmarks/replay.py", "--markets", "2", "--days", "0.3", "--json"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert {"markets", "days", "points", "positions", "seconds", "sim_minutes_per_second"} <= set(out)
    assert out["markets"] == 2 and out["points"] == 2 * int(0.3 * 1440) and out["positions"] > 0


def test_signing_measures_every_kind_of_order():
    from benchmarks import signing

    rows = signing.measure(25)
    assert set(rows) == {f"{w}/{k}/{o}" for w in ("eoa", "deposit_wallet") for k in ("v1", "v2")
                         for o in ("limit", "fak")}
    assert all(r["mean_ms"] > 0 for r in rows.values())
