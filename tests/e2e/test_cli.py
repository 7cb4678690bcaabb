"""The command line as a user runs it: --sim trades on the embedded exchange, status reads the result,
SIGTERM finishes the step and saves."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: --sim-loop-seconds for --sim runs: the demo's 1 s loops, shortened.
FAST = "0.1"


def run(*args, timeout=120):
    return subprocess.run([sys.executable, "main_bot.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_sim_run_then_status_json(tmp_path):
    sim_dir = tmp_path / "sim"
    done = run("--sim", "--loops", "8", "--sim-dir", str(sim_dir), "--seed", "3", "--sim-loop-seconds", FAST)
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
    proc = subprocess.Popen([sys.executable, "main_bot.py", "--sim", "--sim-dir", str(sim_dir), "--sim-loop-seconds",
                             FAST], cwd=ROOT, stderr=subprocess.PIPE, text=True)
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
    assert state["schema_version"] == 5


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
            # the user channel's subscribe carries the API secret: its path is scanned too
            "feeds": feed_urls(sim.ws_url),
        }))
        env = {**os.environ, "POLY_PRIVATE_KEY": key, "POLY_FUNDER_ADDRESS": acct.address,
               "POLY_API_KEY": creds["apiKey"], "POLY_API_SECRET": creds["secret"],
               "POLY_API_PASSPHRASE": creds["passphrase"]}
        done = subprocess.run([sys.executable, "main_bot.py", "--config", str(cfg), "--loops", "5"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "LIVE TRADING" in done.stderr and "up to $10 per trade" in done.stderr
        assert sim.balances(acct.address)["open_orders"] >= 1   # it really traded: TPs rest
        assert sim.feed_stats()["opened"]["user"] >= 1, "the user channel was opened (with the credentials)"
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


# -- issue 10: flags never surprise, bad input is one error line (in-process: main_bot.main) --------------

import os  # noqa: E402

import pytest  # noqa: E402

from bot.config import feed_urls  # noqa: E402
from bot.position_manager import BotState, Position, PositionStore  # noqa: E402
from main_bot import main  # noqa: E402

SECRET_ENV = ("POLY_PRIVATE_KEY", "POLY_FUNDER_ADDRESS", "POLY_API_KEY", "POLY_API_SECRET", "POLY_API_PASSPHRASE")


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """main_bot.main in-process, from an empty folder (no .env), without credentials,
    signals restored."""
    monkeypatch.chdir(tmp_path)
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield main
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.fixture
def sim3():
    from bot.sim import SimExchange

    with SimExchange(seed=9, markets=3) as exchange:
        yield exchange


def live_config(tmp_path, sim, **bot):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "bot": {"dry_run": False, "loop_interval_seconds": 0.05, "positions_file": str(tmp_path / "positions.json"),
                "log_file": None, **bot},
        "strategy": {"min_liquidity": 0, "min_hours_to_end": 0, "scan_interval_seconds": 0.05, "max_spread": "0.1"},
        "api": {"clob_host": sim.clob_url if sim else "http://127.0.0.1:9", "gamma_host":
                sim.gamma_url if sim else "http://127.0.0.1:9"},
        "feeds": feed_urls(sim.ws_url if sim else "ws://127.0.0.1:9"),
    }))
    return str(cfg)


def test_dry_run_flag_means_paper_orders_without_sim(tmp_path, cli, capsys, sim3):
    sim = sim3
    # Rule 6: `--dry-run` without --sim was ignored and the bot traded live (here: it asked for live keys).
    cfg = live_config(tmp_path, sim)
    assert cli(["--config", cfg, "--dry-run", "--loops", "3"]) == 0, capsys.readouterr().err[-2000:]
    err = capsys.readouterr().err
    assert "Bot started (paper venue)" in err and "LIVE TRADING" not in err
    positions = json.loads((tmp_path / "positions.json").read_text())["positions"]
    assert positions and all(p["venue"] == "paper" and p["wallet"] is None for p in positions)
    assert sim.request_counts()["by_endpoint"].get("POST /order", 0) == 0


def test_a_live_run_refuses_positions_opened_on_paper(tmp_path, cli, capsys, sim3, monkeypatch):
    sim = sim3
    # Rule 6: a paper position left in positions.json was managed live (a real sell for shares never bought).
    wallet = sim.new_wallet(usdc=100)
    paper = Position(id="paper42", token_id="1", condition_id="0xc", shares=Decimal("19.6"),
                     entry_shares=Decimal("19.6"), entry_price=Decimal("0.51"), entry_cost=Decimal("9.996"),
                     tp_price=Decimal("0.57"), sl_price=Decimal("0.45"), venue="paper")
    state = BotState()
    state.add(paper)
    PositionStore(tmp_path / "positions.json").save(state)
    before = (tmp_path / "positions.json").read_text()
    monkeypatch.setenv("POLY_PRIVATE_KEY", wallet["private_key"])
    monkeypatch.setenv("POLY_FUNDER_ADDRESS", wallet["address"])
    assert cli(["--config", live_config(tmp_path, sim), "--loops", "2"]) == 2
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "id paper42" in line[0] and "paper orders (dry-run)" in line[0]
    assert "Traceback" not in err and wallet["private_key"].removeprefix("0x") not in err
    assert (tmp_path / "positions.json").read_text() == before
    assert sim.request_counts()["by_endpoint"].get("POST /order", 0) == 0


def test_sim_dir_that_no_sim_run_created_is_refused_and_kept(tmp_path, cli, capsys):
    (tmp_path / "config.json").write_text("{}")
    # Rule 6: --sim --sim-dir DIR did shutil.rmtree(DIR).
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    assert cli(["--sim", "--sim-dir", str(mine), "--loops", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --sim-dir {mine}: refusing") and "thesis.txt" in err
    assert (mine / "thesis.txt").read_text() == "years of work" and sorted(os.listdir(mine)) == ["thesis.txt"]


def test_a_sim_run_removes_only_its_own_files_and_sim_subcommands_act_on_its_state(tmp_path, cli, capsys):
    sim_dir = tmp_path / "simrun"
    (tmp_path / "config.json").write_text(json.dumps({"bot": {"positions_file": str(tmp_path / "real.json"),
                                                              "log_file": None}}))
    assert cli(["--sim", "--sim-dir", str(sim_dir), "--loops", "2", "--seed", "3", "--sim-loop-seconds", FAST]) == 0
    (sim_dir / "notes.txt").write_text("mine")
    (sim_dir / "plots").mkdir()
    assert cli(["--sim", "--sim-dir", str(sim_dir), "--loops", "1", "--seed", "3", "--sim-loop-seconds", FAST]) == 0
    assert (sim_dir / "notes.txt").read_text() == "mine" and (sim_dir / "plots").is_dir()
    capsys.readouterr()
    # resume --sim edits the sim run's state, not bot.positions_file
    store = PositionStore(sim_dir / "positions.json")
    state = store.load()
    state.pause("left paused by the run")
    store.save(state)
    assert cli(["resume", "--sim", "--sim-dir", str(sim_dir)]) == 0
    assert store.load().paused is False and not (tmp_path / "real.json").exists()
    # convert --sim never starts trading: the simulated exchange of that run is gone
    before = (sim_dir / "positions.json").read_text()
    assert cli(["convert", "--sim", "--sim-dir", str(sim_dir), "--loops", "1"]) == 2
    out, err = capsys.readouterr()
    assert "no --sim run is running" in err and "Placing BUY" not in err + out and "Loop 1" not in err
    assert (sim_dir / "positions.json").read_text() == before


@pytest.mark.parametrize("env, expected", [
    ({"POLY_PRIVATE_KEY": "0" * 64}, "POLY_PRIVATE_KEY is not a valid private key"),
    ({"POLY_PRIVATE_KEY": "ab" * 32, "POLY_API_KEY": "k", "POLY_API_SECRET": "not base64 at all!",
      "POLY_API_PASSPHRASE": "p"}, "POLY_API_SECRET is not base64"),
])
def test_credentials_that_cannot_work_are_one_error_line_at_start(tmp_path, cli, capsys, env, expected, monkeypatch):
    # Rule 11: an all-zero key printed a traceback; a non-base64 secret was a "malformed response" every loop.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli(["--config", live_config(tmp_path, None), "--loops", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and expected in err
    assert all(v not in err for v in env.values() if len(v) > 2)


def test_close_needs_an_id_and_closes_only_a_position_needing_attention(tmp_path, cli, capsys, sim3, monkeypatch):
    sim = sim3
    wallet = sim.new_wallet(usdc=100)
    monkeypatch.setenv("POLY_PRIVATE_KEY", wallet["private_key"])
    monkeypatch.setenv("POLY_FUNDER_ADDRESS", wallet["address"])
    cfg = live_config(tmp_path, sim)
    assert cli(["close", "--config", cfg]) == 2 and "close needs --id" in capsys.readouterr().err
    stuck = Position(id="gone42", token_id="1", condition_id="0xc", shares=Decimal("19.6"),
                     entry_shares=Decimal("19.6"), entry_price=Decimal("0.51"), entry_cost=Decimal("9.996"),
                     tp_price=Decimal("0.57"), sl_price=Decimal("0.45"), venue="live", wallet=wallet["address"],
                     status="needs_attention", attention_reason="account holds 0 shares")
    state = BotState()
    state.add(stuck)
    PositionStore(tmp_path / "positions.json").save(state)
    assert cli(["close", "--config", cfg, "--id", "other"]) == 0
    assert "no position needing attention with id other" in capsys.readouterr().out
    assert cli(["close", "--config", cfg, "--id", "gone42"]) == 0
    assert "gone42: closed by hand" in capsys.readouterr().out
    saved = PositionStore(tmp_path / "positions.json").load().all_positions()[0]
    assert saved.status.value == "closed" and saved.close_reason.value == "manual"
