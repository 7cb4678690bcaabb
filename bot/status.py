"""What ``status`` shows a trader first: for each open position the price now, how far the stop and the target
are, what an exit at the bid would bring after the taker fee, and how old it is; then the account in one line.

The bids come from the bot's last loop (recorded in each position's metrics; written with the state at most
every minute: no request while the bot runs). A ``status`` on a stopped bot may read the books once, in one
batched request, and says which it shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from bot.fees import taker_fee
from bot.ladder import next_target
from bot.money import fmt, to_decimal
from bot.position_manager import BotState, Position, PositionState

#: Statuses with shares the bot may still sell (their bid and unrealized P&L mean something).
HOLDING = (PositionState.OPEN, PositionState.EXITING, PositionState.HELD, PositionState.NEEDS_ATTENTION)


@dataclass(frozen=True)
class Marked:
    """One open position at the bid: ``unrealized_pnl`` is what selling its shares at ``bid`` would bring after
    the taker fee, less what those shares cost."""

    bid: Decimal | None
    bid_at: str | None
    unrealized_pnl: Decimal | None
    exit_value: Decimal | None
    ticks_to_sl: Decimal | None
    ticks_to_tp: Decimal | None
    age_hours: float
    fee_known: bool


def record_bid(pos: Position, bid: Decimal | None, now: datetime) -> None:
    """The loop's bid of ``pos``, kept in its metrics for ``status`` (a measurement: written at most every
    minute with the state, at no extra request)."""
    if bid is None or pos.metrics.get("bid") == str(bid):
        return
    pos.metrics["bid"] = str(bid)
    pos.metrics["bid_at"] = now.isoformat(timespec="seconds")
    pos.measured()


def record_fee_curve(pos: Position, rate: Decimal, exponent: int) -> None:
    """The market's taker fee curve, kept with the position (``status`` values an exit at the bid with it)."""
    pos.metrics["fee_curve"] = [str(rate), exponent]
    pos.measured()


def mark(pos: Position, now: datetime, bid: Decimal | None = None) -> Marked:
    """``pos`` valued at ``bid`` (default: the last one the bot recorded)."""
    bid_at = None
    if bid is None and pos.metrics.get("bid") is not None:
        try:
            bid, bid_at = to_decimal(pos.metrics["bid"], "bid"), pos.metrics.get("bid_at")
        except ValueError:
            bid = None
    age = pos.age_hours(now)
    if bid is None or pos.status not in HOLDING:
        return Marked(bid, bid_at, None, None, None, None, age, False)
    rate, exponent, fee_known = _fee_curve(pos)
    shares = pos.shares
    value = shares * bid - taker_fee(shares, bid, rate, exponent)
    cost = pos.entry_cost * shares / pos.entry_shares if pos.entry_shares > 0 else Decimal(0)
    tick = pos.tick_size
    to_sl = ((bid - pos.sl_price) / tick).quantize(Decimal("0.1")) if pos.sl_price is not None else None
    target = next_target(pos)
    to_tp = ((target - bid) / tick).quantize(Decimal("0.1")) if target is not None else None
    return Marked(bid, bid_at, (value - cost).quantize(Decimal("0.000001")), value.quantize(Decimal("0.000001")),
                  to_sl, to_tp, age, fee_known)


def _fee_curve(pos: Position) -> tuple[Decimal, int, bool]:
    """(rate, exponent, known) of the fee curve recorded with the position; none (no fee) when it is missing or
    was edited into something that is not one."""
    curve = pos.metrics.get("fee_curve")
    try:
        if isinstance(curve, list) and len(curve) == 2:
            return to_decimal(curve[0], "fee rate"), int(curve[1]), True
    except (ValueError, TypeError):
        pass
    return Decimal(0), 0, False


@dataclass(frozen=True)
class Totals:
    cash: Decimal | None
    cash_at: str | None
    open_value: Decimal
    unrealized_pnl: Decimal
    realized_today: Decimal
    realized: Decimal


def totals(state: BotState, marks: dict[str, Marked], now: datetime) -> Totals:
    """The account in one line: its USDC as last read, the open positions at the bid, P&L today and overall."""
    cash = state.counters.get("cash") or {}
    try:
        usdc = to_decimal(cash["usdc"], "cash") if "usdc" in cash else None
    except ValueError:
        usdc = None
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    moved = state.history.ids() if state.history is not None else set()
    today = state.history.pnl_closed_since(midnight) if state.history is not None else Decimal(0)
    today += sum((p.realized_pnl or Decimal(0) for p in state.positions if not p.is_active and p.id not in moved
                  and p.closed_at is not None and p.closed_at >= midnight), Decimal(0))
    _, overall = state.closed_totals()
    return Totals(usdc, cash.get("at"), sum((m.exit_value or Decimal(0) for m in marks.values()), Decimal(0)),
                  sum((m.unrealized_pnl or Decimal(0) for m in marks.values()), Decimal(0)), today, overall)


def age_text(hours: float) -> str:
    minutes = int(hours * 60)
    return f"{minutes // 1440}d{minutes % 1440 // 60}h" if minutes >= 1440 else f"{minutes // 60}h{minutes % 60:02d}m"


def totals_line(t: Totals) -> str:
    cash = f"${fmt(t.cash, 2)}" + (f" (read {t.cash_at})" if t.cash_at else "") if t.cash is not None else "-"
    return (f"total: cash {cash}, open positions worth ${fmt(t.open_value, 2)} at the bid "
            f"(unrealized ${fmt(t.unrealized_pnl, 2)}), realized P&L today ${fmt(t.realized_today, 2)}, "
            f"overall ${fmt(t.realized, 2)}")
