"""``python main_bot.py backtest``: which TP/SL settings would have done what on Polymarket's history.

It chooses the resolved markets the scanner's filters would have looked at (Gamma), downloads their price histories
into a local cache (bot/replay/history.py: a second run, and the tests, run offline), then replays them through the
bot's own loop (bot/replay/run.py), once or for every combination of a grid (``--grid take_profit_pct=0.05,0.10
...``), in parallel processes or on a Dask cluster (``--dask tcp://scheduler:8786``), each worker reading the same
cached history. Output: the A/B report, one row per position (JSON and CSV), the P&L curve and drawdown (PNG), or one
table of the grid ranked by P&L.
"""
from __future__ import annotations

import csv
import itertools
import json
import logging
import multiprocessing
import os
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.config import BotConfig
from bot.errors import VenueError
from bot.replay.history import CacheError, ClosedMarket, HistoryCache, closed_markets, download, load
from bot.replay.market import FillModel, ReplayMarket
from bot.replay.run import ReplayResult, replay

log = logging.getLogger("bot.replay")

#: The file in the cache that keeps what a replay needs of each market beyond its prices (offline runs).
MARKETS_FILE = "markets.json"
#: Where downloaded histories go unless --cache says otherwise (the CLI's default).
DEFAULT_CACHE = "replay_cache"
#: Config sections a grid key may name (``strategy.take_profit_pct``); a bare key is a strategy setting.
GRID_SECTIONS = ("strategy", "trading", "capital")


class BacktestError(ValueError):
    """A backtest that cannot run as asked: what is wrong, and what to do."""


# -- what a replay needs of a market, kept in the cache ----------------------------------------------------------


def market_meta(m: ClosedMarket, fee_rate: Decimal, fee_exponent: int) -> dict[str, Any]:
    """A resolved market as the cache keeps it (JSON): Gamma's fields the scanner reads, the resolution, the fee
    curve (the current one: the fee in force back then is not published)."""
    c = m.candidates[0]
    ids_field = "positionIds" if m.version == "v2" else "clobTokenIds"
    ids: Any = list(m.token_ids) if m.version == "v2" else json.dumps(list(m.token_ids))
    gamma = {"id": m.market_id, "question": m.question, "conditionId": m.condition_id, "slug": m.slug,
             "version": m.version, ids_field: ids, "outcomes": json.dumps(list(m.outcomes)),
             "endDate": m.end_date.strftime("%Y-%m-%dT%H:%M:%SZ"), "liquidityNum": float(c.liquidity),
             "volumeNum": float(m.volume), "orderPriceMinTickSize": float(c.tick_size),
             "orderMinSize": float(c.min_order_size), "negRisk": c.neg_risk}
    return {"gamma": gamma, "tokens": list(m.token_ids), "outcomes": list(m.outcomes),
            "payouts": [str(p) for p in m.payouts], "tick_size": str(c.tick_size),
            "min_order_size": str(c.min_order_size), "neg_risk": c.neg_risk, "fee_rate": str(fee_rate),
            "fee_exponent": int(fee_exponent), "end": int(m.end_date.timestamp()),
            "closed": int(m.closed_time.timestamp()) if m.closed_time else None}


def save_metas(cache_dir: Path, metas: Iterable[dict[str, Any]]) -> None:
    path = cache_dir / MARKETS_FILE
    known = read_metas(cache_dir)
    for meta in metas:
        known[str(meta["gamma"]["id"])] = meta
    tmp = path.with_name(path.name + ".tmp")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_metas(cache_dir: Path) -> dict[str, dict[str, Any]]:
    path = cache_dir / MARKETS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not an object of markets")
        return data
    except (ValueError, OSError) as exc:
        raise BacktestError(f"{path}: cannot be read ({exc}); delete it to download the markets again") from None


