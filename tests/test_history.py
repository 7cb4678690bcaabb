"""The history of closed positions (bot/history.py) and the move to it (PositionStore.move_closed / settle):
queries, the migration of files from before the history, crash points in the middle of the move, and report
figures identical before and after the migration."""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal as D

import pytest

from bot import crashpoints
from bot.errors import StateFileError
from bot.history import History
from bot.position_manager import BotState, ExitMode, Position, PositionState, PositionStore
from bot.report import build_report
from tests.test_report import T0, known_state


class Crash(Exception):
    """Where the process would die."""


@pytest.fixture
def crash_at():
    def arm(name: str) -> None:
        def hook(point: str) -> None:
            if point == name:
                raise Crash(point)
        crashpoints.set_hook(hook)
    yield arm
    crashpoints.set_hook(None)


def parse(data, where):
    return Position.from_dict(data, where=where)


def active(token: str = "tA") -> Position:
    return Position(token_id=token, condition_id="c-" + token, entry_price=D("0.5"), entry_shares=D(10),
                    entry_cost=D(5), shares=D(10), tp_price=D("0.6"), sl_price=D("0.4"), opened_at=T0, updated_at=T0)


def mixed_state() -> BotState:
    state = known_state()
    state.positions.append(active())
    return state


def ids(positions) -> list[str]:
    return sorted(p.id for p in positions)


def in_file(store: PositionStore) -> list[dict]:
    return json.loads(store.path.read_text())["positions"]


# -- the history itself ---------------------------------------------------------------------------------

def test_append_and_queries(tmp_path):
    h = History(tmp_path / "h.sqlite", parse)
    assert h.count() == 0 and h.all() == [] and not (tmp_path / "h.sqlite").exists()   # reading creates nothing
    closed = known_state().positions
    closed[0].orders[0].order_id = "order-1"
    assert h.append(closed) == 5
    assert h.append(closed[:2]) == 0   # already stored: left as stored, never twice
    assert h.count() == 5 and h.totals() == (5, sum((p.realized_pnl for p in closed), D(0)))
    assert [p.id for p in h.all()] == [p.id for p in closed] and h.all() == closed   # stored whole
    assert [p.id for p in h.recent(2)] == [p.id for p in closed[-2:]]
    assert ids(h.since(T0 + timedelta(minutes=3))) == ids(closed[2:])
    assert h.has_order("order-1") and not h.has_order("order-2") and "order-1" in h.order_ids()
    assert h.recent_tokens(2) == [closed[4].token_id, closed[3].token_id]
    again = History(tmp_path / "h.sqlite", parse)   # a second reader (status while the bot runs): same figures
    assert again.totals() == h.totals() and again.ids() == {p.id for p in closed}


def test_an_unreadable_history_is_a_state_file_error(tmp_path):
    (tmp_path / "h.sqlite").write_text("not a database" * 100)
    with pytest.raises(StateFileError, match="history of closed positions"):
        History(tmp_path / "h.sqlite", parse).count()


# -- the move --------------------------------------------------------------------------------------------

def test_closed_positions_move_history_first_then_the_file(tmp_path):
    store = PositionStore(tmp_path / "positions.json")
    state = mixed_state()
    state.attach_history(store.history)
    store.save(state)
    assert len(in_file(store)) == 6
    assert store.move_closed(state) == 5
    assert [p["id"] for p in in_file(store)] == [state.positions[0].id] and len(state.positions) == 1
    assert store.history.count() == 5 and store.history.path == tmp_path / "positions.json.history.sqlite"
    loaded = store.load()
    assert len(loaded.all_positions()) == 6 and len(loaded.positions) == 1
    assert loaded.closed_totals() == (5, sum((p.realized_pnl for p in known_state().positions), D(0)))
    assert store.move_closed(state) == 0   # nothing closed: nothing written


@pytest.mark.parametrize("how", ["killed after the history was written", "the state file cannot be written",
                                 "the history cannot be written"])
def test_a_crash_in_the_middle_of_the_move_leaves_each_position_in_one_place(tmp_path, crash_at, monkeypatch, how):
    store = PositionStore(tmp_path / "positions.json")
    state = mixed_state()
    state.attach_history(store.history)
    store.save(state)
    everything = ids(state.positions)
    if how.startswith("killed"):
        crash_at("history_written")
    elif how.startswith("the state file"):
        monkeypatch.setattr(store, "save", lambda s: (_ for _ in ()).throw(StateFileError("disk full")))
    else:
        monkeypatch.setattr(store.history, "append", lambda ps: (_ for _ in ()).throw(StateFileError("locked")))
    with pytest.raises((Crash, StateFileError)):
        store.move_closed(state)
    crashpoints.set_hook(None)
    assert len(in_file(store)) == 6   # the file still holds them; the history maybe too
    # the next start
    restarted = PositionStore(tmp_path / "positions.json")
    after = restarted.load()
    assert ids(after.all_positions()) == everything   # read-only readers already count each once
    assert after.closed_totals()[0] == 5
    restarted.settle(after)
    assert len(in_file(restarted)) == 1 and ids(after.positions) == ids(p for p in state.positions if p.is_active)
    assert restarted.history.count() == 5 and ids(restarted.load().all_positions()) == everything


