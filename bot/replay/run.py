"""One replay: the bot's own loop (main_bot.Bot: scanner filters, entry rules, exit protocol, lifecycle table,
fee function, A/B split) run on a simulated clock against ``ReplayVenue`` (the paper venue over recorded prices),
one loop per recorded price, and its result: the A/B report, one row per position, the P&L curve and drawdown,
the requests the run would have sent.
"""
from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.alerts import Alerter
from bot.clock import SimulatedClock
from bot.config import BotConfig
from bot.position_manager import BotState, Position, PositionStore
from bot.replay.market import FillModel, HistoryBooks, HistoryScanner, Prices, ReplayMarket, ReplayVenue, timeline
from bot.report import build_report

log = logging.getLogger("bot.replay")

#: Loggers a replay quiets (tens of thousands of loops): warnings and errors still show.
QUIET = ("bot", "bot.venue.paper", "bot.balance_lock", "bot.scanner", "bot.feeds", "bot.alerts")


@dataclass
class ReplayResult:
    """What a replay gives: the settings, the fill model, figures, the A/B report, rows, the P&L curve."""

    settings: dict[str, Any]
    fill_model: dict[str, Any]
    markets: int
    points: int
    loops: int
    seconds: float
    report: dict[str, Any]
    rows: list[dict[str, Any]]
    curve: list[tuple[int, float]]   # (unix seconds, cumulative realized P&L) at each close
    api_calls: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    @property
    def pnl(self) -> float:
        return round(sum(r["pnl"] or 0 for r in self.rows), 6)

    @property
    def trades(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "closed" and r["entry_shares"] > 0)

    @property
    def max_drawdown(self) -> float:
        """The largest fall of the cumulative P&L from a previous high (0 when it never fell)."""
        peak, worst = 0.0, 0.0
        for _, total in self.curve:
            peak = max(peak, total)
            worst = max(worst, peak - total)
        return round(worst, 6)

    def summary(self) -> dict[str, Any]:
        return {"settings": self.settings, "trades": self.trades, "pnl": self.pnl, "max_drawdown": self.max_drawdown,
                "markets": self.markets, "points": self.points, "loops": self.loops, "seconds": round(self.seconds, 2)}

    def as_json(self) -> dict[str, Any]:
        return {**self.summary(), "fill_model": self.fill_model, "report": self.report, "positions": self.rows,
                "curve": self.curve, "api_calls": self.api_calls, "warnings": self.warnings}


class ReplayStore(PositionStore):
    """The positions of a replay: the state file is never written (a replay is run again, not recovered; the live
    store's atomic, fsynced write of every loop would cost a replay of tens of thousands of loops most of its time);
    closed positions move to the history (a temporary one) as in a live run, where the report reads them."""

    def save(self, state: BotState, measurements: bool = True) -> None:
        """(Nothing to write.)"""


def replay_config(config: BotConfig, state_dir: Path) -> BotConfig:
    """The config a replay runs under: the user's strategy and trading settings, paper orders, no push feeds, no
    alerts, its state in ``state_dir`` (never the live positions file)."""
    data = config.model_dump(mode="json")
    data["bot"].update(dry_run=True, positions_file=str(state_dir / "positions.json"), log_file=None)
    data["feeds"]["enabled"] = False
    data["alerts"]["webhook_url"] = None
    return BotConfig.model_validate(data)


def position_row(p: Position) -> dict[str, Any]:
    """One position as a result row (JSON/CSV)."""
    def num(x: Decimal | None) -> float | None:
        return None if x is None else float(x)

    return {"id": p.id, "market_id": p.market_id, "question": p.question, "token_id": p.token_id,
            "outcome": p.outcome, "mode": p.exit_mode.value, "status": p.status.value,
            "close_reason": p.close_reason.value if p.close_reason else None,
            "opened_at": p.opened_at.isoformat(), "closed_at": p.closed_at.isoformat() if p.closed_at else None,
            "entry_price": num(p.entry_price), "tp_price": num(p.tp_price), "sl_price": num(p.sl_price),
            "exit_price": num(p.exit_price), "entry_shares": float(p.entry_shares), "sold_shares": float(p.sold_shares),
            "entry_cost": num(p.entry_cost), "exit_proceeds": num(p.exit_proceeds), "fees": num(p.fees_paid),
            "pnl": num(p.realized_pnl)}


def replay(config: BotConfig, markets: Sequence[ReplayMarket], since: int, until: int,
           model: FillModel | None = None, settings: dict[str, Any] | None = None,
           progress: Callable[[int, int], None] | None = None, *, bot_class: Any) -> ReplayResult:
    """Run the bot's loop (``bot_class``: main_bot.py's ``Bot``, handed down as the CLI gets it) over ``markets``
    from ``since`` to ``until`` (unix seconds), one loop per recorded price."""
    Bot = bot_class   # noqa: N806 (the loop itself)
    model = model or FillModel()
    started = time.perf_counter()
    times = timeline(markets, since, until)
    warnings = [f"market {m.market_id} ({m.gamma.get('question', '?')}): no recorded prices in the window"
                for m in markets if not any(ts for ts, _ in m.series.values())]
    clock = SimulatedClock(start=float(times[0] - 1 if times else since))
    prices = Prices(markets, clock)
    books = HistoryBooks(prices, model)
    quiet = {name: logging.getLogger(name).level for name in QUIET}
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        cfg = replay_config(config, Path(tmp))
        venue = ReplayVenue(books, cfg.capital.total)
        scanner = HistoryScanner(markets, prices, books, cfg.strategy)
        bot = Bot(cfg, venue, scanner, ReplayStore(cfg.bot.positions_file), clock=clock, alerter=Alerter(None))
        try:
            for name in QUIET:
                logging.getLogger(name).setLevel(logging.WARNING)
            for i, t in enumerate(times):
                clock.advance(t - clock.time())
                bot.run_guarded()
                if progress is not None and i % 1000 == 0:
                    progress(i, len(times))
            bot.state.counters["run_seconds"] = max(0, (times[-1] - times[0]) if times else 0)
            positions = bot.state.all_positions()
            report = build_report(bot.state)
        finally:
            for name, level in quiet.items():
                logging.getLogger(name).setLevel(level)
            history = getattr(bot.state, "history", None)
            if history is not None and hasattr(history, "close"):
                history.close()
    if progress is not None:
        progress(len(times), len(times))
    rows = [position_row(p) for p in positions]
    total, curve = 0.0, []
    for p in sorted((p for p in positions if p.closed_at is not None and p.realized_pnl is not None),
                    key=lambda p: p.closed_at or datetime.min.replace(tzinfo=UTC)):
        total += float(p.realized_pnl or 0)
        curve.append((int(p.closed_at.timestamp()) if p.closed_at else 0, round(total, 6)))
    points = sum(len(ts) for m in markets for ts, _ in m.series.values())
    calls = dict(books.api_calls())
    for k, v in scanner.api_calls().items():
        calls[k] = calls.get(k, 0) + v
    return ReplayResult(settings=settings or {}, fill_model=model.describe(), markets=len(markets), points=points,
                        loops=len(times), seconds=time.perf_counter() - started, report=report, rows=rows,
                        curve=curve, api_calls=calls, warnings=warnings)