def replay_markets(cache_dir: Path, metas: Sequence[dict[str, Any]], fidelity_min: int,
                   warnings: list[str] | None = None) -> list[ReplayMarket]:
    """The markets to replay, their prices loaded from the cache (a token not cached, or a file that cannot be read
    whole, leaves its market out, with the reason in ``warnings``)."""
    cache = HistoryCache(cache_dir)
    out: list[ReplayMarket] = []
    for meta in metas:
        series: dict[str, tuple[Any, list[Decimal]]] = {}
        try:
            for token in meta["tokens"]:
                h = load(cache, token, fidelity_min)
                # Times as 8-byte machine integers (a month of minutes is 43,200 of them a token); the prices are
                # shared Decimal objects already (the cache interns them).
                series[token] = (array("q", h.times), h.prices)
        except CacheError as exc:
            if warnings is not None:
                warnings.append(f"market {meta['gamma'].get('id')} left out: {exc}")
            continue
        last = max((ts[-1] for ts, _ in series.values() if ts), default=0)
        if not last:
            if warnings is not None:
                warnings.append(f"market {meta['gamma'].get('id')} ({meta['gamma'].get('question')}): no recorded "
                                "prices in the window: left out")
            continue
        ends = max(last + 60 * fidelity_min, int(meta.get("closed") or 0))
        out.append(ReplayMarket(gamma=meta["gamma"], tokens=list(meta["tokens"]), outcomes=list(meta["outcomes"]),
                                series=series, payouts={t: Decimal(p) for t, p in zip(meta["tokens"], meta["payouts"],
                                                                                        strict=True)},
                                tick_size=Decimal(meta["tick_size"]), min_order_size=Decimal(meta["min_order_size"]),
                                neg_risk=bool(meta["neg_risk"]), fee_rate=Decimal(meta["fee_rate"]),
                                fee_exponent=int(meta["fee_exponent"]), ends_at=ends))
    return out


# -- fetching ---------------------------------------------------------------------------------------------------


