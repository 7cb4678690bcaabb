import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from freezegun import freeze_time

from bot.errors import StateFileError
from bot.lifecycle import NothingLeft, apply
from bot.position_manager import (
    BotState,
    CloseReason,
    ExitMode,
    Position,
    PositionState,
    PositionStore,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


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


@pytest.mark.parametrize("field, value", [("trail_pct", "2"), ("high_bid", "-0.5"), ("break_even_at_pct", "0"),
                                          ("trail_pct", "NaN")])
def test_a_hand_edited_following_stop_names_the_position_and_the_field(tmp_path, field, value):
    good = pos().to_dict()
    (tmp_path / "positions.json").write_text(json.dumps({"schema_version": 4, "positions": [{**good, field: value}]}))
    with pytest.raises(StateFileError, match=rf"positions\[0\].*{field}"):
        PositionStore(tmp_path / "positions.json").load()


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["tp_ladder"][1].update(price="1.2"), r"tp_ladder\[1\]\.price"),
    (lambda d: d["tp_ladder"][1].update(price="0.50"), r"tp_ladder\[1\]\.price: must rise"),
    (lambda d: d["tp_ladder"][0].update(shares="-3"), r"tp_ladder\[0\]\.shares"),
    (lambda d: d["tp_ladder"][0].update(shares="many"), r"tp_ladder\.0\.shares"),
    (lambda d: d.update(exit_rung=5), r"exit_rung: must name one of its 2"),
    (lambda d: d["orders"][0].update(rung=-1), r"orders\[0\]\.rung"),
])
def test_a_hand_edited_tp_ladder_names_the_position_and_the_field(tmp_path, edit, field):
    good = pos().to_dict()
    good["tp_ladder"] = [{"pct": "0.05", "price": "0.55", "shares": "10"}, {"pct": "0.3", "price": "0.65",
                                                                            "shares": "10"}]
    assert Position.from_dict(good).tp_ladder[1].price == D("0.65")
    edit(good)
    (tmp_path / "positions.json").write_text(json.dumps({"schema_version": 4, "positions": [good]}))
    with pytest.raises(StateFileError, match=rf"positions\[0\].*{field}"):
        PositionStore(tmp_path / "positions.json").load()


def test_a_file_from_before_following_stops_loads_with_them_off(tmp_path):
    old = {k: v for k, v in pos().to_dict().items()
           if k not in ("trail_pct", "trail_activation_pct", "break_even_at_pct", "high_bid", "stop_why", "tp_ladder",
                        "ladder_notes", "exit_rung", "tp_order_ids")}
    (tmp_path / "positions.json").write_text(json.dumps({"schema_version": 4, "positions": [old]}))
    p = PositionStore(tmp_path / "positions.json").load().positions[0]
    assert (p.trail_pct, p.break_even_at_pct, p.high_bid, p.stop_why) == (None, None, None, None)
    assert (p.tp_ladder, p.exit_rung) == ([], None)


def test_age_uses_total_elapsed_time():
    with freeze_time(NOW + timedelta(days=2, hours=1)):
        assert pos().age_hours(datetime.now(UTC)) == pytest.approx(49.0)


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
    assert prev["paused"] is False and prev["schema_version"] == 5


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
    apply(p, NothingLeft(), NOW)
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


# -- issue 10, rule 11: hand-edited positions are validated on load -------------------------------------

@pytest.mark.parametrize("field, value, reason", [
    ("shares", "-19.6", ">= 0"),
    ("shares", "1e12", "absurdly large"),
    ("entry_cost", "-1", ">= 0"),
    ("entry_price", "1.5", "between 0 and 1"),
    ("entry_price", "0", "between 0 and 1"),
    ("tp_price", "1", "between 0 and 1"),
    ("sl_price", "0", "between 0 and 1"),
    ("tp_price", "0.40", "must be above sl_price 0.45"),
])
def test_implausible_positions_are_refused_with_id_and_field(tmp_path, field, value, reason):
    # Negative shares used to load and be "sold" at a fake +$9.99 profit; a TP below the SL traded at once.
    good = pos(id="p7").to_dict()
    path = tmp_path / "positions.json"
    text = json.dumps({"schema_version": 2, "positions": [good, {**good, "id": "bad1", field: value}]})
    path.write_text(text)
    with pytest.raises(StateFileError) as err:
        PositionStore(path).load()
    msg = str(err.value)
    assert "positions[1] (id bad1)" in msg and f"{field}: " in msg and reason in msg and "left untouched" in msg
    assert path.read_text() == text


