"""Positions: the state machine of one position, the bot's whole state, and its atomic persistence.

``positions.json`` is the source of truth for what the bot manages now (active positions, blacklist, pause,
counters); closed positions move to the history database next to it (bot/history.py, ``move_closed``). The
state file is written atomically (temp file, fsync,
rename), the previous good version kept as ``<file>.prev``, the schema versioned, files of older
versions loaded (a position without ``exit_mode`` is ``monitor``), and a file that failed to load is
never overwritten. The blacklist (with expiry) and the pause flag live in the same file.
"""
from __future__ import annotations

import enum
import errno
import fcntl
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    computed_field,
    field_serializer,
    model_validator,
)

from bot.crashpoints import crashpoint
from bot.errors import StateFileError
from bot.history import History
from bot.orders import OPEN_STATES, OrderRecord, Quantities, RecordState, Role, quantities

SCHEMA_VERSION = 5   # 5: take-profit ladders (rungs on the position and its records); 4: V2 fees and settlement on
#                      the records; 3: order records; 2: one TP's fills and quantities as fields; 1: the seed's


class PositionState(enum.StrEnum):
    OPENING = "opening"
    OPEN = "open"
    EXITING = "exiting"
    HELD = "held_to_resolution"   # a remainder no order can carry (under 5 shares and under $1): kept, watched,
    #                               its payout booked when the market resolves
    SETTLING = "settling"         # nothing left to sell, but the venue has not settled every trade yet (a match
    #                               is not a settlement: a trade can still FAIL, and then the shares come back)
    CLOSED = "closed"
    NEEDS_ATTENTION = "needs_attention"


class CloseReason(enum.StrEnum):
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    TIME_EXIT = "time_exit"
    MARKET_RESOLVED = "market_resolved"
    MANUAL = "manual"
    ENTRY_UNFILLED = "entry_unfilled"
    SOLD_OUTSIDE = "sold_outside"   # its shares left the account outside the bot (e.g. sold on polymarket.com)


class ExitMode(enum.StrEnum):
    MONITOR = "monitor"
    LIMIT_ORDERS = "limit_orders"


class Rung(BaseModel):
    """One rung of a take-profit ladder (bot/ladder.py): sell ``shares`` at ``price`` (the entry plus ``pct``,
    rounded up to the tick)."""

    model_config = ConfigDict(frozen=True)

    pct: Decimal
    price: Decimal
    shares: Decimal

    @field_serializer("pct", "price", "shares")
    def _as_string(self, value: Decimal) -> str:
        return format(value, "f")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