def fetch(config: BotConfig, cache_dir: Path, since: int, until: int, fidelity_min: int, limit: int | None,
          slugs: Sequence[str] | None, progress: Callable[[int, int], None] | None = None,
          venue: Any = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The markets Gamma lists as resolved in the window (the scanner's filters), their histories downloaded into
    the cache (only what it lacks), and their fee curves: (their metas, messages)."""
    from bot.venue.live import LiveVenue

    messages: list[str] = []
    skipped: list[str] = []
    markets = closed_markets(config.api.gamma_host, config.strategy, since, until, limit=limit, slugs=slugs,
                             timeout_s=config.api.request_timeout_seconds, unversioned_as_v1=True, skipped=skipped)
    messages += skipped
    if not markets:
        raise BacktestError(f"Gamma ({config.api.gamma_host}) lists no resolved market in the window "
                            f"{_iso(since)}..{_iso(until)} that passes the filters"
                            + (f" (slugs {', '.join(slugs)})" if slugs else "") + "; widen --days or the filters")
    venue = venue or LiveVenue(config.api.clob_host, chain_id=config.api.chain_id,
                               timeout_s=config.api.request_timeout_seconds)
    report = download(venue, markets, since, until, fidelity_min, cache_dir, progress)
    messages += report.messages
    metas = []
    for m in report.markets:
        try:
            info = venue.get_market_info(m.token_ids[0], m.condition_id)
            fee_rate, fee_exponent = info.fee_rate, info.fee_exponent
        except VenueError as exc:   # a market the CLOB no longer serves: no fee curve (said)
            messages.append(f"market {m.market_id}: no fee curve from the CLOB ({exc}); replayed without fees")
            fee_rate, fee_exponent = Decimal(0), 0
        metas.append(market_meta(m, fee_rate, fee_exponent))
    save_metas(cache_dir, metas)
    return metas, messages


def cached_metas(cache_dir: Path, since: int, until: int, limit: int | None,
                 slugs: Sequence[str] | None) -> list[dict[str, Any]]:
    """The cached markets of the window (offline): by slug, or the busiest ``limit`` first."""
    metas = [m for m in read_metas(cache_dir).values() if since <= int(m.get("end", 0)) <= until]
    if slugs:
        by_slug = {m["gamma"].get("slug"): m for m in metas}
        missing = [s for s in slugs if s not in by_slug]
        if missing:
            raise BacktestError(f"not in the cache {cache_dir}: {', '.join(missing)} (run without --offline once)")
        return [by_slug[s] for s in slugs]
    metas.sort(key=lambda m: -float(m["gamma"].get("volumeNum") or 0))
    if not metas:
        raise BacktestError(f"the cache {cache_dir} has no market of the window {_iso(since)}..{_iso(until)}: run "
                            "without --offline to download them")
    return metas[:limit] if limit else metas


# -- grids ------------------------------------------------------------------------------------------------------


def parse_grid(items: Sequence[str]) -> list[dict[str, str]]:
    """``["take_profit_pct=0.05,0.10", "stop_loss_pct=0.05,0.1"]`` -> every combination, as config overrides
    ({"strategy__take_profit_pct": "0.05", ...}). A key may name its section (``trading.use_concurrent_orders``);
    a bare key is a strategy setting."""
    axes: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise BacktestError(f"--grid {item!r}: expected key=value1,value2,... (e.g. take_profit_pct=0.05,0.10)")
        section, dot, name = key.rpartition(".")
        section = section if dot else "strategy"
        if section not in GRID_SECTIONS:
            raise BacktestError(f"--grid {item!r}: {section!r} is not a section a grid may vary "
                                f"({', '.join(GRID_SECTIONS)})")
        axes.append((f"{section}__{name}", [v.strip() for v in values.split(",") if v.strip()]))
    return [dict(zip([k for k, _ in axes], combo, strict=True)) for combo in itertools.product(*(v for _, v in axes))]


def with_settings(config: BotConfig, overrides: dict[str, str]) -> BotConfig:
    """``config`` with ``overrides`` ({"strategy__take_profit_pct": "0.05"}), validated as a config file is."""
    data = config.model_dump(mode="json")
    for dotted, value in overrides.items():
        section, key = dotted.split("__", 1)
        if key not in data[section]:
            raise BacktestError(f"--grid: {section}.{key} is not a setting (see config.json)")
        data[section][key] = value
    try:
        return BotConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise BacktestError(f"--grid {', '.join(f'{k}={v}' for k, v in overrides.items())}: {where}: "
                            f"{err['msg']}") from None


@dataclass(frozen=True)
class Job:
    """One replay of a grid, picklable: each worker reads the markets from the same cache (``bot_class``, main_bot's
    Bot, travels by name)."""

    bot_class: Any
    config: str          # the config, JSON
    overrides: dict[str, str]
    cache_dir: str
    metas: list[dict[str, Any]]
    since: int
    until: int
    fidelity_min: int
    model: dict[str, Any]


def run_job(job: Job) -> dict[str, Any]:
    """A grid worker: load the markets from the cache, replay, return the summary (JSON-ready)."""
    config = with_settings(BotConfig.model_validate_json(job.config), job.overrides)
    model = FillModel(**{**job.model, "depth": Decimal(str(job.model.get("depth", 500)))})
    warnings: list[str] = []
    markets = replay_markets(Path(job.cache_dir), job.metas, job.fidelity_min, warnings)
    result = replay(config, markets, job.since, job.until, model, settings=job.overrides, bot_class=job.bot_class)
    modes = result.report["modes"]
    return {**result.summary(), "warnings": warnings,
            "by_mode": {m: {k: modes[m][k] for k in ("closed", "win_rate", "total_pnl", "fees_paid")} for m in modes}}


def run_grid(jobs: Sequence[Job], executor: Executor) -> list[dict[str, Any]]:
    """Every job through ``executor`` (a process pool, or a Dask client's executor), ranked by P&L."""
    results = list(executor.map(run_job, jobs))
    return sorted(results, key=lambda r: (-r["pnl"], r["max_drawdown"]))


def grid_pool(workers: int | None) -> ProcessPoolExecutor:
    """Local processes for a grid, started afresh (spawned: a worker holds its own replay's data, not a copy of this
    process's)."""
    return ProcessPoolExecutor(max_workers=workers or None, mp_context=multiprocessing.get_context("spawn"))


def dask_executor(address: str) -> tuple[Executor, Any]:
    """A concurrent.futures executor on the Dask cluster at ``address`` (dask.distributed's client), and the client
    (to close)."""
    from distributed import Client

    client = Client(address)
    return client.get_executor(), client


# -- output -----------------------------------------------------------------------------------------------------


def write_outputs(result: ReplayResult, out: Path) -> list[Path]:
    """result.json, positions.json, positions.csv and pnl.png (the P&L curve and its drawdown) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "result.json", out / "positions.json", out / "positions.csv", out / "pnl.png"]
    paths[0].write_text(json.dumps(result.as_json(), indent=1, default=str))
    paths[1].write_text(json.dumps(result.rows, indent=1))
    with paths[2].open("w", newline="") as fh:
        fields = list(result.rows[0]) if result.rows else ["id"]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(result.rows)
    plot_curve(result, paths[3])
    return paths


def plot_curve(result: ReplayResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [datetime.fromtimestamp(t, tz=UTC) for t, _ in result.curve]
    ys = [v for _, v in result.curve]
    peak, dd = 0.0, []
    for v in ys:
        peak = max(peak, v)
        dd.append(v - peak)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(2, 1))
    ax1.step(xs, ys, where="post", color="tab:blue")
    ax1.axhline(0, color="grey", linewidth=0.6)
    ax1.set_title(f"Replay: cumulative realised P&L (\\$), {result.trades} trades, max drawdown "
                  f"\\${result.max_drawdown:.2f}")   # (\\$: a dollar sign, not matplotlib's mathtext)
    ax2.fill_between(xs, dd, 0, step="post", color="tab:red", alpha=0.5)
    ax2.set_title("Drawdown (\\$)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def grid_table(rows: Sequence[dict[str, Any]]) -> str:
    keys = list(rows[0]["settings"]) if rows else []
    head = "  ".join(f"{k.split('__')[-1]:>18}" for k in keys) + f"  {'trades':>6}  {'pnl':>10}  {'max dd':>9}"
    lines = [head]
    for r in rows:
        lines.append("  ".join(f"{str(r['settings'][k]):>18}" for k in keys)
                     + f"  {r['trades']:>6}  {r['pnl']:>10.2f}  {r['max_drawdown']:>9.2f}")
    return "\n".join(lines)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M")


def window(days: float | None, since: str | None, until: str | None, now: float) -> tuple[int, int]:
    """[since, until] in unix seconds from --days or --since/--until (dates or ISO times, UTC)."""
    def parse(text: str, what: str) -> int:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BacktestError(f"--{what} {text!r}: expected a date (2026-11-01) or an ISO time") from None
        return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())

    end = parse(until, "until") if until else int(now)
    start = parse(since, "since") if since else end - int(timedelta(days=days or 30).total_seconds())
    if start >= end:
        raise BacktestError(f"the window is empty: since {_iso(start)} is not before until {_iso(end)}")
    return start, end


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, what: str, stream: Any = None):
        self.what = what
        self.stream = stream or sys.stderr
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.2:
            return
        self._last = now
        width = 30
        filled = int(width * done / total) if total else width
        self.stream.write(f"\r{self.what} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def model_of(args: Any) -> FillModel:
    return FillModel(spread_ticks=args.spread_ticks, depth=Decimal(str(args.depth)), levels=args.levels,
                     tp_fill=args.tp_fill, exit_latency_steps=args.exit_latency)


def main(args: Any, config: BotConfig, bot_class: Any) -> int:
    """The command: fetch (or read the cache), replay once or a grid, print, write the outputs."""
    if (args.dask or args.workers) and not args.grid:
        raise BacktestError("--dask and --workers run the combinations of a grid: give --grid too (e.g. --grid "
                            "take_profit_pct=0.05,0.10)")
    cache_dir = Path(args.cache)
    since, until = window(args.days, args.since, args.until, time.time())
    model = model_of(args)
    messages: list[str] = []
    if args.offline:
        metas = cached_metas(cache_dir, since, until, args.markets, args.slug)
    else:
        metas, messages = fetch(config, cache_dir, since, until, args.fidelity, args.markets, args.slug,
                                progress=None if args.json else Progress("downloading"))
    for m in messages:
        log.warning("%s", m)
    if args.grid:
        combos = parse_grid(args.grid)
        for combo in combos:
            with_settings(config, combo)   # every combination is a valid config, before any runs
        jobs = [Job(bot_class, config.model_dump_json(), combo, str(cache_dir), metas, since, until, args.fidelity,
                    {**asdict(model), "depth": str(model.depth)}) for combo in combos]
        if args.dask:
            executor, client = dask_executor(args.dask)
            try:
                rows = run_grid(jobs, executor)
            finally:
                client.close()
        else:
            with grid_pool(args.workers) as pool:
                rows = run_grid(jobs, pool)
        if args.json:
            print(json.dumps({"grid": rows, "fill_model": model.describe()}, default=str))
        else:
            print(grid_table(rows))
        return 0
    warnings: list[str] = []
    markets = replay_markets(cache_dir, metas, args.fidelity, warnings)
    if not markets:
        raise BacktestError("no market has recorded prices to replay in the window: " + "; ".join(warnings))
    result = replay(config, markets, since, until, model, progress=None if args.json else Progress("replaying"),
                    bot_class=bot_class)
    result.warnings = warnings + result.warnings
    out = Path(args.out)
    paths = write_outputs(result, out)
    if args.json:
        print(json.dumps(result.as_json(), default=str))
        return 0
    from bot.report import format_text

    print(format_text(result.report))
    s = result.summary()
    print(f"\nReplay of {s['markets']} market(s), {s['points']} recorded prices, {s['loops']} loops in "
          f"{s['seconds']} s: {s['trades']} trades, P&L ${s['pnl']:.2f}, max drawdown ${s['max_drawdown']:.2f}")
    print("Fill model: " + "; ".join(f"{k}: {v}" for k, v in result.fill_model.items()))
    print("Written: " + ", ".join(str(p) for p in paths))
    for w in result.warnings:
        print(f"note: {w}")
    return 0


def sim_main(args: Any, config: BotConfig, bot_class: Any) -> int:
    """``backtest --sim``: the simulator's own markets, each with a recorded random walk of ``--days`` (3 by default)
    at one-minute steps, resolved at its end, downloaded and replayed as Polymarket's would be (over HTTP, through
    the bot's venue): what a replay prints, without the internet."""
    import random
    import tempfile

    from bot.sim import SimExchange

    days = args.days or 3
    end = int(time.time()) // 60 * 60 - 3600
    start = end - int(days * 86400)
    rng = random.Random(args.seed)
    with SimExchange(seed=args.seed) as sim, tempfile.TemporaryDirectory(prefix="backtest-sim-") as tmp:
        for i in range(args.sim_markets):
            m = sim.create_market(f"Simulated market {i + 1}: will it happen?", yes_price=0.5, volatility=0,
                                  end_date=datetime.fromtimestamp(end, tz=UTC))
            p, points = rng.uniform(0.35, 0.65), []
            for t in range(start, end + 1, 60):
                p = min(0.95, max(0.05, p + rng.gauss(0, 0.004)))
                points.append((t, round(p, 2)))
            sim.record_history(m["token_ids"][0], points)
            sim.resolve(m["condition_id"], "Yes" if points[-1][1] >= 0.5 else "No")
        data = config.model_dump(mode="json")   # the user's settings, on the simulator's hosts and markets
        data["api"].update(clob_host=sim.clob_url, gamma_host=sim.gamma_url)
        data["strategy"].update(scan_interval_seconds=60, min_hours_to_end=0, max_hours_to_end=None, min_liquidity=0,
                                min_volume=0)
        if data["trading"]["ab_test_ratio"] is None:
            data["trading"]["ab_test_ratio"] = 0.5   # both exit modes side by side
        cfg = BotConfig.model_validate(data)
        args.cache = args.cache if args.cache != DEFAULT_CACHE else str(Path(tmp) / "cache")
        args.since, args.until, args.days = None, datetime.fromtimestamp(end, tz=UTC).isoformat(), days
        return main(args, cfg, bot_class)



def cache_markets(cache_dir: Path, markets: Sequence[ReplayMarket], fidelity_min: int) -> list[dict[str, Any]]:
    """Write ``markets`` (their prices and what a replay needs of them) into a cache, as a download would: a replay
    of them then runs offline, in any process (the benchmark and the tests make their markets this way)."""
    from bot.replay.history import History

    cache = HistoryCache(cache_dir)
    metas = []
    for m in markets:
        for token in m.tokens:
            times, prices = m.series.get(token, ([], []))
            cache.write(History(token, fidelity_min, times[0] if times else 0, times[-1] if times else 0,
                                times[-1] if times else 0, list(times), list(prices)))
        metas.append({"gamma": m.gamma, "tokens": list(m.tokens), "outcomes": list(m.outcomes),
                      "payouts": [str(m.payouts[t]) for t in m.tokens], "tick_size": str(m.tick_size),
                      "min_order_size": str(m.min_order_size), "neg_risk": m.neg_risk, "fee_rate": str(m.fee_rate),
                      "fee_exponent": m.fee_exponent, "end": m.ends_at, "closed": m.ends_at})
    save_metas(cache_dir, metas)
    return metas
