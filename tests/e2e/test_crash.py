"""The crash test: the live bot, trading on bot/sim through the real SDK, killed with SIGKILL at random
moments (and at named crash points: after the buy before its save, after the TP before its save, after
the TP cancel, before and after the exit sell), restarted each time. Afterwards nothing is open or held that no
position knows, nothing was bought twice, and every position's shares equal the venue's balance."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from eth_account import Account

from bot.position_manager import PositionStore
from tests.e2e import invariants

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("CRASH_TEST_KILLS", "24"))
CRASH_POINTS = ["before_send", "after_buy", "after_tp", "after_cancel", "before_sell", "after_sell"]


def write_config(path: Path, tmp: Path, urls: dict, scan_seconds: float) -> None:
    path.write_text(json.dumps({
        "bot": {"dry_run": False, "loop_interval_seconds": 0.25, "positions_file": str(tmp / "positions.json"),
                "log_file": str(tmp / "bot.log")},
        "capital": {"total": 60, "max_trade_size": 10, "max_positions": 3},
        "trading": {"ab_test_ratio": 0.5, "order_check_interval_seconds": 0.5},
        # close exits (a 3% SL sat on the bid: such entries are skipped now), still allowed by the entry checks
        "strategy": {"take_profit_pct": 0.06, "stop_loss_pct": 0.08, "max_spread_share_of_tp": 1,
                     "max_hold_hours": 3 / 3600,
                     "blacklist_hours": 2 / 3600, "min_liquidity": 0, "min_hours_to_end": 0, "max_spread": 0.1,
                     "scan_interval_seconds": scan_seconds},
        "api": {"clob_host": urls["clob_url"], "gamma_host": urls["gamma_url"], "max_requests_per_second": 200},
    }))


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    rng = random.Random(20261124)
    sim = subprocess.Popen([sys.executable, "-m", "bot.sim", "--markets", "6", "--seed", "4", "--volatility", "0.01"],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        urls = json.loads(sim.stdout.readline())
        acct = Account.create()
        key = "0x" + acct.key.hex().removeprefix("0x")
        requests.post(f"{urls['clob_url']}/_sim/fund", json={"address": acct.address, "usdc": 200})
        start_usdc = requests.get(f"{urls['clob_url']}/_sim/balances", params={"address": acct.address}).json()["usdc"]
        # While the bot is killed again and again, the venue also refuses some orders and cancels (429/425/503:
        # refused TP cancels, refused exit sells) and loses the answers of others after carrying them out.
        requests.post(f"{urls['clob_url']}/_sim/faults", json={"rate": 0.15, "statuses": [429, 425, 503],
                                                                "paths": ["/order"], "seed": 5})
        config = tmp_path / "config.json"
        write_config(config, tmp_path, urls, scan_seconds=0.25)
        env = {**os.environ, "POLY_PRIVATE_KEY": key, "POLY_FUNDER_ADDRESS": acct.address}
        kills = 0
        points = CRASH_POINTS * 2
        for i in range(KILLS + len(points)):
            run_env = dict(env)
            if i < len(points):
                run_env["BOT_CRASHPOINTS"] = points[i]
            bot = subprocess.Popen([sys.executable, "main_bot.py", "--config", str(config)], cwd=ROOT, env=run_env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                bot.wait(timeout=rng.uniform(1.0, 4.0))   # a crash point may end it first
            except subprocess.TimeoutExpired:
                bot.send_signal(signal.SIGKILL)
                bot.wait()
            kills += 1
        # Wind down: a calm venue, no new entries; the bot reconciles and lets every exit finish.
        requests.post(f"{urls['clob_url']}/_sim/faults", json={"rate": 0})
        write_config(config, tmp_path, urls, scan_seconds=10**9)
        done = subprocess.run([sys.executable, "main_bot.py", "--config", str(config), "--loops", "60"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        state = PositionStore(tmp_path / "positions.json").load()
        balances = requests.get(f"{urls['clob_url']}/_sim/balances", params={"address": acct.address}).json()
        result = invariants.check(state, balances, invariants.venue_view(urls["clob_url"], key, acct.address))
        lifecycles = sum(1 for p in state.positions if p.entry_shares > 0)
        print(f"crash test: kills={kills} lifecycles={lifecycles} orphans={result['orphan_orders']}+"
              f"{result['orphan_shares']} duplicates={result['duplicates']} mismatches={result['mismatches']}")
        assert lifecycles >= 10
        assert (result["orphan_orders"], result["orphan_shares"], result["duplicates"], result["mismatches"]) == \
            (0, 0, 0, 0), result["details"]
        # Nothing here is a reason for a person: no position needs attention, the bot never paused itself.
        assert not [p.id for p in state.positions if p.status.value == "needs_attention"], \
            [(p.id, p.attention_reason) for p in state.positions if p.attention_reason]
        assert not state.paused, state.pause_reason
        # The books are the wallet's: what the positions booked (proceeds net of fees, less costs) is the
        # account's cash change, within $0.001 a position.
        cash = Decimal(str(balances["usdc"])) - Decimal(str(start_usdc))
        booked = sum((p.exit_proceeds - p.entry_cost for p in state.positions), Decimal(0))
        assert abs(cash - booked) <= Decimal("0.001") * max(1, len(state.positions)), (str(cash), str(booked))
        log = (tmp_path / "bot.log").read_text()
        assert key[2:] not in log and "Traceback" not in log
    finally:
        sim.terminate()
        sim.wait(timeout=10)
