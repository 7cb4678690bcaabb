"""Positions: the state machine of one position, the bot's whole state, and its atomic persistence.

``positions.json`` is the source of truth for what the bot owns: written atomically (temp file, fsync,
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
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer

from bot.errors import BotError, StateFileError

SCHEMA_VERSION = 2


class PositionState(str, enum.Enum):
    OPENING = "opening"
    OPEN = "open"
    EXITING = "exiting"
    HELD = "held_to_resolution"   # a remainder no order can carry (under 5 shares and under $1): kept, watched,
    #                               its payout booked when the market resolves
    CLOSED = "closed"
    NEEDS_ATTENTION = "needs_attention"


class CloseReason(str, enum.Enum):
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    TIME_EXIT = "time_exit"
    MARKET_RESOLVED = "market_resolved"
    MANUAL = "manual"
    ENTRY_UNFILLED = "entry_unfilled"


class ExitMode(str, enum.Enum):
    MONITOR = "monitor"
    LIMIT_ORDERS = "limit_orders"


S = PositionState
#: The only moves a position's state can make. EXITING -> OPEN is for an exit abandoned with the TP re-armed.
ALLOWED_TRANSITIONS: dict[PositionState, frozenset[PositionState]] = {
    S.OPENING: frozenset({S.OPEN, S.CLOSED, S.NEEDS_ATTENTION}),
    S.OPEN: frozenset({S.EXITING, S.HELD, S.CLOSED, S.NEEDS_ATTENTION}),
    S.EXITING: frozenset({S.CLOSED, S.OPEN, S.HELD, S.NEEDS_ATTENTION}),
    S.HELD: frozenset({S.CLOSED, S.NEEDS_ATTENTION}),
    S.NEEDS_ATTENTION: frozenset({S.OPEN, S.EXITING, S.HELD, S.CLOSED}),
    S.CLOSED: frozenset(),
}


class IllegalTransition(BotError):
    """A state change the table does not allow."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


class TpFill(BaseModel):
    """What one take-profit order filled so far: shares, the USDC they brought (the trades' prices: a TP
    that crossed the book when placed filled above its limit) and the taker fee of that part."""

    shares: Decimal = Decimal(0)
    usdc: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)

    @field_serializer("shares", "usdc", "fee")
    def _decimal_as_string(self, value: Decimal) -> str:
        return format(value, "f")