class Position(BaseModel):
    """One position: what it bought and sold (its order records), how it exits, and where it stands.

    Quantities (shares held, sold, cost, proceeds, fees) are derived from ``orders`` (bot/orders.py) and
    written to the file next to them for people to read; the state changes only through
    ``bot.lifecycle.apply``."""

    model_config = ConfigDict(validate_assignment=True, extra="ignore", use_enum_values=False)

    id: str = Field(default_factory=_new_id)
    token_id: str
    condition_id: str = ""
    market_id: str = ""
    question: str = ""
    outcome: str = ""
    exit_mode: ExitMode = ExitMode.MONITOR
    status: PositionState = PositionState.OPEN
    close_reason: CloseReason | None = None
    entry_price: Decimal = Decimal(0)
    tp_price: Decimal | None = None
    sl_price: Decimal | None = None
    tick_size: Decimal = Decimal("0.01")
    min_order_size: Decimal = Decimal("5")
    neg_risk: bool = False
    market_version: str = "v1"   # Gamma's market version: "v1" (CTF token ids) or "v2" (Protocol V2 position ids)
    sl_order_id: str | None = None  # the seed's field; always None: the SL is watched, never resting
    orders: list[OrderRecord] = Field(default_factory=list)
    exit_price: Decimal | None = None
    realized_pnl: Decimal | None = None
    opened_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    last_tp_check_at: datetime | None = None
    fallback_reason: str | None = None
    attention_reason: str | None = None
    # The exit in progress: the bid that triggered it (its sell floor is anchored there), when to try the
    # next sell after one that did not fill, how often the balance looked short, whether the holding time
    # already re-anchored it once.
    trigger_bid: Decimal | None = None
    retry_at: float | None = None
    balance_shortfalls: int = 0
    time_reanchored: bool = False
    # Stops that follow the price (bot/stops.py), as configured when the position opened (None: off; files from
    # before them load with both off), the highest bid seen since entry, and why the stop (sl_price) last rose.
    trail_pct: Decimal | None = None
    trail_activation_pct: Decimal = Decimal(0)
    break_even_at_pct: Decimal | None = None
    high_bid: Decimal | None = None
    stop_why: str | None = None
    # The take-profit ladder (bot/ladder.py), fixed when the entry filled (empty: one TP at tp_price; with a ladder,
    # tp_price is its last rung's price, above every stop), what was merged to make it, and the rung a monitored
    # take-profit sale is selling up to (None: the exit sells everything).
    tp_ladder: list[Rung] = Field(default_factory=list)
    ladder_notes: list[str] = Field(default_factory=list)
    exit_rung: int | None = None
    metrics: dict = Field(default_factory=dict)   # measurements only (the A/B report), never control data
    # Where the position lives: "paper" (dry-run orders) or "live", and for live the wallet (funder address)
    # that holds its shares. Positions from files older than this field have None: the bot treats them as
    # living on the venue the current config uses and records that at its first save (Bot.save).
    venue: str | None = None
    wallet: str | None = None

    @field_serializer("entry_price", "tp_price", "sl_price", "tick_size", "min_order_size", "exit_price",
                      "realized_pnl", "trigger_bid", "trail_pct", "trail_activation_pct", "break_even_at_pct",
                      "high_bid")
    def _decimal_as_string(self, value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")

    @model_validator(mode="before")
    @classmethod
    def _records_from_older_fields(cls, data: Any) -> Any:
        """Files (and callers) from before order records give quantities as fields: turn them into records."""
        if isinstance(data, dict) and "orders" not in data:
            data = {**data, "orders": _legacy_records(data)}
        if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
            # schema 2 kept the exit's control data among the metrics
            metrics = dict(data["metrics"])
            moved = {"trigger_bid": "trigger_bid", "exit_retry_at": "retry_at",
                     "balance_shortfalls": "balance_shortfalls"}
            for old, new in moved.items():
                if old in metrics and new not in data:
                    value = metrics[old] if old != "trigger_bid" else metrics.get(old)
                    data = {**data, new: value}
            if old_keys := [k for k in ("exit_retry_at", "balance_shortfalls") if k in metrics]:
                data["metrics"] = {k: v for k, v in metrics.items() if k not in old_keys}
        return data

    # What is derived from the fields, kept until a field changes (``__setattr__``, ``changed``): the loop reads a
    # position's quantities dozens of times and saves every loop, but a position changes far less often.
    _quantities: Quantities | None = PrivateAttr(default=None)
    _line: str | None = PrivateAttr(default=None)
    _dump: dict | None = PrivateAttr(default=None)   # what the line is made of (``to_dict``)
    _live_tp: list[OrderRecord] | bool = PrivateAttr(default=False)   # False: not looked for since the last change
    _measured: bool = PrivateAttr(default=False)   # metrics changed in place since the line was made

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name[0] != "_":
            self.changed()

    def __eq__(self, other: object) -> bool:   # (the caches above are not part of what a position is)
        if not isinstance(other, Position):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None   # type: ignore[assignment]  # mutable, as pydantic models are

    def changed(self) -> None:
        """Forget the quantities and the serialised line derived from the fields: called on every assignment, and
        by whoever changes a field in place (a record of ``orders``, the ``metrics`` dict)."""
        private = self.__pydantic_private__
        if private is not None:
            private["_quantities"] = private["_line"] = private["_dump"] = None
            private["_live_tp"] = False   # (not looked for since)

    def measured(self) -> None:
        """Its ``metrics`` (measurements only) changed in place: written with the next save that asks for fresh
        measurements (at most every minute), or with the next change of the position itself."""
        self.__pydantic_private__["_measured"] = True   # type: ignore[index]

    def json_line(self, fresh: bool = False) -> str:
        """The position as one line of JSON (the state file's form), serialised once per change; ``fresh``: with
        the measurements taken since too (only the metrics are written again: they are JSON already)."""
        private = self.__pydantic_private__
        assert private is not None
        line = private["_line"]
        if line is None or (fresh and private["_measured"]):
            dump = private["_dump"]
            if dump is None:
                dump = private["_dump"] = self.to_dict()
            else:
                dump["metrics"] = self.metrics
            line = private["_line"] = json.dumps(dump)
            private["_measured"] = False
        return line

    # -- derived from the order records (bot/orders.py), the one source of quantities ---------------

    @property
    def _q(self) -> Quantities:
        private = self.__pydantic_private__
        assert private is not None
        q = private["_quantities"]
        if q is None:
            q = private["_quantities"] = quantities(self.orders)
        return q

    @computed_field  # type: ignore[prop-decorator]
    @property
    def shares(self) -> Decimal:
        """Shares the position holds now."""
        return self._q.shares

    @computed_field  # type: ignore[prop-decorator]
    @property
    def entry_shares(self) -> Decimal:
        return self._q.entry_shares

    @computed_field  # type: ignore[prop-decorator]
    @property
    def entry_cost(self) -> Decimal:
        return self._q.entry_cost

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sold_shares(self) -> Decimal:
        return self._q.sold_shares

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tp_filled_shares(self) -> Decimal:
        return self._q.tp_filled_shares

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_proceeds(self) -> Decimal:
        return self._q.exit_proceeds

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fees_paid(self) -> Decimal:
        """USDC value of the taker fees paid (already inside the P&L)."""
        return self._q.fees

    @computed_field  # type: ignore[prop-decorator]
    @property
    def entry_order_id(self) -> str | None:
        return next((r.order_id for r in reversed(self.orders) if r.role == Role.ENTRY and r.order_id), None)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tp_order_id(self) -> str | None:
        """The TP resting on the book, if any."""
        rec = self.live_tp
        return rec.order_id if rec else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tp_order_ids(self) -> list[str]:
        """Every TP resting on the book (one per rung of a take-profit ladder)."""
        return [r.order_id for r in self.live_tps if r.order_id]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_order_ids(self) -> list[str]:
        return [r.order_id for r in self.orders if r.role == Role.EXIT and r.order_id and r.filled > 0]

    @field_serializer("shares", "entry_shares", "entry_cost", "sold_shares", "tp_filled_shares", "exit_proceeds",
                      "fees_paid")
    def _derived_as_string(self, value: Decimal) -> str:
        return format(value, "f")

    @property
    def live_tps(self) -> list[OrderRecord]:
        """The TPs resting on the book, oldest first (a take-profit ladder rests one per rung)."""
        private = self.__pydantic_private__
        assert private is not None
        if private["_live_tp"] is False:
            private["_live_tp"] = [r for r in self.orders if r.role == Role.TP and r.state == RecordState.LIVE]
        return private["_live_tp"]

    @property
    def live_tp(self) -> OrderRecord | None:
        """The (first) TP resting on the book, if any."""
        tps = self.live_tps
        return tps[0] if tps else None

    @property
    def pending(self) -> OrderRecord | None:
        """The order whose outcome is not recorded yet (saved before it was signed or sent), if any."""
        return next((r for r in reversed(self.orders) if r.state in OPEN_STATES), None)

    def record(self, order_id: str) -> OrderRecord | None:
        return next((r for r in self.orders if r.order_id == order_id), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: Decimals as strings, datetimes ISO-8601, enums as their values."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "position") -> Position:
        """Load a position, tolerant of the seed's format (no exit_mode/status; 'size', 'entry_time')."""
        if not isinstance(data, dict):
            raise StateFileError(f"{where}: expected an object, got {type(data).__name__}")
        d = dict(data)
        aliases = {"size": "shares", "entry_time": "opened_at", "market": "market_id"}
        for old, new in aliases.items():
            if old in d and new not in d:
                d[new] = d.pop(old)
        d.setdefault("exit_mode", ExitMode.MONITOR.value)
        d.setdefault("status", PositionState.OPEN.value)
        if d.get("exit_mode") is None:
            d["exit_mode"] = ExitMode.MONITOR.value
        _check_legacy_amounts(d, where)
        try:
            pos = cls.model_validate(d)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            pid = d.get("id", "?")
            raise StateFileError(f"{where} (id {pid}): {field}: {err['msg']} (got {err.get('input')!r})") from None
        for attr in ("opened_at", "updated_at", "closed_at", "last_tp_check_at"):
            value = getattr(pos, attr)
            if value is not None and value.tzinfo is None:
                setattr(pos, attr, value.replace(tzinfo=UTC))
        if "orders" in data:
            # Quantities are derived from the order records; a hand edit of one of them would be silently
            # ignored, so a file whose written quantities disagree with its records is refused.
            for name in _AMOUNTS[:-1]:
                if d.get(name) not in (None, "") and Decimal(str(d[name])) != getattr(pos, name):
                    raise StateFileError(
                        f"{where} (id {pos.id}): {name}: {d[name]} in the file, but its order records (`orders`) add "
                        f"up to {format(getattr(pos, name), 'f')}; quantities are derived from the records: edit "
                        "those, or remove the field")
        problem = _implausible(pos)
        if problem is not None:
            field, reason, value = problem
            raise StateFileError(f"{where} (id {pos.id}): {field}: {reason} (got {value!r}); fix or remove "
                                 "this position by hand")
        return pos

    @property
    def is_active(self) -> bool:
        return self.status != PositionState.CLOSED

    @property
    def trading(self) -> bool:
        """Not closed, and not waiting for the venue to settle its last fills (``settling``: nothing left to sell)."""
        return self.status not in (PositionState.CLOSED, PositionState.SETTLING)

    def age_hours(self, now: datetime) -> float:
        """Real elapsed hours since opening (total seconds, not timedelta.hours, which ignores days)."""
        return (now - self.opened_at).total_seconds() / 3600


#: No position of this bot holds more shares or dollars than this: a larger number in a file is a typo.
MAX_AMOUNT = Decimal(10) ** 9
_AMOUNTS = ("shares", "entry_shares", "entry_cost", "tp_filled_shares", "sold_shares", "exit_proceeds",
            "min_order_size")


def _check_legacy_amounts(d: dict, where: str) -> None:
    """Quantities given as fields (files before order records): each a number, >= 0, not absurd."""
    for name in _AMOUNTS:
        if d.get(name) in (None, ""):
            continue
        try:
            v = Decimal(str(d[name]).strip())
        except ArithmeticError:
            v = Decimal("NaN")
        pid = d.get("id", "?")
        if not v.is_finite():
            raise StateFileError(f"{where} (id {pid}): {name}: expected a number (got {d[name]!r})")
        if v < 0:
            raise StateFileError(f"{where} (id {pid}): {name}: must be a number >= 0 (got {d[name]!r}); fix or "
                                 "remove this position by hand")
        if v > MAX_AMOUNT:
            raise StateFileError(f"{where} (id {pid}): {name}: absurdly large (more than {MAX_AMOUNT:,}) (got "
                                 f"{d[name]!r}); fix or remove this position by hand")


def _implausible(pos: Position) -> tuple[str, str, str] | None:
    """(field, reason, value) of the first value a hand-edited or damaged file cannot mean, else None.
    Checked on load only: a negative share count would be "sold" at a fake profit, a price outside (0, 1)
    or a TP at or below the SL would trade at once."""
    for i, rec in enumerate(pos.orders):
        for attr in ("filled", "usdc", "fee"):
            v = getattr(rec, attr)
            if not v.is_finite() or v < 0 or v > MAX_AMOUNT:
                return f"orders[{i}].{attr}", "must be a number >= 0 and not absurd", format(v, "f")
    for name in _AMOUNTS:
        v = getattr(pos, name)
        if not v.is_finite() or v < 0:
            return name, "must be a number >= 0", format(v, "f")
        if v > MAX_AMOUNT:
            return name, f"absurdly large (more than {MAX_AMOUNT:,})", format(v, "f")
    if not pos.tick_size.is_finite() or not 0 < pos.tick_size < 1:
        return "tick_size", "must be between 0 and 1", format(pos.tick_size, "f")
    ep = pos.entry_price
    if not ep.is_finite() or not (0 < ep < 1 or (ep == 0 and pos.entry_shares == 0 and pos.shares == 0)):
        return "entry_price", "must be between 0 and 1 (exclusive)", format(ep, "f")
    for name in ("tp_price", "sl_price"):
        v = getattr(pos, name)
        if v is not None and (not v.is_finite() or not 0 < v < 1):
            return name, "must be between 0 and 1 (exclusive)", format(v, "f")
    if pos.exit_price is not None and (not pos.exit_price.is_finite() or not 0 <= pos.exit_price <= 1):
        return "exit_price", "must be between 0 and 1", format(pos.exit_price, "f")
    for name in ("trail_pct", "trail_activation_pct", "break_even_at_pct", "high_bid"):
        v = getattr(pos, name)
        if v is not None and (not v.is_finite() or not 0 <= v < 1 or (name != "trail_activation_pct" and v == 0)):
            return name, "must be between 0 and 1 (exclusive)", format(v, "f")
    if pos.tp_price is not None and pos.sl_price is not None and pos.tp_price <= pos.sl_price:
        return "tp_price", f"must be above sl_price {format(pos.sl_price, 'f')}", format(pos.tp_price, "f")
    for i, rung in enumerate(pos.tp_ladder):
        if not rung.price.is_finite() or not 0 < rung.price < 1:
            return f"tp_ladder[{i}].price", "must be between 0 and 1 (exclusive)", format(rung.price, "f")
        if not rung.shares.is_finite() or not 0 < rung.shares <= MAX_AMOUNT:
            return f"tp_ladder[{i}].shares", "must be a number above 0 and not absurd", format(rung.shares, "f")
        if i and rung.price <= pos.tp_ladder[i - 1].price:
            return f"tp_ladder[{i}].price", "must rise from rung to rung", format(rung.price, "f")
    rungs = len(pos.tp_ladder)
    if pos.exit_rung is not None and not 0 <= pos.exit_rung < rungs:
        return "exit_rung", f"must name one of its {rungs} take-profit rungs (0 to {rungs - 1}) or be null", \
            str(pos.exit_rung)
    for i, rec in enumerate(pos.orders):
        if rec.rung is not None and not 0 <= rec.rung < rungs:
            return f"orders[{i}].rung", f"must name one of its {rungs} take-profit rungs or be null", str(rec.rung)
    return None


def _dec(value: Any, default: str = "0") -> Decimal:
    try:
        d = Decimal(str(value if value not in (None, "") else default))
    except ArithmeticError:
        return Decimal(default)
    return d if d.is_finite() else Decimal(default)


def _legacy_records(d: dict) -> list[dict]:
    """Order records for a position given the older way (schema 1 and 2, or keyword arguments): one entry
    record for what it bought, its TPs' fills, one exit record for what else it sold, and the record of a
    pending order (the ``pending`` dict of schema 2). Quantities come out the same as the fields said."""
    shares = _dec(d.get("shares", d.get("size")))
    sold = _dec(d.get("sold_shares"))
    entry_shares = _dec(d.get("entry_shares")) if d.get("entry_shares") not in (None, "") else shares + sold
    if entry_shares < shares + sold:   # a file whose shares say more than its entry: the shares win
        entry_shares = shares + sold
    entry_cost = _dec(d.get("entry_cost")) if d.get("entry_cost") not in (None, "") else \
        entry_shares * _dec(d.get("entry_price"))
    records: list[dict] = []
    raw_pending = d.get("pending")
    pending: dict = raw_pending if isinstance(raw_pending, dict) else {}
    entry_pending = pending.get("kind") == "entry"
    if entry_shares > 0 or d.get("entry_order_id") or entry_pending:
        state = RecordState.DONE
        if entry_pending and entry_shares == 0:
            state = RecordState.SENT if pending.get("order_id") else RecordState.INTENT
        records.append({"role": Role.ENTRY, "order_id": d.get("entry_order_id") or pending.get("order_id"),
                        "state": state, "filled": entry_shares, "usdc": entry_cost,
                        "size": pending.get("usdc") if entry_pending else None,
                        "price": pending.get("max_price") if entry_pending else None,
                        "sent_at": pending.get("sent_at") if entry_pending else None})
    tp_price = _dec(d.get("tp_price"))
    tp_total = Decimal(0)
    raw_fills = d.get("tp_fills")
    fills: dict = raw_fills if isinstance(raw_fills, dict) else {}
    live_id = d.get("tp_order_id")
    for oid, f in fills.items():
        f = f if isinstance(f, dict) else {"shares": f, "usdc": _dec(f) * tp_price}
        tp_total += _dec(f.get("shares"))
        records.append({"role": Role.TP, "order_id": oid, "filled": _dec(f.get("shares")),
                        "usdc": _dec(f.get("usdc")), "fee": _dec(f.get("fee")),
                        "state": RecordState.LIVE if oid == live_id else RecordState.DONE, "price": tp_price})
    legacy_tp = _dec(d.get("tp_filled_shares")) - tp_total
    if live_id and live_id not in fills:
        records.append({"role": Role.TP, "order_id": live_id, "state": RecordState.LIVE, "price": tp_price,
                        "filled": max(legacy_tp, Decimal(0)), "usdc": max(legacy_tp, Decimal(0)) * tp_price})
        tp_total += max(legacy_tp, Decimal(0))
    elif legacy_tp > 0:
        records.append({"role": Role.TP, "state": RecordState.DONE, "price": tp_price, "filled": legacy_tp,
                        "usdc": legacy_tp * tp_price})
        tp_total += legacy_tp
    tp_usdc = sum((_dec(r["usdc"]) for r in records if r["role"] == Role.TP), Decimal(0))
    exit_sold = sold - tp_total
    if exit_sold > 0:
        ids = [x for x in (d.get("exit_order_ids") or []) if x]
        records.append({"role": Role.EXIT, "order_id": ids[-1] if ids else None, "state": RecordState.DONE,
                        "filled": exit_sold, "usdc": max(_dec(d.get("exit_proceeds")) - tp_usdc, Decimal(0))})
    if pending.get("kind") in ("tp", "exit_sell"):
        records.append({"role": Role.TP if pending["kind"] == "tp" else Role.EXIT,
                        "order_id": pending.get("order_id"),
                        "state": RecordState.SENT if pending.get("order_id") else RecordState.INTENT,
                        "price": pending.get("price"), "size": pending.get("size"),
                        "sent_at": pending.get("sent_at") or pending.get("since")})
    return records


class BotState(BaseModel):
    """Everything the bot persists in the state file: the positions it manages, blacklist, pause. ``positions``
    holds the active positions and those that closed since the last move to the history (``move_closed``);
    the closed ones before are in the history (``history``), which only the queries below read."""

    model_config = ConfigDict(validate_assignment=True)

    schema_version: int = SCHEMA_VERSION
    positions: list[Position] = Field(default_factory=list)
    blacklist: dict[str, datetime] = Field(default_factory=dict)
    paused: bool = False
    pause_reason: str | None = None
    counters: dict = Field(default_factory=dict)  # free-form running counters (API calls per hour, ...)
    _history: History | None = PrivateAttr(default=None)
    _counters_json: str | None = PrivateAttr(default=None)

    @property
    def history(self) -> History | None:
        return self._history

    def attach_history(self, history: History | None) -> None:
        self._history = history

    # -- the history (never read by the loop's per-position work) ---------------------------------

    def closed_positions(self, since: datetime | None = None) -> list[Position]:
        """Closed positions (opened at or after ``since``): the history's, then those not moved yet."""
        h = self._history
        stored = [] if h is None else (h.all() if since is None else h.since(since))
        ids = {p.id for p in stored}
        return stored + [p for p in self.positions if not p.is_active and p.id not in ids
                         and (since is None or p.opened_at >= since)]

    def all_positions(self, since: datetime | None = None) -> list[Position]:
        """Every position: the closed ones (history first), then the active ones."""
        return self.closed_positions(since) + [p for p in self.positions if p.is_active
                                               and (since is None or p.opened_at >= since)]

    def closed_totals(self) -> tuple[int, Decimal]:
        """(closed positions, their realized P&L): the history's running totals plus those not moved yet."""
        count, pnl = self._history.totals() if self._history is not None else (0, Decimal(0))
        moved = self._history.ids() if self._history is not None and any(not p.is_active for p in self.positions) \
            else set()
        for p in self.positions:
            if not p.is_active and p.id not in moved:
                count, pnl = count + 1, pnl + (p.realized_pnl or Decimal(0))
        return count, pnl

    def active_positions(self) -> list[Position]:
        return [p for p in self.positions if p.is_active]

    def get(self, position_id: str) -> Position | None:
        return next((p for p in self.positions if p.id == position_id), None)

    def add(self, pos: Position) -> None:
        self.positions.append(pos)

    def blacklist_market(self, condition_id: str, until: datetime) -> None:
        if condition_id:
            self.blacklist[condition_id] = until

    def is_blacklisted(self, condition_id: str, now: datetime) -> bool:
        """True while the market's blacklist entry has not expired (expired entries are dropped)."""
        for cid in [c for c, until in self.blacklist.items() if until <= now]:
            del self.blacklist[cid]
        return condition_id in self.blacklist

    def pause(self, reason: str) -> None:
        self.paused, self.pause_reason = True, reason

    def resume(self) -> None:
        self.paused, self.pause_reason = False, None

    def known_order_ids(self) -> set[str]:
        """Every order id some position already accounts for (entries, TPs, exit sales), closed ones too."""
        ids: set[str] = self._history.order_ids() if self._history is not None else set()
        for p in self.positions:
            ids.update(r.order_id for r in p.orders if r.order_id)
        return ids

    def is_known_order(self, order_id: str) -> bool:
        """``order_id in known_order_ids()`` without reading the history whole (its order-id index)."""
        if any(r.order_id == order_id for p in self.positions for r in p.orders):
            return True
        return self._history is not None and self._history.has_order(order_id)

    def holds_market(self, condition_id: str) -> bool:
        return any(p.condition_id == condition_id for p in self.active_positions())

    def _head(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "blacklist": {cid: until.isoformat() for cid, until in self.blacklist.items()},
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "counters": self.counters,
        }

    def to_dict(self) -> dict[str, Any]:
        head = self._head()
        return {**head, "positions": [p.to_dict() for p in self.positions],
                "counters": json.loads(json.dumps(self.counters))}   # (a copy, not the live dict)

    def render(self, fresh: bool = True) -> str:
        """The state file's text: one position per line. Readable, diffable, and written by the C JSON encoder
        (``indent=`` would switch to the pure-Python one); each position's line is serialised once per change of
        it, so a save costs the changed positions, not all of them. Without ``fresh``, measurements (the counters
        and positions' metrics, which the loop updates every time) are those of the last fresh render: a save
        that changed nothing else writes nothing."""
        head = self._head()
        if fresh or self._counters_json is None:
            self._counters_json = json.dumps(self.counters)
        lines = ",\n".join(f"  {json.dumps(k)}: {self._counters_json if k == 'counters' else json.dumps(v)}"
                            for k, v in head.items())
        positions = ",\n".join(f"    {p.json_line(fresh)}" for p in self.positions)
        return "{\n" + lines + ',\n  "positions": [\n' + positions + ("\n" if positions else "") + "  ]\n}\n"


class LockHeld(StateFileError):
    """Another process (``pid``) holds the state file's lock: a bot is running on it."""

    def __init__(self, message: str, pid: str):
        super().__init__(message)
        self.pid = pid


class PositionStore:
    """Loads and saves the BotState at one path, atomically, keeping the previous version."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.prev_path = self.path.with_name(self.path.name + ".prev")
        self._load_failed = False
        self._lock_fd: int | None = None
        self._last_saved: str | None = None
        self.history: History[Position] = History(self.path.with_name(self.path.name + ".history.sqlite"),
                                                  lambda data, where: Position.from_dict(data, where=where))
        self.pre_history_path = self.path.with_name(self.path.name + ".pre-history")

    def load(self) -> BotState:
        """The stored state with its history attached (read only: closed positions still in the file stay
        there until ``settle``). Raises StateFileError, touching nothing."""
        state = self._load()
        state.attach_history(self.history)
        return state

    def settle(self, state: BotState) -> int:
        """At start-up (the lock held): closed positions still in the state file move to the history — from
        a file of before the history (its first start: the file is kept as ``<file>.pre-history``), or left by
        a crash in the middle of a move (those the history has already are dropped, the others appended).
        Returns how many were in the file."""
        if not any(not p.is_active for p in state.positions):
            return 0
        if not self.history.path.exists() and not self.pre_history_path.exists() and self.path.exists():
            try:
                shutil.copy2(self.path, self.pre_history_path)
            except OSError as exc:
                raise StateFileError(f"{self.pre_history_path}: cannot be written ({exc.strerror or exc}); the "
                                     f"state file {self.path} was left untouched") from None
        return self.move_closed(state)

    def move_closed(self, state: BotState) -> int:
        """Move the closed positions out of the state file into the history: the history first (committed),
        then the state file without them. A crash between the two leaves them in both, which the next start
        resolves (``settle``): never in neither place, never counted twice. Returns how many moved."""
        closed = [p for p in state.positions if not p.is_active]
        if not closed:
            return 0
        self.history.append(closed)
        crashpoint("history_written")
        state.positions[:] = [p for p in state.positions if p.is_active]
        self.save(state)
        return len(closed)

    def _load(self) -> BotState:
        """The stored state (empty when there is no file). Raises StateFileError, touching nothing."""
        if not self.path.exists():
            self._load_failed = False
            return BotState()
        try:
            text = self.path.read_text(encoding="utf-8")
            data = json.loads(text)
            state = self._parse(data)
        except StateFileError as exc:
            self._load_failed = True
            raise StateFileError(f"{exc}. The file was left untouched{self._prev_hint()}") from None
        except json.JSONDecodeError as exc:
            self._load_failed = True
            raise StateFileError(f"{self.path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
                                 f"The file was left untouched{self._prev_hint()}") from None
        except (OSError, UnicodeDecodeError) as exc:
            self._load_failed = True
            raise StateFileError(f"{self.path}: cannot be read ({exc})") from None
        self._load_failed = False
        return state

    def _prev_hint(self) -> str:
        return f"; the previous good version is {self.prev_path}" if self.prev_path.exists() else ""

    def _parse(self, data: Any) -> BotState:
        if isinstance(data, list):  # oldest format: a bare list of positions
            data = {"positions": data}
        if not isinstance(data, dict):
            raise StateFileError(f"{self.path}: expected an object with 'positions', got {type(data).__name__}")
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise StateFileError(f"{self.path}: schema_version {version!r} is newer than this bot understands "
                                 f"({SCHEMA_VERSION}); upgrade the bot")
        raw_positions = data.get("positions", [])
        if not isinstance(raw_positions, list):
            raise StateFileError(f"{self.path}: 'positions' must be a list")
        positions = [Position.from_dict(p, where=f"{self.path}: positions[{i}]") for i, p in enumerate(raw_positions)]
        try:
            return BotState(positions=positions, blacklist=data.get("blacklist") or {},
                            paused=bool(data.get("paused", False)), pause_reason=data.get("pause_reason"),
                            counters=data.get("counters") or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise StateFileError(f"{self.path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None

    def save(self, state: BotState, measurements: bool = True) -> None:
        """Atomic write: temp file + fsync, previous version kept as .prev, rename, fsync the folder.
        ``measurements`` False: counters and metrics as of the last save that wrote them (BotState.render).
        A file that cannot be written is a StateFileError naming it; the last good version stays in place
        and no half-written temp file is left behind. Complete hours of API-call counts move to the history
        first (the file keeps only the current hour: it does not grow an entry an hour forever)."""
        if self._load_failed:
            raise StateFileError(f"{self.path}: refusing to overwrite a file that failed to load")
        by_hour = state.counters.get("api_calls_by_hour") or {}
        if len(by_hour) > 1:   # the meter only writes to the latest hour: the others are complete
            latest = max(by_hour)
            done = {hour: modes for hour, modes in by_hour.items() if hour != latest}
            self.history.store_api_calls(done)
            state.counters["api_calls_by_hour"] = {latest: by_hour[latest]}
            measurements = True
        payload = state.render(fresh=measurements)
        if payload == self._last_saved and self.path.exists():
            return  # nothing changed since the last write: spare the disk (the loop saves every iteration)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            if self.path.exists():   # the previous version, kept by a hard link to it (no copy of its bytes)
                prev_tmp = self.prev_path.with_name(self.prev_path.name + ".tmp")
                _unlink_quietly(prev_tmp)
                try:
                    os.link(self.path, prev_tmp)
                    os.replace(prev_tmp, self.prev_path)
                except OSError:   # (a file system without hard links)
                    shutil.copyfile(self.path, self.prev_path)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise StateFileError(f"{self.path}: cannot be written ({exc.strerror or exc}); the last saved version "
                                 "is unchanged. Make the file and its folder writable, then start the bot again") \
                from None
        except BaseException:
            _unlink_quietly(tmp)   # interrupted (a second Ctrl-C): the state file itself was not touched
            raise
        self._last_saved = payload

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def control_path(self) -> Path:
        """Commands for the bot that holds the lock (``resume``, ``convert``), picked up once per loop."""
        return self.path.with_name(self.path.name + ".control")

    def acquire_lock(self) -> None:
        """Hold <path>.lock exclusively for the process lifetime: two bots on one file refuse to run."""
        lock_path = self.lock_path
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateFileError(f"{lock_path}: cannot be created ({exc.strerror or exc}); check that "
                                 f"{self.path.parent} is a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise LockHeld(f"{self.path} is in use by another bot (pid {holder})", holder) from None
            raise StateFileError(f"{lock_path}: cannot lock ({exc})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        # The bot saves before every order it sends: find out now, before any, that it can.
        probe = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(probe, "w", encoding="utf-8"):
                pass
            probe.unlink()
        except OSError as exc:
            self.release_lock()
            raise StateFileError(f"{self.path}: cannot be written ({exc.strerror or exc}); make the file and its "
                                 "folder writable") from None

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- commands to a running bot ----------------------------------------------------------------

    def send_control(self, command: dict) -> None:
        """Leave ``command`` for the bot holding the lock (written atomically; a newer command of the
        same kind replaces an older one that was not picked up yet)."""
        commands = [c for c in self._read_control(self.control_path) if c.get("command") != command.get("command")]
        tmp = self.control_path.with_name(self.control_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"commands": [*commands, command]}), encoding="utf-8")
            os.replace(tmp, self.control_path)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise StateFileError(f"{self.control_path}: cannot be written ({exc.strerror or exc})") from None

    def take_control(self) -> list[dict]:
        """Commands left by ``send_control`` since the last call (each is returned once). One stat per
        call when there are none."""
        taken = self.control_path.with_name(self.control_path.name + ".taken")
        try:
            os.replace(self.control_path, taken)   # a command sent from now on lands in a new file
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateFileError(f"{self.control_path}: cannot be read ({exc.strerror or exc})") from None
        commands = self._read_control(taken)
        _unlink_quietly(taken)
        return commands

    @staticmethod
    def _read_control(path: Path) -> list[dict]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        commands = data.get("commands") if isinstance(data, dict) else None
        return [c for c in commands if isinstance(c, dict)] if isinstance(commands, list) else []


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