def test_a_closed_unfilled_entry_and_a_resolved_position_load():
    unfilled = pos(status=PositionState.CLOSED, close_reason=CloseReason.ENTRY_UNFILLED, shares=D(0),
                   entry_shares=D(0), entry_price=D(0), entry_cost=D(0), tp_price=None, sl_price=None)
    Position.from_dict(unfilled.to_dict())
    resolved = pos(status=PositionState.CLOSED, close_reason=CloseReason.MARKET_RESOLVED, shares=D(0),
                   sold_shares=D("19.6"), exit_price=D(0))
    Position.from_dict(resolved.to_dict())


# -- issue 10, rule 11: a state file that cannot be written ---------------------------------------------

def test_a_state_file_that_cannot_be_written_is_an_error_and_keeps_the_last_version(tmp_path):
    path = tmp_path / "positions.json"
    store = PositionStore(path)
    state = BotState()
    state.add(pos())
    store.save(state)
    before = path.read_text()
    (tmp_path / "positions.json.tmp").mkdir()   # the write cannot happen (as with a read-only disk)
    state.pause("changed")
    with pytest.raises(StateFileError, match=r"positions.json: cannot be written .*last saved version is unchanged"):
        store.save(state)
    assert path.read_text() == before


def test_a_state_file_under_a_file_is_an_error_not_a_traceback(tmp_path):
    (tmp_path / "afile").write_text("x")
    store = PositionStore(tmp_path / "afile" / "positions.json")
    with pytest.raises(StateFileError, match="cannot be created"):
        store.acquire_lock()
    with pytest.raises(StateFileError, match="cannot be written"):
        store.save(BotState())


# -- issue 10, rule 7: counters are saved on their own; commands reach the running bot ------------------

def test_counters_alone_are_written(tmp_path):
    path = tmp_path / "positions.json"
    store = PositionStore(path)
    state = BotState()
    store.save(state)
    state.counters["run_seconds"] = 60.0
    state.counters.setdefault("api_calls_by_hour", {}).setdefault("2026-11-24T10:00", {})["shared"] = {"GET /x": 3}
    store.save(state)
    saved = json.loads(path.read_text())["counters"]
    assert saved["run_seconds"] == 60.0 and saved["api_calls_by_hour"]["2026-11-24T10:00"]["shared"] == {"GET /x": 3}
    state.counters["run_seconds"] = 120.0   # a change inside the same dict is a change too
    store.save(state)
    assert json.loads(path.read_text())["counters"]["run_seconds"] == 120.0


def test_control_commands_are_taken_once(tmp_path):
    store = PositionStore(tmp_path / "positions.json")
    assert store.take_control() == []
    store.send_control({"command": "resume"})
    store.send_control({"command": "convert", "id": "a"})
    store.send_control({"command": "resume"})   # the same command twice is one
    assert sorted(c["command"] for c in store.take_control()) == ["convert", "resume"]
    assert store.take_control() == []
    assert not store.control_path.exists()


def test_lock_refusal_names_the_pid(tmp_path):
    from bot.position_manager import LockHeld

    a = PositionStore(tmp_path / "positions.json")
    a.acquire_lock()
    with pytest.raises(LockHeld) as held:
        PositionStore(tmp_path / "positions.json").acquire_lock()
    assert held.value.pid == str(os.getpid())
    a.release_lock()


def test_a_state_file_that_cannot_be_written_is_found_before_any_order(tmp_path):
    (tmp_path / "positions.json.tmp").mkdir()   # as with a read-only folder (the tests may run as root)
    store = PositionStore(tmp_path / "positions.json")
    with pytest.raises(StateFileError, match="positions.json: cannot be written"):
        store.acquire_lock()
    (tmp_path / "positions.json.tmp").rmdir()
    other = PositionStore(tmp_path / "positions.json")
    other.acquire_lock()   # the refused store let go of the lock
    other.release_lock()
