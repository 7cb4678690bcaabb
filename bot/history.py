"""The history of closed positions: an append-only SQLite database next to the state file.

``positions.json`` holds what the bot manages now; a position that closes moves here (bot/position_manager.py,
``PositionStore.move_closed``): written here first (committed), then the state file is saved without it. At
start-up a closed position still in the state file is dropped when the history has it (by id) and appended
when it does not, so a crash at any point of the move leaves it in exactly one place.

Each row is the position whole (``Position.to_dict()`` as JSON) with indexed columns for the queries
(``status``'s last N closed, ``report --since``, the order ids and tokens reconciliation asks about). The
standard library's ``sqlite3`` in WAL mode: ``status`` and ``report`` read while the bot writes.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from bot.errors import StateFileError


class Stored(Protocol):
    """What the history stores of a closed position (bot/position_manager.py's ``Position``; handed in, so this
    module needs no import of it)."""

    id: str
    opened_at: datetime
    closed_at: datetime | None
    exit_mode: Any
    close_reason: Any
    condition_id: str
    token_id: str
    realized_pnl: Decimal | None
    venue: str | None
    wallet: str | None
    orders: Any

    def to_dict(self) -> dict[str, Any]: ...


Position = TypeVar("Position", bound=Stored)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS closed_positions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    opened_at TEXT NOT NULL,
    closed_at TEXT,
    exit_mode TEXT NOT NULL,
    close_reason TEXT,
    condition_id TEXT NOT NULL,
    token_id TEXT NOT NULL,
    realized_pnl TEXT,
    venue TEXT,
    wallet TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS closed_positions_opened_at ON closed_positions (opened_at);
CREATE INDEX IF NOT EXISTS closed_positions_closed_at ON closed_positions (closed_at);
CREATE INDEX IF NOT EXISTS closed_positions_exit_mode ON closed_positions (exit_mode);
CREATE INDEX IF NOT EXISTS closed_positions_condition_id ON closed_positions (condition_id);
CREATE TABLE IF NOT EXISTS api_calls (
    hour TEXT NOT NULL,
    mode TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    n REAL NOT NULL,
    PRIMARY KEY (hour, mode, endpoint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS order_ids (
    order_id TEXT PRIMARY KEY,
    position_id TEXT NOT NULL
) WITHOUT ROWID;
"""


def _iso(value: datetime | None) -> str | None:
    """Timestamps as UTC ISO-8601 text, which sorts in time order (what the indexes rely on)."""
    return None if value is None else value.astimezone(UTC).isoformat()


