import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from freezegun import freeze_time

from bot.errors import StateFileError
from bot.position_manager import (
    ALLOWED_TRANSITIONS,
    BotState,
    CloseReason,
    ExitMode,
    IllegalTransition,
    Position,
    PositionState,
    PositionStore,
    transition,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def pos(**kw):
    base = dict(token_id="123", condition_id="0xc", shares=D("19.6"), entry_price=D("0.51"), entry_cost=D("9.996"),
                tp_price=D("0.57"), sl_price=D("0.45"), opened_at=NOW, updated_at=NOW)
    base.update(kw)
    return Position(**base)


def test_round_trip_keeps_decimals_exact():
    p = pos(exit_mode=ExitMode.LIMIT_ORDERS, tp_order_id="0xabc", metrics={"x": 1})
    d = p.to_dict()
    assert d["shares"] == "19.6" and d["exit_mode"] == "limit_orders" and d["status"] == "open"
    assert Position.from_dict(json.loads(json.dumps(d))) == p


def test_seed_format_loads_as_monitor_and_open():
    p = Position.from_dict({"token_id": "1", "size": "20", "entry_time": "2026-11-24T10:00:00",
                            "entry_price": "0.5", "tp_order_id": None, "sl_order_id": None})
    assert p.exit_mode == ExitMode.MONITOR and p.status == PositionState.OPEN
    assert p.shares == D(20) and p.entry_cost == D("10.0") and p.opened_at.tzinfo is not None
    assert p.tp_price is None


def test_bad_field_names_position_and_field():
    with pytest.raises(StateFileError, match=r"positions\[3\] \(id p1\): shares"):
        Position.from_dict({"id": "p1", "token_id": "1", "shares": "lots"}, where="positions[3]")


@pytest.mark.parametrize("old", list(PositionState))
@pytest.mark.parametrize("new", list(PositionState))
def test_transition_table_is_enforced(old, new):
    p = pos(status=old)
    if new == old or new in ALLOWED_TRANSITIONS[old]:
        transition(p, new, NOW)
        assert p.status == new
    else:
        with pytest.raises(IllegalTransition, match=f"{old.value} -> {new.value}"):
            transition(p, new, NOW)
        assert p.status == old


def test_closing_computes_exit_price_and_pnl():
    p = pos()
    p.sold_shares, p.exit_proceeds = D("19.6"), D("11.172")
    transition(p, PositionState.EXITING, NOW, reason=CloseReason.STOP_LOSS)
    transition(p, PositionState.CLOSED, NOW + timedelta(minutes=5))
    assert p.close_reason == CloseReason.STOP_LOSS          # the reason is kept apart from the state
    assert p.exit_price == D("0.57") and p.realized_pnl == D("1.176")
    assert p.closed_at == NOW + timedelta(minutes=5)


def test_age_uses_total_elapsed_time():
    with freeze_time(NOW + timedelta(days=2, hours=1)):
        assert pos().age_hours(datetime.now(timezone.utc)) == pytest.approx(49.0)


def test_store_round_trip_and_prev(tmp_path):
    store = PositionStore(tmp_path / "positions.json")
    state = BotState()
    state.add(pos())
    store.save(state)
    state.pause("test")
    store.save(state)
    loaded = store.load()
    assert loaded.positions == state.positions and loaded.paused and loaded.pause_reason == "test"
    prev = json.loads((tmp_path / "positions.json.prev").read_text())
    assert prev["paused"] is False and prev["schema_version"] == 2


@pytest.mark.parametrize("content", ['{"positions": [', "", '{"positions": "nope"}', "[1, 2]",
                                     '{"schema_version": 99, "positions": []}'])
def test_corrupt_file_is_reported_and_never_overwritten(tmp_path, content):
    path = tmp_path / "positions.json"
    path.write_text(content)
    store = PositionStore(path)
    with pytest.raises(StateFileError, match="positions.json"):
        store.load()
    with pytest.raises(StateFileError, match="refusing to overwrite"):
        store.save(BotState())
    assert path.read_text() == content


def test_truncated_file_points_at_prev(tmp_path):
    path = tmp_path / "positions.json"
    store = PositionStore(path)
    state = BotState()
    state.add(pos())
    store.save(state)
    state.pause("second version")
    store.save(state)
    path.write_text(path.read_text()[:40])
    with pytest.raises(StateFileError, match=r"line \d+, column \d+.*left untouched.*positions.json.prev"):
        PositionStore(path).load()


def test_unchanged_state_is_not_rewritten(tmp_path):
    path = tmp_path / "positions.json"
    store = PositionStore(path)
    state = BotState()
    store.save(state)
    mtime = path.stat().st_mtime_ns
    store.save(state)
    assert path.stat().st_mtime_ns == mtime and not (tmp_path / "positions.json.prev").exists()
    state.pause("changed")
    store.save(state)
    assert json.loads(path.read_text())["paused"] is True


def test_top_level_list_format(tmp_path):
    path = tmp_path / "positions.json"
    path.write_text(json.dumps([{"token_id": "1", "size": "5", "entry_price": "0.4"}]))
    state = PositionStore(path).load()
    assert len(state.positions) == 1 and state.positions[0].exit_mode == ExitMode.MONITOR


def test_blacklist_expires():
    state = BotState()
    state.blacklist_market("0xc", NOW + timedelta(hours=24))
    assert state.is_blacklisted("0xc", NOW + timedelta(hours=23))
    assert not state.is_blacklisted("0xc", NOW + timedelta(hours=24, seconds=1))
    assert state.blacklist == {}


def test_holds_market_only_counts_active_positions():
    state = BotState()
    p = pos()
    state.add(p)
    assert state.holds_market("0xc")
    transition(p, PositionState.CLOSED, NOW)
    assert not state.holds_market("0xc") and state.active_positions() == []


def test_two_bots_on_one_file_refuse(tmp_path):
    a = PositionStore(tmp_path / "positions.json")
    a.acquire_lock()
    b = PositionStore(tmp_path / "positions.json")
    with pytest.raises(StateFileError, match="in use by another bot"):
        b.acquire_lock()
    code = ("import sys; from bot.position_manager import PositionStore\n"
            f"PositionStore({str(tmp_path / 'positions.json')!r}).acquire_lock()")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.returncode != 0 and "in use by another bot" in other.stderr
    a.release_lock()
    b.acquire_lock()
    b.release_lock()
