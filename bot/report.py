"""The A/B report: the two exit modes side by side, from positions.json alone.

Everything shown is derived from what positions store (entry, exit, prices, close reason, metrics);
nothing is kept twice. Slippage is measured against each exit's target: the TP price for a take-profit,
the SL price for a stop-loss, the bid that triggered it for a time exit; positive means better than the
target (a seller got more).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.ladder import rungs_filled
from bot.metrics import SHARED
from bot.position_manager import BotState, CloseReason, ExitMode, Position, PositionState

#: Below this many closed positions per mode a comparison of average P&L says nothing.
MIN_SAMPLE = 30


def exit_target(pos: Position) -> Decimal | None:
    if pos.close_reason == CloseReason.TAKE_PROFIT:
        return pos.tp_price
    if pos.close_reason == CloseReason.STOP_LOSS:
        return pos.sl_price
    trigger = pos.metrics.get("trigger_bid")
    return Decimal(str(trigger)) if pos.close_reason == CloseReason.TIME_EXIT and trigger else None


def slippage(pos: Position) -> tuple[float, float] | None:
    """(ticks, dollars) of the exit against its target; None when there is nothing to measure."""
    target = exit_target(pos)
    if target is None or pos.exit_price is None or pos.sold_shares <= 0:
        return None
    diff = pos.exit_price - target
    return float(diff / pos.tick_size), float(diff * pos.sold_shares)


def tp_filled_as_maker(pos: Position) -> bool:
    return pos.close_reason == CloseReason.TAKE_PROFIT and pos.tp_filled_shares > 0


def trigger_of(pos: Position) -> tuple[str, float | None] | None:
    """How the position's exit was triggered: (``push`` | ``poll``, milliseconds from the book that showed it
    to the exit's first order, None before that order); None when no watched trigger started it."""
    source = pos.metrics.get("trigger_source")
    if source not in ("push", "poll"):
        return None
    delay = pos.metrics.get("trigger_delay_ms")
    return str(source), float(delay) if isinstance(delay, (int, float)) else None


def trigger_text(pos: Position) -> str:
    """``status``'s trigger column: ``push 12ms``, ``poll 3.1s``, ``-``."""
    trig = trigger_of(pos)
    if trig is None:
        return "-"
    source, delay = trig
    if delay is None:
        return source
    return f"{source} {delay:.0f}ms" if delay < 1000 else f"{source} {delay / 1000:.1f}s"


def _triggers(closed: list[Position]) -> dict[str, dict[str, Any]]:
    """Per source (push, poll): exits it triggered, and the median and worst delay to their first order."""
    out: dict[str, dict[str, Any]] = {}
    for source in ("push", "poll"):
        trigs = [t for t in (trigger_of(p) for p in closed) if t is not None and t[0] == source]
        delays = sorted(d for _, d in trigs if d is not None)
        out[source] = {"exits": len(trigs), "p50_delay_ms": round(statistics.median(delays), 1) if delays else None,
                       "max_delay_ms": round(delays[-1], 1) if delays else None}
    return out


def _errors(pos: Position) -> int:
    m = pos.metrics
    return int(m.get("exit_retries", 0)) + (1 if pos.fallback_reason else 0) + (1 if m.get("cancel_race") else 0)


def _mode_hours_calls(state: BotState, since: datetime | None) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    first = since.strftime("%Y-%m-%dT%H:00") if since is not None else None
    stored = state.history.api_calls(first) if state.history is not None else {}
    hours = {**stored, **state.counters.get("api_calls_by_hour", {})}   # complete hours there, the current here
    for hour, modes in hours.items():
        if since is not None and hour < since.strftime("%Y-%m-%dT%H:00"):
            continue
        for mode, endpoints in modes.items():
            bucket = out.setdefault(mode, {})
            for endpoint, n in endpoints.items():
                bucket[endpoint] = bucket.get(endpoint, 0) + n
    return out


