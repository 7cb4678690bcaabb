"""The command line (bot/cli.py) in-process: argument parsing, the --sim config, the signal handlers,
resume/convert handed to a running bot, and bad paths as one error line. Runs of the command line against
the simulated exchange are in tests/e2e/test_cli.py."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.cli import Interrupted, install_signal_handlers, parse_args, sim_config
from bot.clock import SystemClock
from bot.config import BotConfig
from bot.position_manager import BotState, ExitMode, PositionStore
from bot.venue.paper import PaperVenue
from main_bot import Bot, main
from tests.test_main_bot import Books, NoMarket, config_for, make_bot

ROOT = Path(__file__).resolve().parents[1]


def test_main_bot_runs_the_cli_and_the_cli_never_imports_main_bot():
    for first, second in (("bot.cli", "main_bot"), ("main_bot", "bot.cli")):
        done = subprocess.run([sys.executable, "-c", f"import {first}, {second}; import main_bot; "
                               "assert callable(main_bot.main)"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
    done = subprocess.run([sys.executable, "-c", "import sys, bot.cli; assert 'main_bot' not in sys.modules"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_sim_loop_seconds_sets_the_sim_runs_loop_and_scan_intervals(tmp_path):
    assert parse_args(["--sim"]).sim_loop_seconds == 1   # the demo's
    demo = sim_config(BotConfig(), "http://clob", "http://gamma", tmp_path)
    assert demo.bot.loop_interval_seconds == 1 == demo.strategy.scan_interval_seconds
    assert demo.trading.order_check_interval_seconds == 2
    fast = sim_config(BotConfig(), "http://clob", "http://gamma", tmp_path,
                      loop_seconds=parse_args(["--sim", "--sim-loop-seconds", "0.1"]).sim_loop_seconds)
    assert fast.bot.loop_interval_seconds == 0.1 == fast.strategy.scan_interval_seconds
    assert math.isclose(fast.trading.order_check_interval_seconds, 0.2)
    # holding time and blacklist stay the demo's (the simulated market moves in real seconds)
    assert (fast.strategy.max_hold_hours, fast.strategy.blacklist_hours) == (demo.strategy.max_hold_hours,
                                                                           demo.strategy.blacklist_hours)
    assert fast.api.clob_host == "http://clob" and fast.bot.positions_file == str(tmp_path / "positions.json")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_sim_loop_that_is_not_a_positive_number_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(["--sim", "--sim-loop-seconds", value])
    assert stop.value.code == 2
    assert "argument --sim-loop-seconds:" in capsys.readouterr().err


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_resume_while_the_bot_runs_reaches_it(tmp_path, capsys):
    # Rule 7: `resume` printed "resumed" but the running bot's next save put the pause back.
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"bot": {"positions_file": str(tmp_path / "positions.json"), "log_file": None}}))
    store = PositionStore(tmp_path / "positions.json")
    store.acquire_lock()
    bot = Bot(config_for(tmp_path), PaperVenue(Books(), D(100)), NoMarket(), store)
    bot.state.pause("a position needs attention")
    bot.save()
    assert main(["resume", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "sent to the running bot" in out and f"pid {__import__('os').getpid()}" in out
    bot.run_once()   # the next loop picks it up
    assert not bot.state.paused
    assert json.loads((tmp_path / "positions.json").read_text())["paused"] is False
    store.release_lock()


def test_resume_without_a_running_bot_edits_the_file(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"bot": {"positions_file": str(tmp_path / "positions.json"), "log_file": None}}))
    state = BotState()
    state.pause("x")
    PositionStore(tmp_path / "positions.json").save(state)
    assert main(["resume", "--config", str(cfg)]) == 0
    assert "resumed" in capsys.readouterr().out
    assert json.loads((tmp_path / "positions.json").read_text())["paused"] is False


def test_a_stop_request_ends_the_loop_sleep_at_once(tmp_path, restore_signals):
    # Rule 11: Ctrl-C waited for the rest of the loop interval (time.sleep resumes after a signal handler).
    config = config_for(tmp_path, loop_interval_seconds=3600)
    bot = Bot(config, PaperVenue(Books(), D(100)), NoMarket(), PositionStore(config.bot.positions_file),
              clock=SystemClock())
    install_signal_handlers(bot)
    worker = threading.Thread(target=bot.run, daemon=True)
    worker.start()
    while bot.loops_done < 1 and worker.is_alive():
        worker.join(0.01)
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)   # what a SIGTERM does
    worker.join(60)
    assert not worker.is_alive(), "the bot still sleeps out its 3600 s interval"


def test_a_second_ctrl_c_exits_at_once(tmp_path, restore_signals):
    bot, _ = make_bot(tmp_path)
    install_signal_handlers(bot)
    handler = signal.getsignal(signal.SIGINT)
    handler(signal.SIGINT, None)
    assert bot.stop_requested
    with pytest.raises(Interrupted) as stop:
        handler(signal.SIGINT, None)
    assert stop.value.exit_code == 130


@pytest.mark.parametrize("plot, expected", [("missing/ab.png", "folder missing does not exist"),
                                            ("ab.txt", "give a file name ending in .png")])
def test_report_plot_to_a_bad_place_is_an_error_line(tmp_path, monkeypatch, capsys, plot, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"bot": {"log_file": None}}))
    assert main(["report", "--plot", plot]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --plot") and expected in err and "Traceback" not in err


def test_state_and_log_paths_under_a_file_are_an_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    for bot_section in ({"positions_file": "afile/positions.json", "log_file": None},
                        {"log_file": "afile/bot.log"}):
        (tmp_path / "config.json").write_text(json.dumps({"bot": bot_section}))
        assert main(["--loops", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: config.json: bot.") and "afile is a file, not a folder" in err
        assert len(err.splitlines()) == 1


def test_convert_while_the_bot_runs_reaches_it(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"bot": {"positions_file": str(tmp_path / "positions.json"), "log_file": None}}))
    bot, _ = make_bot(tmp_path, use_concurrent_orders=True)
    bot.store.acquire_lock()
    bot.run_once()
    pos = bot.state.all_positions()[0]
    assert pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.tp_order_id
    assert main(["convert", "--config", str(cfg)]) == 0
    assert "convert sent to the running bot" in capsys.readouterr().out
    bot.run_once()
    assert pos.exit_mode == ExitMode.MONITOR and pos.tp_order_id is None and bot.venue.open_orders() == []
    bot.store.release_lock()