class Position(BaseModel):
    """One position: what was bought, how it exits, and where it stands."""

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
    shares: Decimal = Decimal(0)
    entry_price: Decimal = Decimal(0)
    entry_cost: Decimal = Decimal(0)
    entry_shares: Decimal = Decimal(0)
    tp_price: Decimal | None = None
    sl_price: Decimal | None = None
    tick_size: Decimal = Decimal("0.01")
    min_order_size: Decimal = Decimal("5")
    neg_risk: bool = False
    entry_order_id: str | None = None
    tp_order_id: str | None = None
    sl_order_id: str | None = None  # the seed's field; always None: the SL is watched, never resting
    tp_filled_shares: Decimal = Decimal(0)   # total over every TP this position had (the sum of tp_fills)
    tp_fills: dict[str, TpFill] = Field(default_factory=dict)   # each TP's id -> what it filled so far
    fees_paid: Decimal = Decimal(0)   # USDC value of the taker fees paid (already inside realized_pnl)
    exit_order_ids: list[str] = Field(default_factory=list)
    sold_shares: Decimal = Decimal(0)
    exit_proceeds: Decimal = Decimal(0)
    exit_price: Decimal | None = None
    realized_pnl: Decimal | None = None
    opened_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    last_tp_check_at: datetime | None = None
    fallback_reason: str | None = None
    attention_reason: str | None = None
    pending: dict | None = None
    metrics: dict = Field(default_factory=dict)
    # Where the position lives: "paper" (dry-run orders) or "live", and for live the wallet (funder address)
    # that holds its shares. Positions from files older than this field have None: the bot treats them as
    # living on the venue the current config uses and records that at its first save (Bot.save).
    venue: str | None = None
    wallet: str | None = None

    @field_serializer("shares", "entry_price", "entry_cost", "entry_shares", "tp_price", "sl_price", "tick_size",
                      "min_order_size", "tp_filled_shares", "sold_shares", "exit_proceeds", "exit_price",
                      "realized_pnl", "fees_paid")
    def _decimal_as_string(self, value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")


    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: Decimals as strings, datetimes ISO-8601, enums as their values."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "position") -> "Position":
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
        if "entry_shares" not in d and "shares" in d:
            d["entry_shares"] = d["shares"]
        if "entry_cost" not in d and "shares" in d and "entry_price" in d:
            try:
                d["entry_cost"] = str(Decimal(str(d["shares"])) * Decimal(str(d["entry_price"])))
            except ArithmeticError:
                pass  # validation below names the bad field
        if not d.get("tp_fills") and d.get("tp_order_id") and str(d.get("tp_filled_shares") or "0").strip("0.") != "":
            # schema 2 kept one TP's fills only, booked at the TP's price
            try:
                filled = Decimal(str(d["tp_filled_shares"]))
                d["tp_fills"] = {d["tp_order_id"]: {"shares": str(filled),
                                                    "usdc": str(filled * Decimal(str(d.get("tp_price") or 0)))}}
            except ArithmeticError:
                pass  # validation below names the bad field
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
                setattr(pos, attr, value.replace(tzinfo=timezone.utc))
        problem = _implausible(pos)
        if problem is not None:
            field, reason, value = problem
            raise StateFileError(f"{where} (id {pos.id}): {field}: {reason} (got {value!r}); fix or remove "
                                 "this position by hand")
        return pos

    @property
    def is_active(self) -> bool:
        return self.status != PositionState.CLOSED

    def age_hours(self, now: datetime) -> float:
        """Real elapsed hours since opening (total seconds, not timedelta.hours, which ignores days)."""
        return (now - self.opened_at).total_seconds() / 3600


#: No position of this bot holds more shares or dollars than this: a larger number in a file is a typo.
MAX_AMOUNT = Decimal(10) ** 9
_AMOUNTS = ("shares", "entry_shares", "entry_cost", "tp_filled_shares", "sold_shares", "exit_proceeds",
            "min_order_size")


def _implausible(pos: Position) -> tuple[str, str, str] | None:
    """(field, reason, value) of the first value a hand-edited or damaged file cannot mean, else None.
    Checked on load only: a negative share count would be "sold" at a fake profit, a price outside (0, 1)
    or a TP at or below the SL would trade at once."""
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
    if pos.tp_price is not None and pos.sl_price is not None and pos.tp_price <= pos.sl_price:
        return "tp_price", f"must be above sl_price {format(pos.sl_price, 'f')}", format(pos.tp_price, "f")
    return None


def transition(pos: Position, new: PositionState, now: datetime, *, reason: CloseReason | None = None,
               note: str | None = None) -> Position:
    """The one function that changes a position's state; refuses what ALLOWED_TRANSITIONS does not list."""
    old = pos.status
    if new != old and new not in ALLOWED_TRANSITIONS[old]:
        raise IllegalTransition(f"position {pos.id}: {old.value} -> {new.value} is not allowed")
    if reason is not None:
        pos.close_reason = reason
    if new == PositionState.NEEDS_ATTENTION and note:
        pos.attention_reason = note
    if new == PositionState.CLOSED and old != PositionState.CLOSED:
        pos.closed_at = now
        if pos.sold_shares > 0:
            pos.exit_price = (pos.exit_proceeds / pos.sold_shares).quantize(Decimal("0.000001"))
        pos.realized_pnl = (pos.exit_proceeds - pos.entry_cost).quantize(Decimal("0.000001"))
    pos.status = new
    pos.updated_at = now
    return pos


class BotState(BaseModel):
    """Everything the bot persists: positions, blacklist, pause."""

    model_config = ConfigDict(validate_assignment=True)

    schema_version: int = SCHEMA_VERSION
    positions: list[Position] = Field(default_factory=list)
    blacklist: dict[str, datetime] = Field(default_factory=dict)
    paused: bool = False
    pause_reason: str | None = None
    counters: dict = Field(default_factory=dict)  # free-form running counters (API calls per hour, ...)

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
        """Every order id some position already accounts for (entries, TPs, exit sales)."""
        ids: set[str] = set()
        for p in self.positions:
            pending_id = (p.pending or {}).get("order_id")   # sent (or about to be) but its outcome not recorded
            ids.update(x for x in (p.entry_order_id, p.tp_order_id, pending_id, *p.tp_fills, *p.exit_order_ids) if x)
        return ids

    def holds_market(self, condition_id: str) -> bool:
        return any(p.condition_id == condition_id for p in self.active_positions())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "positions": [p.to_dict() for p in self.positions],
            "blacklist": {cid: until.isoformat() for cid, until in self.blacklist.items()},
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            # A copy, not the live dict: PositionStore.save compares this snapshot with the last one written,
            # and a shared reference would compare the counters with themselves (never written on their own).
            "counters": json.loads(json.dumps(self.counters)),
        }


def _render(data: dict) -> str:
    """The state file's text: one position per line. Readable, diffable, and written by the C JSON encoder
    (``indent=`` would switch to the pure-Python one, the bot's main CPU cost with hundreds of positions)."""
    head = {k: v for k, v in data.items() if k != "positions"}
    lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in head.items())
    positions = ",\n".join(f"    {json.dumps(p)}" for p in data["positions"])
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
        self._last_saved: dict | None = None

    def load(self) -> BotState:
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

    def save(self, state: BotState) -> None:
        """Atomic write: temp file + fsync, previous version kept as .prev, rename, fsync the folder.
        A file that cannot be written is a StateFileError naming it; the last good version stays in place
        and no half-written temp file is left behind."""
        if self._load_failed:
            raise StateFileError(f"{self.path}: refusing to overwrite a file that failed to load")
        data = state.to_dict()
        if data == self._last_saved and self.path.exists():
            return  # nothing changed since the last write: spare the disk (the loop saves every iteration)
        tmp = self.path.with_name(self.path.name + ".tmp")
        payload = _render(data)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            if self.path.exists():
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
        self._last_saved = data

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