def welch_t(a: list[float], b: list[float]) -> float | None:
    """Welch's t statistic of two samples' means (None when it cannot be computed)."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a), statistics.variance(b)
    se = math.sqrt(va / len(a) + vb / len(b))
    if se == 0:
        return None
    return (statistics.mean(a) - statistics.mean(b)) / se


def _difference(a: float | None, b: float | None, places: int) -> float | None:
    return round(a - b, places) if a is not None and b is not None else None


def exit_config(pos: Position) -> str:
    """The exit configuration a position ran under, in words: "fixed", "trailing 5%", "trailing 5% from +2%",
    "break-even at +4%", "TP ladder +5%/+12%", or several."""
    def pct(x: Decimal) -> str:
        return format((x * 100).normalize(), "f")

    parts = []
    if pos.trail_pct is not None:
        parts.append(f"trailing {pct(pos.trail_pct)}%"
                     + (f" from +{pct(pos.trail_activation_pct)}%" if pos.trail_activation_pct else ""))
    if pos.break_even_at_pct is not None:
        parts.append(f"break-even at +{pct(pos.break_even_at_pct)}%")
    if pos.tp_ladder:
        parts.append("TP ladder " + "/".join(f"+{pct(r.pct)}%" for r in pos.tp_ladder))
    return " + ".join(parts) or "fixed"


def _by_exit_config(positions: list[Position]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for label in sorted({exit_config(p) for p in positions}):
        closed = [p for p in positions if exit_config(p) == label and p.status == PositionState.CLOSED]
        pnl = [float(p.realized_pnl or 0) for p in closed]
        out[label] = {"closed": len(closed), "win_rate": round(sum(1 for x in pnl if x > 0) / len(pnl), 4)
                      if pnl else None, "total_pnl": round(sum(pnl), 4),
                      "avg_pnl": round(statistics.mean(pnl), 4) if pnl else None,
                      "stops_raised": sum(1 for p in closed if p.stop_why),
                      "rungs_filled": sum(len(rungs_filled(p)) for p in closed)}
    return out


def build_report(state: BotState, since: datetime | None = None) -> dict[str, Any]:
    """Per-mode figures, their difference, and a plain-words verdict (JSON-ready: numbers, strings, None)."""
    hours = float(state.counters.get("run_seconds", 0)) / 3600
    calls = _mode_hours_calls(state, since)
    modes: dict[str, dict[str, Any]] = {}
    pnls: dict[str, list[float]] = {}
    every = state.all_positions(since)   # closed ones from the history (its opened_at index with --since)
    for mode in ExitMode:
        ps = [p for p in every if p.exit_mode == mode and p.entry_shares > 0]
        closed = [p for p in ps if p.status == PositionState.CLOSED]
        pnl = [float(p.realized_pnl or 0) for p in closed]
        pnls[mode.value] = pnl
        slips = [s for s in (slippage(p) for p in closed) if s is not None]
        mode_calls = sum(calls.get(mode.value, {}).values())
        modes[mode.value] = {
            "opened": len(ps),
            "closed": len(closed),
            "open": len(ps) - len(closed),
            "win_rate": round(sum(1 for x in pnl if x > 0) / len(pnl), 4) if pnl else None,
            "total_pnl": round(sum(pnl), 4),
            "avg_pnl": round(statistics.mean(pnl), 4) if pnl else None,
            "fees_paid": round(float(sum((p.fees_paid for p in ps), Decimal(0))), 4),
            "close_reasons": {r.value: sum(1 for p in closed if p.close_reason == r) for r in CloseReason
                              if any(p.close_reason == r for p in closed)},
            "tp_fill_rate": round(sum(1 for p in closed if p.close_reason == CloseReason.TAKE_PROFIT) / len(closed), 4)
            if closed else None,
            "tp_filled_as_maker": sum(1 for p in closed if tp_filled_as_maker(p)),
            "avg_slippage_ticks": round(statistics.mean(s[0] for s in slips), 3) if slips else None,
            "worst_slippage_ticks": round(min(s[0] for s in slips), 3) if slips else None,
            "avg_slippage_usd": round(statistics.mean(s[1] for s in slips), 4) if slips else None,
            "worst_slippage_usd": round(min(s[1] for s in slips), 4) if slips else None,
            "api_calls": round(mode_calls, 1),
            "api_calls_per_hour": round(mode_calls / hours, 1) if hours > 0 else None,
            "api_calls_per_position": round(mode_calls / len(ps), 2) if ps else None,
            "api_calls_by_endpoint": {k: round(v, 1) for k, v in sorted(calls.get(mode.value, {}).items())},
            "errors_per_position": round(sum(_errors(p) for p in ps) / len(ps), 3) if ps else None,
            "fallbacks": sum(1 for p in ps if p.fallback_reason),
            "exit_triggers": _triggers(closed),
        }
    mon, lim = modes["monitor"], modes["limit_orders"]
    t = welch_t(pnls["limit_orders"], pnls["monitor"])
    diff = {
        "avg_pnl": _difference(lim["avg_pnl"], mon["avg_pnl"], 4),
        "api_calls_per_hour": _difference(lim["api_calls_per_hour"], mon["api_calls_per_hour"], 1),
        "welch_t": round(t, 3) if t is not None else None,
    }
    opened = [p for p in every if p.entry_shares > 0]
    return {"hours_running": round(hours, 3), "since": since.isoformat() if since else None, "modes": modes,
            "exit_configs": _by_exit_config(opened),
            "shared_api_calls": round(sum(calls.get(SHARED, {}).values()), 1), "difference": diff,
            "verdict": verdict(mon["closed"], lim["closed"], t, diff["avg_pnl"])}


def verdict(n_mon: int, n_lim: int, t: float | None, diff: float | None) -> str:
    """Plain words on whether the sample can tell the modes apart."""
    if min(n_mon, n_lim) < MIN_SAMPLE:
        return (f"Too few closed positions to tell the modes apart: {n_lim} limit_orders and {n_mon} monitor; "
                f"wait for at least {MIN_SAMPLE} of each.")
    if t is None or diff is None:
        return "The P&L of the two modes cannot be compared (no variation)."
    if abs(t) >= 2:
        better = "limit_orders" if diff > 0 else "monitor"
        return (f"{better} earns more per position (by ${abs(diff):.4f}, t = {t:.2f}): the difference is unlikely "
                "to be chance.")
    return (f"No clear difference in P&L per position yet (t = {t:.2f}); compare API calls, slippage and errors, "
            "or keep collecting.")


def format_text(report: dict[str, Any]) -> str:
    """The report as a table per mode."""
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("positions opened / closed / open", lambda m: f"{m['opened']} / {m['closed']} / {m['open']}"),
        ("win rate", lambda m: _pct(m["win_rate"])),
        ("total P&L", lambda m: _usd(m["total_pnl"])),
        ("average P&L", lambda m: _usd(m["avg_pnl"])),
        ("fees paid (inside the P&L)", lambda m: _usd(m["fees_paid"])),
        ("TP fill rate", lambda m: _pct(m["tp_fill_rate"])),
        ("TP filled as maker", lambda m: str(m["tp_filled_as_maker"])),
        ("exit slippage avg / worst (ticks)", lambda m: f"{_num(m['avg_slippage_ticks'])} / "
                                                       f"{_num(m['worst_slippage_ticks'])}"),
        ("exit slippage avg / worst ($)", lambda m: f"{_usd(m['avg_slippage_usd'])} / {_usd(m['worst_slippage_usd'])}"),
        ("API calls per hour", lambda m: _num(m["api_calls_per_hour"])),
        ("API calls per position", lambda m: _num(m["api_calls_per_position"])),
        ("errors per position", lambda m: _num(m["errors_per_position"])),
        ("fallbacks to monitoring", lambda m: str(m["fallbacks"])),
        ("exits triggered by push / poll", lambda m: f"{m['exit_triggers']['push']['exits']} / "
                                                     f"{m['exit_triggers']['poll']['exits']}"),
        ("trigger to order p50 push / poll (ms)", lambda m: f"{_num(m['exit_triggers']['push']['p50_delay_ms'])} / "
                                                            f"{_num(m['exit_triggers']['poll']['p50_delay_ms'])}"),
    ]
    lim, mon = report["modes"]["limit_orders"], report["modes"]["monitor"]
    width = max(len(r[0]) for r in rows)
    lines = [f"A/B report over {report['hours_running']:.2f} h of running"
             + (f" since {report['since']}" if report["since"] else ""),
             "", f"{'':{width}}  {'limit_orders':>16}  {'monitor':>16}"]
    lines += [f"{name:{width}}  {fn(lim):>16}  {fn(mon):>16}" for name, fn in rows]
    d = report["difference"]
    lines += ["", f"difference (limit_orders - monitor): average P&L {_usd(d['avg_pnl'])}, "
                  f"API calls per hour {_num(d['api_calls_per_hour'])}"
                  f" (+ {report['shared_api_calls']} calls shared by both)",
              f"verdict: {report['verdict']}"]
    configs = report.get("exit_configs") or {}
    if len(configs) > 1 or any(label != "fixed" for label in configs):
        lines += ["", "by exit configuration:"]
        lines += [f"  {label}: {c['closed']} closed, win rate {_pct(c['win_rate'])}, total P&L {_usd(c['total_pnl'])}, "
                  f"average {_usd(c['avg_pnl'])}, stops raised {c['stops_raised']}"
                  + (f", TP rungs filled before the close {c['rungs_filled']}" if "ladder" in label else "")
                  for label, c in configs.items()]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:,.4f}" if abs(x) < 1 else f"${x:,.2f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def plot(state: BotState, path: str, since: datetime | None = None) -> None:
    """Cumulative P&L over time and exit slippage, per mode, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, color in ((ExitMode.LIMIT_ORDERS, "tab:blue"), (ExitMode.MONITOR, "tab:orange")):
        closed = sorted(((p.closed_at, p) for p in state.closed_positions(since)
                         if p.exit_mode == mode and p.closed_at is not None and p.entry_shares > 0),
                        key=lambda at_p: at_p[0])
        total, xs, ys = 0.0, [], []
        for closed_at, p in closed:
            total += float(p.realized_pnl or 0)
            xs.append(closed_at)
            ys.append(total)
        ax1.step(xs, ys, where="post", label=f"{mode.value} ({len(closed)})", color=color)
        slips = [s[0] for s in (slippage(p) for _, p in closed) if s is not None]
        if slips:
            ax2.hist(slips, bins=20, alpha=0.6, label=mode.value, color=color)
    ax1.set_title("Cumulative realised P&L ($)")
    ax1.axhline(0, color="grey", linewidth=0.6)
    ax1.legend()
    fig.autofmt_xdate()
    ax2.set_title("Exit slippage vs target (ticks; > 0 is better)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