def test_a_file_from_before_the_history_migrates_and_is_kept(tmp_path):
    path = tmp_path / "positions.json"
    store = PositionStore(path)
    store.save(mixed_state())
    before = path.read_text()
    old = store.load()
    report_before = build_report(old)
    report_since_before = build_report(old, since=T0 + timedelta(minutes=3))
    assert store.settle(old) == 5
    assert (tmp_path / "positions.json.pre-history").read_text() == before   # the previous file, kept
    assert len(in_file(store)) == 1 and store.history.count() == 5
    migrated = PositionStore(path).load()
    assert build_report(migrated) == report_before
    assert build_report(migrated, since=T0 + timedelta(minutes=3)) == report_since_before
    # a second start changes nothing, and the kept file stays the one from before the migration
    assert PositionStore(path).settle(PositionStore(path).load()) == 0
    assert (tmp_path / "positions.json.pre-history").read_text() == before


def test_the_migration_killed_halfway_is_completed_at_the_next_start(tmp_path, crash_at):
    path = tmp_path / "positions.json"
    PositionStore(path).save(mixed_state())
    before = path.read_text()
    report_before = build_report(PositionStore(path).load())
    crash_at("history_written")
    store = PositionStore(path)
    with pytest.raises(Crash):
        store.settle(store.load())
    crashpoints.set_hook(None)
    store = PositionStore(path)
    assert store.settle(store.load()) == 5   # all already in the history: dropped from the file, not added
    assert store.history.count() == 5 and len(in_file(store)) == 1
    assert (tmp_path / "positions.json.pre-history").read_text() == before
    assert build_report(PositionStore(path).load()) == report_before


def test_known_order_ids_and_holds_market_without_walking_the_history(tmp_path, monkeypatch):
    store = PositionStore(tmp_path / "positions.json")
    state = mixed_state()
    state.positions[0].orders[0].order_id = "closed-order"
    state.attach_history(store.history)
    store.move_closed(state)
    monkeypatch.setattr(History, "all", lambda self: pytest.fail("the history was read whole"))
    assert state.is_known_order("closed-order") and not state.is_known_order("nope")
    assert "closed-order" in state.known_order_ids()
    assert state.holds_market("c-tA") and not state.holds_market(known_state().positions[0].condition_id)
    assert state.active_positions() == state.positions


def test_summary_counts_from_running_totals():
    state = BotState(positions=[active(), *known_state().positions])
    assert state.closed_totals() == (5, sum((p.realized_pnl for p in known_state().positions), D(0)))
    assert [p.status for p in state.all_positions()][-1] == PositionState.OPEN
    assert {p.exit_mode for p in state.closed_positions()} == {ExitMode.LIMIT_ORDERS, ExitMode.MONITOR}


def test_complete_hours_of_api_calls_move_to_the_history_and_count_once(tmp_path):
    """The state file keeps only the current hour of API-call counts (it used to grow an entry an hour
    forever); the report's figures are the same before and after, and saving again counts nothing twice."""
    state = known_state()
    hours = {f"2026-11-20T{h:02d}:00": {"monitor": {"POST /books": 10.0 + h}, "limit_orders": {"GET /data/orders": 2.0}}
             for h in range(10, 14)}
    state.counters = {**state.counters, "api_calls_by_hour": hours}
    before = build_report(state)
    store = PositionStore(tmp_path / "positions.json")
    store.save(state)
    on_disk = json.loads((tmp_path / "positions.json").read_text())
    assert list(on_disk["counters"]["api_calls_by_hour"]) == ["2026-11-20T13:00"]
    assert sorted(store.history.api_calls()) == [f"2026-11-20T{h}:00" for h in (10, 11, 12)]
    loaded = store.load()
    assert build_report(loaded)["modes"] == before["modes"]
    store.history.store_api_calls({"2026-11-20T10:00": hours["2026-11-20T10:00"]})   # an interrupted move, again
    assert build_report(store.load())["modes"] == before["modes"]
    since = build_report(store.load(), T0 + timedelta(hours=-1))   # 11:00 on: the index, not a walk
    assert since["modes"]["monitor"]["api_calls"] == round(21 + 22 + 23, 1)
