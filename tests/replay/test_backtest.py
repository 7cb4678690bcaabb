"""The backtest command's parts: grids (parsing, every combination in parallel processes and on a Dask cluster,
ranked, each the same as a single replay), the cache of markets, the files written, ``backtest --sim``."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from bot.replay import backtest
from bot.replay.backtest import BacktestError, Job, cache_markets, parse_grid, replay_markets, run_grid
from bot.replay.market import FillModel
from tests.replay.test_run import STEP, T0, config, market, replay

ROOT = Path(__file__).resolve().parents[2]


def paths(n: int, steps: int, seed: int = 5) -> list[list[str]]:
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p, path = 0.5, []
        for _ in range(steps):
            p = min(0.9, max(0.1, round(p + rng.choice((-0.01, 0, 0.01, 0.02, -0.02)), 2)))
            path.append(f"{p:.2f}")
        out.append(path)
    return out


@pytest.fixture
def cached(tmp_path):
    markets = [market(i + 1, path, winner="Yes" if i % 2 else "No") for i, path in enumerate(paths(4, 600))]
    metas = cache_markets(tmp_path / "cache", markets, 1)
    return tmp_path / "cache", metas, markets


def test_a_grid_is_every_combination_of_its_values():
    assert backtest.with_settings(config(), parse_grid(["trailing_stop_pct=0.03,0.05"])[1]).strategy.trailing_stop_pct \
        == Decimal("0.05")   # the stops that follow the price are settings a grid sweeps too
    ladders = parse_grid(["take_profit_ladder=none,0.05:0.5/0.12:0.5"])   # and take-profit ladders
    assert [backtest.with_settings(config(), c).strategy.take_profit_ladder for c in ladders] == \
        [None, ((Decimal("0.05"), Decimal("0.5")), (Decimal("0.12"), Decimal("0.5")))]
    with pytest.raises(BacktestError, match="take_profit_ladder: the shares must add up to 1"):
        backtest.with_settings(config(), parse_grid(["take_profit_ladder=0.05:0.5"])[0])
    combos = parse_grid(["take_profit_pct=0.05,0.10", "stop_loss_pct=0.05,0.1,0.2", "trading.ab_test_ratio=0.5"])
    assert len(combos) == 6 and combos[0] == {"strategy__take_profit_pct": "0.05", "strategy__stop_loss_pct": "0.05",
                                              "trading__ab_test_ratio": "0.5"}
    for bad, said in (("take_profit_pct", "key=value1"), ("=0.1", "key=value1"), ("bot.dry_run=false", "section"),
                      ("take_profit_pct=", "key=value1")):
        with pytest.raises(BacktestError, match=said):
            parse_grid([bad])
    with pytest.raises(BacktestError, match="not a setting"):
        backtest.with_settings(config(), {"strategy__no_such_thing": "1"})
    with pytest.raises(BacktestError, match="take_profit_pct"):
        backtest.with_settings(config(), {"strategy__take_profit_pct": "-3"})


def test_the_cache_replays_as_the_markets_themselves(cached):
    cache_dir, metas, markets = cached
    direct = replay(config(), markets, T0, T0 + STEP * 600)
    loaded = replay(config(), replay_markets(cache_dir, metas, 1), T0, T0 + STEP * 600)
    assert direct.trades > 0 and [(r["question"], r["pnl"]) for r in direct.rows] == \
        [(r["question"], r["pnl"]) for r in loaded.rows]


def test_a_cut_cache_file_leaves_its_market_out_with_the_reason(cached):
    cache_dir, metas, _ = cached
    victim = next(cache_dir.glob("*.f1.json"))
    victim.write_text(victim.read_text()[: len(victim.read_text()) // 2])
    warnings: list[str] = []
    kept = replay_markets(cache_dir, metas, 1, warnings)
    assert len(kept) == 3 and len(warnings) == 1 and victim.name in warnings[0]


def jobs(cached, grid):
    cache_dir, metas, _ = cached
    model = FillModel()
    from main_bot import Bot

    return [Job(Bot, config().model_dump_json(), combo, str(cache_dir), metas, T0, T0 + STEP * 600, 1,
                {"spread_ticks": model.spread_ticks, "depth": str(model.depth), "levels": model.levels,
                 "tp_fill": model.tp_fill, "exit_latency_steps": model.exit_latency_steps}) for combo in grid]


def test_a_grid_in_processes_is_ranked_by_pnl_and_each_is_the_single_replay(cached):
    grid = parse_grid(["take_profit_pct=0.05,0.15", "stop_loss_pct=0.05,0.15"])
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = run_grid(jobs(cached, grid), pool)
    assert len(rows) == 4 and [r["pnl"] for r in rows] == sorted((r["pnl"] for r in rows), reverse=True)
    cache_dir, metas, _ = cached
    for row in rows:   # the same numbers as a replay run here, with those settings
        single = replay(backtest.with_settings(config(), row["settings"]), replay_markets(cache_dir, metas, 1),
                        T0, T0 + STEP * 600)
        assert (row["trades"], row["pnl"], row["max_drawdown"]) == (single.trades, single.pnl, single.max_drawdown)
    assert len({(r["trades"], r["pnl"]) for r in rows}) > 1   # the settings matter


def test_a_grid_on_a_dask_cluster_gives_the_same_table(cached):
    distributed = pytest.importorskip("distributed")
    grid = parse_grid(["take_profit_pct=0.05,0.15"])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc:
        executor, client = backtest.dask_executor(lc.scheduler_address)
        try:
            on_dask = run_grid(jobs(cached, grid), executor)
        finally:
            client.close()
    with ProcessPoolExecutor(max_workers=2) as pool:
        local = run_grid(jobs(cached, grid), pool)
    assert [(r["settings"], r["pnl"], r["trades"]) for r in on_dask] == \
        [(r["settings"], r["pnl"], r["trades"]) for r in local]


def test_the_files_written(cached, tmp_path):
    cache_dir, metas, _ = cached
    result = replay(config(), replay_markets(cache_dir, metas, 1), T0, T0 + STEP * 600)
    written = backtest.write_outputs(result, tmp_path / "out")
    assert [p.name for p in written] == ["result.json", "positions.json", "positions.csv", "pnl.png"]
    data = json.loads(written[0].read_text())
    assert data["trades"] == result.trades and data["fill_model"]["resting_tp"].startswith("fills at its price")
    with written[2].open() as fh:
        assert len(list(csv.DictReader(fh))) == len(result.rows)
    assert written[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_window_and_its_errors():
    assert backtest.window(2, None, "2026-01-03", 0) == (1767225600, 1767398400)
    assert backtest.window(None, "2026-01-01", "2026-01-02T12:00:00Z", 0) == (1767225600, 1767355200)
    with pytest.raises(BacktestError, match="--since 'yesterday'"):
        backtest.window(None, "yesterday", None, 0)
    with pytest.raises(BacktestError, match="empty"):
        backtest.window(None, "2026-01-02", "2026-01-01", 0)


def test_backtest_sim_replays_the_simulators_own_markets_over_http(tmp_path):
    done = subprocess.run([sys.executable, "main_bot.py", "backtest", "--sim", "--days", "0.5", "--sim-markets", "3",
                           "--json", "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert data["markets"] == 3 and data["loops"] > 600 and data["api_calls"]["POST /books"] > 0
    assert set(data["report"]["modes"]) == {"monitor", "limit_orders"}
    assert (tmp_path / "out" / "pnl.png").exists()


def test_dask_without_a_grid_is_refused_before_anything_is_sent(tmp_path):
    done = subprocess.run([sys.executable, "main_bot.py", "backtest", "--dask", "tcp://127.0.0.1:1", "--offline",
                           "--cache", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "give --grid too" in done.stderr


def test_offline_without_a_cache_says_what_to_do(tmp_path):
    done = subprocess.run([sys.executable, "main_bot.py", "backtest", "--offline", "--cache", str(tmp_path / "none"),
                           "--days", "3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "run without --offline" in done.stderr