class History(Generic[Position]):
    """Closed positions, append-only, at ``path``; ``parse(data, where)`` makes one back from its stored dict.
    Opened on first use; read-only callers (``status``, ``report``) on a folder without a history see an empty
    one and create no file."""

    def __init__(self, path: str | Path, parse: Callable[[dict, str], Position]):
        self.path = Path(path)
        self._parse = parse
        self._conn: sqlite3.Connection | None = None
        self._ids: set[str] | None = None            # ids in the history (loaded once, kept in step)
        self._totals: tuple[int, Decimal] | None = None   # (count, realized P&L) kept in step with append

    # -- the connection --------------------------------------------------------------------------------

    def _db(self, create: bool = True) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self.path.exists():
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StateFileError(f"{self.path}: the history of closed positions cannot be opened ({exc}); "
                                 "the state file was left untouched") from None
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- writing ---------------------------------------------------------------------------------------

    def append(self, positions: Iterable[Position]) -> int:
        """Store closed positions (one transaction, committed and synced before returning). A position
        whose id is already stored is left as stored (an interrupted move done again). Returns how many
        were added."""
        rows = []
        orders: list[tuple[str, str]] = []
        for p in positions:
            d = p.to_dict()
            rows.append((p.id, _iso(p.opened_at), _iso(p.closed_at), p.exit_mode.value,
                         p.close_reason.value if p.close_reason else None, p.condition_id, p.token_id,
                         d.get("realized_pnl"), p.venue, p.wallet, json.dumps(d), p.realized_pnl))
            orders.extend((r.order_id, p.id) for r in p.orders if r.order_id)
        if not rows:
            return 0
        known = self.ids()
        new = [r for r in rows if r[0] not in known]
        self._write("the history of closed positions", "the positions", [
            ("INSERT OR IGNORE INTO closed_positions (id, opened_at, closed_at, exit_mode, close_reason, "
             "condition_id, token_id, realized_pnl, venue, wallet, data) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
             [r[:11] for r in new]),
            ("INSERT OR IGNORE INTO order_ids (order_id, position_id) VALUES (?, ?)", orders)])
        known.update(r[0] for r in new)
        if self._totals is not None:
            count, pnl = self._totals
            self._totals = (count + len(new), pnl + sum((r[11] or Decimal(0) for r in new), Decimal(0)))
        return len(new)

    def store_api_calls(self, by_hour: dict[str, dict[str, dict[str, float]]]) -> None:
        """Store complete hours of API-call counts (hour -> mode -> endpoint -> calls). An hour stored again
        replaces itself, so a move interrupted after this write and done again counts it once."""
        rows = [(hour, mode, endpoint, float(n)) for hour, modes in by_hour.items()
                for mode, endpoints in modes.items() for endpoint, n in endpoints.items()]
        if rows:
            self._write("the API-call counts", "them",
                        [("INSERT OR REPLACE INTO api_calls (hour, mode, endpoint, n) VALUES (?,?,?,?)", rows)])

    def _write(self, what: str, kept: str, statements: list[tuple[str, list[tuple]]]) -> None:
        """One transaction, committed and synced before returning; StateFileError naming ``what`` if not."""
        conn = self._db()
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql, rows in statements:
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StateFileError(f"{self.path}: {what} cannot be written ({exc}); the state file still holds "
                                 f"{kept}") from None

    def api_calls(self, since_hour: str | None = None) -> dict[str, dict[str, dict[str, float]]]:
        """Stored hours of API-call counts (hour -> mode -> endpoint -> calls), from ``since_hour`` on."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        rows = self._query("SELECT hour, mode, endpoint, n FROM api_calls WHERE hour >= ?", (since_hour or "",))
        for hour, mode, endpoint, n in rows:
            out.setdefault(hour, {}).setdefault(mode, {})[endpoint] = n
        return out

    # -- reading ---------------------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        conn = self._db(create=False)
        if conn is None:
            return []
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StateFileError(f"{self.path}: the history of closed positions cannot be read ({exc})") from None

    def _positions(self, sql: str, args: tuple = ()) -> list[Position]:
        return [self._parse(json.loads(row[0]), f"{self.path}") for row in self._query(sql, args)]

    def ids(self) -> set[str]:
        """Ids of the stored positions (read once, then kept in step by ``append``)."""
        if self._ids is None:
            self._ids = {row[0] for row in self._query("SELECT id FROM closed_positions")}
        return self._ids

    def count(self) -> int:
        return self.totals()[0]

    def totals(self) -> tuple[int, Decimal]:
        """(how many closed positions, their realized P&L): one query, then kept in step by ``append``."""
        if self._totals is None:
            rows = self._query("SELECT realized_pnl FROM closed_positions")
            self._totals = (len(rows), sum((Decimal(r[0]) for r in rows if r[0] not in (None, "")), Decimal(0)))
        return self._totals

    def all(self) -> list[Position]:
        """Every closed position, in the order they closed (were moved here)."""
        return self._positions("SELECT data FROM closed_positions ORDER BY seq")

    def recent(self, n: int) -> list[Position]:
        """The last ``n`` positions moved here, oldest first."""
        return list(reversed(self._positions("SELECT data FROM closed_positions ORDER BY seq DESC LIMIT ?",
                                             (max(n, 0),))))

    def since(self, when: datetime) -> list[Position]:
        """Positions opened at or after ``when`` (the opened_at index), in the order they closed."""
        return self._positions("SELECT data FROM closed_positions WHERE opened_at >= ? ORDER BY seq", (_iso(when),))

    def pnl_closed_since(self, when: datetime) -> Decimal:
        """Realized P&L of the positions that closed at or after ``when`` (the closed_at index)."""
        rows = self._query("SELECT realized_pnl FROM closed_positions WHERE closed_at >= ?", (_iso(when),))
        return sum((Decimal(r[0]) for r in rows if r[0] not in (None, "")), Decimal(0))

    def has_order(self, order_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM order_ids WHERE order_id = ?", (order_id,)))

    def order_ids(self) -> set[str]:
        return {row[0] for row in self._query("SELECT order_id FROM order_ids")}

    def venues(self) -> list[tuple[str | None, str | None, int, str]]:
        """(venue, wallet, how many, one id) for each venue the stored positions lived on."""
        return [(r[0], r[1], r[2], r[3]) for r in
                self._query("SELECT venue, wallet, COUNT(*), MIN(id) FROM closed_positions GROUP BY venue, wallet")]

    def recent_tokens(self, n: int) -> list[str]:
        """Tokens of the most recently closed positions, most recent first, each once (at most ``n``)."""
        rows = self._query("SELECT token_id FROM closed_positions GROUP BY token_id ORDER BY MAX(seq) DESC LIMIT ?",
                           (max(n, 0),))
        return [row[0] for row in rows]
