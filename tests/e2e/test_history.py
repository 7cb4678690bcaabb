"""The bot on bot/sim with the history of closed positions: a position that closes leaves positions.json for
the history, the loop never reads the history whole, and ``status`` lists the active positions and the last
closed ones."""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal as D

import pytest

from bot.cli import print_status
from bot.history import History
from bot.position_manager import CloseReason, ExitMode, PositionState, PositionStore
from tests.e2e.conftest import Harness
from tests.test_report import T0, closed


def in_file(h: Harness) -> list[dict]:
    return json.loads(h.store.path.read_text())["positions"]


def take_profit(sim, tmp_path, **kw):
    m = sim.create_market("History?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path, trading__use_concurrent_orders=False, **kw)
    h.loop()
    h.no_new_trades()
    pos = h.bot.state.positions[0]   # the active one (the file's)
    sim.set_price(m["token_ids"][0], 0.60)
    h.loop()
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    return h, pos


def test_a_closed_position_leaves_the_state_file_for_the_history(sim, tmp_path):
    h, pos = take_profit(sim, tmp_path)
    assert in_file(h) == [] and h.bot.state.positions == []
    assert h.store.history.count() == 1 and h.store.history.all() == [pos]   # stored whole
    assert [p.id for p in h.positions] == [pos.id]
    assert "0 open (0 limit_orders, 0 monitor), 1 closed, pnl $" in h.bot.manage.summary()
    bot = h.restart()
    assert bot.state.positions == [] and bot.state.closed_totals() == (1, pos.realized_pnl)
    assert bot.state.is_known_order(pos.entry_order_id or "")


def test_the_loop_never_reads_the_history_whole(sim, tmp_path, monkeypatch):
    store = PositionStore(tmp_path / "positions.json")
    store.history.append([closed(ExitMode.MONITOR, CloseReason.STOP_LOSS, D("0.5"), D("0.45"), minutes=i)
                          for i in range(2000)])
    store.history.close()
    for name in ("all", "since", "recent", "order_ids"):
        monkeypatch.setattr(History, name, lambda self, *a, _n=name: pytest.fail(f"the loop called History.{_n}"))
    h, pos = take_profit(sim, tmp_path)
    h.loop(3)
    assert h.store.history.count() == 2001 and in_file(h) == []
    assert "2001 closed" in h.bot.manage.summary()


def test_status_lists_the_active_positions_and_the_last_closed(sim, tmp_path, capsys):
    h, pos = take_profit(sim, tmp_path)
    h.store.history.append([closed(ExitMode.MONITOR, CloseReason.STOP_LOSS, D("0.5"), D("0.45"), minutes=i)
                            for i in range(12)])
    state = PositionStore(h.store.path).load()
    print_status(state, as_json=False, closed=3)
    out = capsys.readouterr().out
    assert out.count("stop_loss") == 3 and pos.id not in out and "closed: 13 in all" in out
    print_status(state, as_json=True, every=True)
    shown = json.loads(capsys.readouterr().out)["positions"]
    assert len(shown) == 13 and shown[0]["id"] == pos.id
    print_status(state, as_json=True)   # default: the last 10
    assert len(json.loads(capsys.readouterr().out)["positions"]) == 10
    since = state.closed_positions(T0 + timedelta(minutes=10))
    assert len(since) == 3   # opened at minutes 10 and 11, and the sim's position opened now
