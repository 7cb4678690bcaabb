"""The command line of ``python main_bot.py``: argument parsing, the subcommands (run, status, report,
doctor, resume, convert, close, --live-once), printing positions, the venue wiring (paper, live), the
``--sim`` wiring (config, state folder, the embedded exchange) and the signal handlers. The loop itself,
``Bot``, is in main_bot.py, which calls ``main`` here.

main_bot.py hands its ``Bot`` class to ``main`` (and ``make_bot``): this module never imports main_bot, so the two
import in one direction only.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bot.config import (
    BotConfig,
    ConfigError,
    check_state_paths,
    feed_urls,
    load_bot_config,
    load_secrets,
    require_live_secrets,
    with_overrides,
)
from bot.doctor import Doctor, as_json, format_checks
from bot.errors import BotError, StateFileError
from bot.logger import get_logger, register_secret
from bot.money import fmt
from bot.position_manager import BotState, LockHeld, Position, PositionState, PositionStore
from bot.scanner import MarketScanner
from bot.status import HOLDING, Marked, age_text, mark, totals, totals_line
from bot.venue.base import Venue

if TYPE_CHECKING:
    from bot.manage import Manager


class Bot(Protocol):
    """What the command line needs of main_bot.py's ``Bot`` (handed in by ``main``)."""

    state: BotState
    manage: Manager
    stop_requested: bool

    def run(self, loops: int | None = None) -> int: ...

    def request_stop(self) -> None: ...

    def wake(self) -> None: ...

    def now(self) -> datetime: ...


#: main_bot.py's ``Bot`` class, called as Bot(config, venue, scanner, store, clock=, once=, feeds=).
BotClass = Callable[..., Bot]

log = logging.getLogger("bot")


def build_venue(config: BotConfig) -> Venue:
    """Dry-run: the paper venue over read-only market data. Live: the CLOB with the env's credentials."""
    from bot.venue.live import LiveVenue
    from bot.venue.paper import PaperVenue

    api = config.api
    if config.bot.dry_run:
        reader = LiveVenue(api.clob_host, chain_id=api.chain_id, timeout_s=api.request_timeout_seconds,
                           max_requests_per_second=api.max_requests_per_second)
        return PaperVenue(reader, config.capital.total, state_file=f"{config.bot.positions_file}.paper.json")
    secrets = load_secrets()
    require_live_secrets(secrets)   # the key is set; the API credentials are all three or none
    key, api_key, api_secret, api_passphrase = (secrets.private_key, secrets.api_key, secrets.api_secret,
                                                secrets.api_passphrase)
    assert key is not None
    for s in (key, api_secret, api_passphrase):
        register_secret(s.get_secret_value() if s else None)
    creds = None
    if api_key and api_secret and api_passphrase:
        creds = (api_key.get_secret_value(), api_secret.get_secret_value(), api_passphrase.get_secret_value())
    log.warning("LIVE TRADING on %s: up to $%s per trade, %d positions, $%s in total", api.clob_host,
                fmt(config.capital.max_trade_size), config.capital.max_positions, fmt(config.capital.total))
    return LiveVenue(api.clob_host, chain_id=api.chain_id, private_key=key.get_secret_value(),
                     funder=secrets.funder_address or None, signature_type=api.signature_type, api_creds=creds,
                     timeout_s=api.request_timeout_seconds, max_requests_per_second=api.max_requests_per_second)


def make_bot(bot_class: BotClass, config: BotConfig, venue: Venue, store: PositionStore, once: bool = False,
             feeds: bool = True) -> Bot:
    """The bot on ``venue``, with the push feeds when ``feeds.enabled`` (bot/feeds.py; the user channel only
    with the venue's own API key)."""
    from bot.clock import SystemClock

    clock = SystemClock()
    bot: Bot | None = None
    pushed = None
    if feeds and config.feeds.enabled:
        from bot.feeds import Feeds

        creds = venue.feed_credentials()
        for secret in (creds or {}).values():
            register_secret(secret)   # (the API key too: it names the account)
        pushed = Feeds(config.feeds, clock, lambda: bot.wake() if bot is not None else None, creds)
    bot = bot_class(config, venue, MarketScanner.from_config(config), store, clock=clock, once=once, feeds=pushed)
    if getattr(venue, "name", "") == "live" and getattr(venue, "address", None):
        from bot.doctor import auto_redeem_approved  # one read of the chain (Polygon RPC): None when unanswered

        bot.manage.auto_redeem = auto_redeem_approved(venue)   # type: ignore[arg-type]
    return bot


def sim_config(config: BotConfig, clob_url: str, gamma_url: str, state_dir: Path,
               loop_seconds: float = 1, ws_url: str = "") -> BotConfig:
    """The config for --sim: the sim's hosts, short intervals (loops and scans every ``loop_seconds``,
    order checks every second loop, 20 s holds, 30 s blacklist) and a lively market so that a short run
    shows positions opening and closing; an unset A/B ratio becomes 0.5 so both exit modes show. The SL
    (14%) is wider than the TP (8%) because the entry pays the ask and the SL watches the bid: with the
    sim's 2-tick spread both then sit about as far from the mid, so a short run shows take-profits as well
    as stop-losses (a 6% SL sat one or two ticks under the bid), and an 8% TP keeps the spread within
    strategy.max_spread_share_of_tp of it for most of the sim's prices."""
    data = config.model_dump(mode="json")
    data["bot"].update(positions_file=str(state_dir / "positions.json"), log_file=str(state_dir / "bot.log"),
                       loop_interval_seconds=loop_seconds)
    data["trading"].update(order_check_interval_seconds=2 * loop_seconds)
    data["strategy"].update(scan_interval_seconds=loop_seconds, max_hold_hours=20 / 3600, min_liquidity="0",
                            min_volume="0", min_hours_to_end=0, max_hours_to_end=None, take_profit_pct="0.08",
                            stop_loss_pct="0.14", blacklist_hours=30 / 3600)
    if data["trading"]["ab_test_ratio"] is None:
        data["trading"]["ab_test_ratio"] = 0.5  # show both exit modes side by side
    data["api"].update(clob_host=clob_url, gamma_host=gamma_url)
    if ws_url:
        data["feeds"].update(feed_urls(ws_url))
    return BotConfig.model_validate(data)


#: Written into --sim-dir by a --sim run: only a folder holding it is cleared, and only of the bot's own files.
SIM_MARKER = ".main_bot-sim-run"
#: Files a --sim run writes: positions.json and its .prev/.lock/.tmp/.control/.paper.json, and the log.
SIM_FILE_PREFIXES = ("positions.json", "bot.log")


def prepare_sim_dir(state_dir: Path) -> PositionStore:
    """The --sim state folder, locked for this run and cleared of the previous run's files (a new throwaway
    wallet each run: old sim positions mean nothing). Nothing else is ever deleted: a non-empty folder that
    no --sim run created is refused."""
    where = f"--sim-dir {state_dir}"
    if state_dir.exists() and not state_dir.is_dir():
        raise StateFileError(f"{where}: is a file, not a folder")
    marker = state_dir / SIM_MARKER
    if state_dir.exists() and not marker.exists():
        found = sorted(p.name for p in state_dir.iterdir())
        if found:
            raise StateFileError(f"{where}: refusing to use a folder that no --sim run created (it holds "
                                 f"{', '.join(found[:5])}{', ...' if len(found) > 5 else ''}); give a new or "
                                 "empty folder with --sim-dir")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text("Written by `python main_bot.py --sim`: the next --sim run on this folder removes the "
                          f"files it wrote ({', '.join(p + '*' for p in SIM_FILE_PREFIXES)}) and nothing else.\n")
    except OSError as exc:
        raise StateFileError(f"{where}: cannot be written ({exc.strerror or exc})") from None
    store = PositionStore(state_dir / "positions.json")
    store.acquire_lock()   # another --sim run on this folder refuses, naming its pid
    try:
        for path in state_dir.iterdir():
            if path.name.startswith(SIM_FILE_PREFIXES) and path != store.lock_path and path.is_file():
                path.unlink()
    except OSError as exc:
        raise StateFileError(f"{where}: the previous run's files cannot be removed ({exc.strerror or exc})") from None
    return store


def run_sim(args, config: BotConfig, bot_class: BotClass) -> int:
    """Start the embedded simulated exchange, fund a throwaway wallet, and trade on it for real."""
    state_dir = Path(args.sim_dir)
    store = prepare_sim_dir(state_dir)
    try:
        return _run_sim(args, config, state_dir, store, bot_class)
    finally:
        store.release_lock()


def _run_sim(args, config: BotConfig, state_dir: Path, store: PositionStore, bot_class: BotClass) -> int:
    from bot.sim import SimExchange
    from bot.venue.live import LiveVenue
    from bot.venue.paper import PaperVenue

    # A mix of both kinds Polymarket lists (FACTS.md Part 0, 0.8): CTF markets, and every third one Protocol V2.
    v2_markets = args.sim_markets // 3
    with SimExchange(markets=args.sim_markets - v2_markets, seed=args.seed,
                     default_volatility=Decimal("0.015")) as sim:
        rng = random.Random(args.seed + 1)
        for i in range(v2_markets):
            sim.create_market(f"Simulated Protocol V2 market {i + 1}: will it happen?",
                              yes_price=round(rng.uniform(0.35, 0.65), 2), version="v2")
        cfg = sim_config(config, sim.clob_url, sim.gamma_url, state_dir,
                         loop_seconds=getattr(args, "sim_loop_seconds", 1), ws_url=sim.ws_url)
        get_logger(cfg)
        deposit = getattr(args, "sim_wallet", "eoa") == "deposit"
        wallet = sim.new_wallet(usdc=cfg.capital.total, signature_type=3 if deposit else 0)
        register_secret(wallet["private_key"])
        log.info("Simulated exchange at %s (Gamma %s); throwaway %s %s funded with $%s", sim.clob_url,
                 sim.gamma_url, f"deposit wallet (signature_type 3, owner {wallet['owner']})" if deposit else "wallet",
                 wallet["address"], fmt(cfg.capital.total))
        venue: Venue
        if args.dry_run:
            venue = PaperVenue(LiveVenue(sim.clob_url), cfg.capital.total,
                               state_file=state_dir / "positions.json.paper.json")
        else:
            venue = LiveVenue(sim.clob_url, private_key=wallet["private_key"], funder=wallet["address"],
                              signature_type=wallet["signature_type"])
        bot = make_bot(bot_class, cfg, venue, store)
        install_signal_handlers(bot)
        code = bot.run(loops=args.loops)
        print_status(bot.state, as_json=False)
        return code


class Interrupted(BaseException):
    """A second Ctrl-C (or SIGTERM): stop at once, without finishing the step. A BaseException, so that no
    ``except Exception`` on the way takes it for an error to recover from."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def install_signal_handlers(bot: Bot) -> None:
    """Ctrl-C (SIGINT) or SIGTERM asks the bot to stop after this step; a second one raises Interrupted."""
    def handler(signum, _frame):
        name = signal.Signals(signum).name
        if bot.stop_requested:
            raise Interrupted(signum)
        log.info("Signal %s: finishing this step, saving, exiting (again to exit at once)", name)
        bot.request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def sl_text(p: Position) -> str:
    """The stop-loss as status shows it: ``0.65T`` once trailed, ``0.52B`` at break-even."""
    return fmt(p.sl_price) + {"trailing": "T", "break_even": "B"}.get(p.stop_why or "", "")


def tp_text(p: Position) -> str:
    """The take-profit as status shows it: the next rung's price of a ladder, marked ``L``."""
    from bot.ladder import next_target

    return fmt(next_target(p) if p.is_active else p.tp_price) + ("L" if p.tp_ladder else "")


def following_line(p: Position) -> str:
    """A position's stops that follow the price, in words (empty without them)."""
    from bot.report import exit_config

    if p.trail_pct is None and p.break_even_at_pct is None:
        return ""
    was = p.metrics.get("sl_initial")
    return (f"stops {p.id}: {exit_config(p)}; highest bid {fmt(p.high_bid)}, stop {fmt(p.sl_price)}"
            + (f" (raised from {was}, {p.stop_why.replace('_', '-')})" if was and p.stop_why else " (not raised)"))


def ladder_line(p: Position) -> str:
    """A position's take-profit ladder, in words (empty without one): each rung and where it stands, and what was
    merged to make it."""
    from bot.ladder import ladder_text

    if not p.tp_ladder:
        return ""
    return f"tp ladder {p.id}: {ladder_text(p)}" + (f" ({'; '.join(p.ladder_notes)})" if p.ladder_notes else "")


def position_row(p: Position, m: Marked | None = None) -> dict:
    """The status --json view of a position (an open one with its bid and what an exit there would make)."""
    d = p.to_dict()
    d["status"] = p.status.value
    if m is not None:
        d.update(bid=fmt(m.bid) if m.bid is not None else None, bid_at=m.bid_at,
                 unrealized_pnl=fmt(m.unrealized_pnl) if m.unrealized_pnl is not None else None,
                 ticks_to_sl=fmt(m.ticks_to_sl) if m.ticks_to_sl is not None else None,
                 ticks_to_tp=fmt(m.ticks_to_tp) if m.ticks_to_tp is not None else None,
                 age_hours=round(m.age_hours, 3))
    return d


def read_bids(config: BotConfig, state: BotState, store: PositionStore) -> tuple[dict[str, Decimal], str]:
    """For ``status``: the bids to show and where they come from. While the bot runs (it holds the state file's
    lock): its last loop's. Stopped: the books read now, in one batched request, when the venue answers."""
    tokens = sorted({p.token_id for p in state.positions if p.status in HOLDING})
    if not tokens:
        return {}, ""
    try:
        store.acquire_lock()
    except LockHeld:
        return {}, "bids as of the running bot's last loop (written at most a minute apart)"
    except StateFileError:
        return {}, "bids as of the bot's last loop"
    store.release_lock()
    from bot.venue.live import LiveVenue

    try:
        books = LiveVenue(config.api.clob_host, chain_id=config.api.chain_id,
                          timeout_s=config.api.request_timeout_seconds).get_books(tokens)
    except BotError as exc:
        return {}, f"the bot is not running and the books could not be read ({exc}): bids as of its last loop"
    bids = {t: b.best_bid for t, b in books.items() if b.best_bid is not None}
    return bids, f"the bot is not running: bids read now from {config.api.clob_host} (one request)"


def shown_positions(state: BotState, closed: int = 10, every: bool = False) -> list[Position]:
    """What ``status`` lists: the last ``closed`` closed positions (every one with ``every``) from the history,
    then those in the state file (the active ones)."""
    h = state.history
    stored = [] if h is None else (h.all() if every else h.recent(closed))
    ids = {p.id for p in stored}
    return stored + [p for p in state.positions if p.id not in ids]


def print_status(state: BotState, as_json: bool, closed: int = 10, every: bool = False,
                 bids: dict[str, Decimal] | None = None, bids_from: str = "") -> None:
    shown = shown_positions(state, closed, every)
    now = datetime.now(UTC)
    marks = {p.id: mark(p, now, (bids or {}).get(p.token_id)) for p in shown if p.status in HOLDING}
    total = totals(state, marks, now)
    if as_json:
        payload = {
            "positions": [position_row(p, marks.get(p.id)) for p in shown],
            "totals": {"cash": fmt(total.cash) if total.cash is not None else None, "cash_at": total.cash_at,
                       "open_value": fmt(total.open_value), "unrealized_pnl": fmt(total.unrealized_pnl),
                       "realized_pnl_today": fmt(total.realized_today), "realized_pnl": fmt(total.realized),
                       "bids_from": bids_from or None},
            "blacklist": [{"condition_id": cid, "until": until.isoformat()} for cid, until in state.blacklist.items()],
            "paused": state.paused,
            "pause_reason": state.pause_reason,
            "last_loop": state.counters.get("last_loop"),   # {"ms", "interval_s", "overran", "at"}: loop health
        }
        print(json.dumps(payload, indent=2))
        return
    from bot.report import trigger_text

    print(f"{'id':12} {'mode':12} {'status':18} {'reason':15} {'trigger':11} {'shares':>9} {'entry':>7} {'bid':>6} "
          f"{'upnl':>7} {'sl':>6} {'ticks':>5} {'tp':>6} {'ticks':>5} {'age':>6} {'exit':>7} {'fees':>6} {'pnl':>8}  "
          "question")
    for p in shown:
        m = marks.get(p.id)
        bid = upnl = to_sl = to_tp = age = "-"
        if m is not None:
            bid, age = fmt(m.bid), age_text(m.age_hours)
            upnl = fmt(m.unrealized_pnl, 2) if m.unrealized_pnl is not None else "-"
            to_sl, to_tp = fmt(m.ticks_to_sl, 0), fmt(m.ticks_to_tp, 0)
        print(f"{p.id:12} {p.exit_mode.value:12} {p.status.value:18} "
              f"{(p.close_reason.value if p.close_reason else '-'):15} {trigger_text(p):11} "
              f"{fmt(p.shares if p.is_active else p.sold_shares):>9} {fmt(p.entry_price, 3):>7} {bid:>6} {upnl:>7} "
              f"{sl_text(p):>6} {to_sl:>5} {tp_text(p):>6} {to_tp:>5} {age:>6} {fmt(p.exit_price, 3):>7} "
              f"{fmt(p.fees_paid, 3):>6} {fmt(p.realized_pnl, 2):>8}  {p.question[:40]}")
    if not shown:
        print("(no positions)")
    if marks:
        where = bids_from or "bids as of the bot's last loop"
        print(f"({where}; upnl: an exit at the bid after the taker fee, less the cost; ticks: from the bid to the "
              "stop-loss and to the take-profit)")
    for p in shown:
        for line in (following_line(p), ladder_line(p)):
            if line and p.is_active:
                print(line)
    print(totals_line(total))
    count, pnl = state.closed_totals()
    if count > len([p for p in shown if not p.is_active]):
        print(f"closed: {count} in all, pnl ${fmt(pnl, 2)} (the last {closed} shown; --closed N or --all for more)")
    for p in state.positions:
        if p.status == PositionState.HELD:
            last = p.metrics.get("last_bid")
            worth = f", worth about ${fmt(p.shares * Decimal(last), 2)} at the last bid {last}" if last else ""
            print(f"held to resolution: {p.id} {fmt(p.shares)} shares{worth}: below every order minimum (5 shares "
                  "or $1); its payout is booked when the market resolves")
    now = datetime.now(UTC)
    for cid, until in state.blacklist.items():
        if until > now:
            print(f"blacklisted: {cid} until {until.isoformat()}")
    print(f"paused: {state.paused}" + (f" ({state.pause_reason})" if state.paused else ""))


def confirm_live_once(args, config: BotConfig) -> bool:
    """--live-once: doctor must find no error; then a person says yes (or --yes was given)."""
    doctor = Doctor(args.config)
    checks = doctor.run()
    print(format_checks(checks))
    if not doctor.ok:
        print("refusing --live-once: doctor found errors (see above)", file=sys.stderr)
        return False
    if config.bot.dry_run:
        print("bot.dry_run is true: rehearsing the one trade with paper orders")
        return True
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print("refusing --live-once without a terminal to confirm on: add --yes", file=sys.stderr)
        return False
    answer = input(f"Place ONE real order of the smallest valid size on {config.api.clob_host}? Type yes: ")
    return answer.strip().lower() == "yes"


def run_report(state: BotState, args) -> int:
    """python main_bot.py report [--json] [--since DATE] [--plot FILE.png]"""
    from bot import report as ab

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            print(f"error: --since {args.since!r}: expected an ISO date such as 2026-11-24 or 2026-11-24T12:00",
                  file=sys.stderr)
            return 2
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    if args.plot:
        plot = Path(args.plot)
        if plot.suffix.lower() != ".png":
            print(f"error: --plot {args.plot}: the plot is a PNG image: give a file name ending in .png",
                  file=sys.stderr)
            return 2
        if not plot.parent.is_dir():
            print(f"error: --plot {args.plot}: folder {plot.parent} does not exist", file=sys.stderr)
            return 2
    result = ab.build_report(state, since)
    print(json.dumps(result, indent=2) if args.json else ab.format_text(result))
    if args.plot:
        try:
            ab.plot(state, args.plot, since)
        except OSError as exc:
            print(f"error: --plot {args.plot}: cannot be written ({exc.strerror or exc})", file=sys.stderr)
            return 2
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0


def hand_to_running_bot(store: PositionStore, command: dict) -> str | None:
    """A command for the state at ``store``: when a bot runs on it (it holds the lock) the command is left
    for it (it applies it within one loop) and its pid is returned; else None, and the caller holds the lock."""
    try:
        store.acquire_lock()
    except LockHeld as held:
        store.send_control(command)
        return held.pid
    return None


def run_resume(store: PositionStore) -> int:
    """python main_bot.py resume: the running bot picks it up within one loop; else the file is edited."""
    if not store.path.exists() and not store.lock_path.exists():
        print(f"nothing to resume: {store.path} does not exist")
        return 0
    pid = hand_to_running_bot(store, {"command": "resume"})
    if pid is not None:
        print(f"resume sent to the running bot (pid {pid}): it allows new trades again within one loop")
        return 0
    try:
        state = store.load()
        state.resume()
        store.save(state)
    finally:
        store.release_lock()
    print("resumed: new trades allowed again")
    return 0


def positive_seconds(text: str) -> float:
    """argparse type of --sim-loop-seconds: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be above 0 seconds (and finite)")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main_bot.py", description="Polymarket TP/SL bot")
    parser.add_argument("command", nargs="?", default="run",
                        choices=["run", "status", "resume", "report", "doctor", "convert", "close", "backtest"],
                        help="run the bot (default), status, resume after a pause, the A/B report, doctor "
                             "(read-only checks before going live), convert (limit_orders -> monitor), close --id "
                             "(a position needing attention whose shares are gone, closed by hand), backtest (replay "
                             "TP/SL settings on Polymarket's history: README, Replay)")
    parser.add_argument("--config", default="config.json", help="path of config.json")
    parser.add_argument("--loops", type=int, default=None, help="run N iterations of the loop and exit")
    parser.add_argument("--json", action="store_true", help="status/report: print JSON")
    parser.add_argument("--closed", type=int, default=10, metavar="N",
                        help="status: how many of the last closed positions to list (default 10)")
    parser.add_argument("--all", action="store_true", help="status: list every closed position")
    parser.add_argument("--since", default=None, help="report: only positions opened since this ISO date; backtest: "
                        "the window's start")
    parser.add_argument("--plot", default=None, help="report: draw cumulative P&L and slippage into this PNG")
    parser.add_argument("--live-once", action="store_true",
                        help="open exactly one position of the smallest valid size, manage it to its end, stop")
    parser.add_argument("--yes", action="store_true", help="--live-once: do not ask for confirmation")
    parser.add_argument("--to", default="monitor", choices=["monitor"], help="convert: the target exit mode")
    parser.add_argument("--id", default=None, help="convert: only this position; close: the position to close")
    parser.add_argument("--sim", action="store_true", help="trade on the embedded simulated exchange (with status, "
                        "report, resume, convert: act on the --sim run's state in --sim-dir)")
    parser.add_argument("--dry-run", action="store_true",
                        help="paper orders (overrides bot.dry_run; with --sim: paper orders on the simulated market)")
    parser.add_argument("--seed", type=int, default=7, help="with --sim: the simulated market's seed")
    parser.add_argument("--sim-markets", type=int, default=8, help="with --sim: how many markets")
    parser.add_argument("--sim-dir", default="sim_state", help="with --sim: where the run's state goes")
    parser.add_argument("--sim-loop-seconds", type=positive_seconds, default=1.0, metavar="S",
                        help="with --sim: seconds per loop and per scan (order checks every 2 loops; default 1)")
    parser.add_argument("--sim-wallet", default="eoa", choices=["eoa", "deposit"],
                        help="with --sim: trade from a plain wallet (signature_type 0) or from a deposit wallet "
                             "(signature_type 3, what polymarket.com accounts made since May 2026 have)")
    replay = parser.add_argument_group("backtest (README, Replay)")
    replay.add_argument("--until", default=None, help="the window's end (ISO date or time, UTC; default now)")
    replay.add_argument("--days", type=float, default=None, help="the window: this many days before --until "
                        "(default 30; with --sim 3)")
    replay.add_argument("--markets", type=int, default=20, help="the busiest N resolved markets of the window")
    replay.add_argument("--slug", action="append", default=None, help="replay this market (repeatable)")
    replay.add_argument("--fidelity", type=int, default=1, help="minutes between recorded prices (default 1)")
    replay.add_argument("--grid", nargs="+", default=None, metavar="KEY=V1,V2",
                        help="every combination, e.g. take_profit_pct=0.05,0.10 stop_loss_pct=0.05,0.10")
    replay.add_argument("--dask", default=None, metavar="ADDRESS",
                        help="run the grid on a Dask cluster (tcp://scheduler:8786) instead of local processes")
    replay.add_argument("--workers", type=int, default=None, help="grid: local processes (default: one per core)")
    replay.add_argument("--cache", default="replay_cache", help="where downloaded histories are kept")
    replay.add_argument("--offline", action="store_true", help="use the cache only (no request)")
    replay.add_argument("--out", default="replay_out", help="where the result files go")
    replay.add_argument("--spread-ticks", type=int, default=2, help="fill model: the book's spread in ticks")
    replay.add_argument("--depth", type=float, default=500, help="fill model: shares per book level")
    replay.add_argument("--levels", type=int, default=5, help="fill model: levels a side")
    replay.add_argument("--tp-fill", default="through", choices=["through", "touch"],
                        help="fill model: a resting TP fills when the price trades through it, or touches it")
    replay.add_argument("--exit-latency", type=int, default=0,
                        help="fill model: an exit fills this many recorded steps after its trigger")
    return parser.parse_args(argv)


def main(argv: list[str] | None, bot_class: BotClass) -> int:
    """``python main_bot.py ...``: the subcommands; ``bot_class`` is main_bot.py's ``Bot``."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_bot_config(args.config)
        if args.dry_run:
            config = with_overrides(config, bot__dry_run=True)   # --dry-run means paper orders wherever it is given
        if not args.sim:
            check_state_paths(config)
        state_path = Path(args.sim_dir) / "positions.json" if args.sim else Path(config.bot.positions_file)
        if args.command == "status":
            store = PositionStore(state_path)
            state = store.load()
            bids, bids_from = ({}, "bids as of the bot's last loop (a --sim run's exchange is gone)") if args.sim \
                else read_bids(config, state, store)
            print_status(state, args.json, args.closed, args.all, bids, bids_from)
            return 0
        if args.command == "report":
            return run_report(PositionStore(state_path).load(), args)
        if args.command == "backtest":
            from bot.replay import backtest

            try:
                return (backtest.sim_main if args.sim else backtest.main)(args, config, bot_class)
            except (backtest.BacktestError, ValueError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        if args.command == "doctor":
            doctor = Doctor(args.config)
            checks = doctor.run()
            print(as_json(checks) if args.json else format_checks(checks))
            return 0 if doctor.ok else 1
        if args.command == "resume":
            return run_resume(PositionStore(state_path))
        store = PositionStore(state_path)
        if args.command == "close" and not args.id:
            raise ConfigError("close needs --id ID: the position needing attention to close (see `status`)")
        if args.command in ("convert", "close"):
            no_sim = StateFileError(f"{state_path}: no --sim run is running: the simulated exchange and its orders "
                                    "exist only while `main_bot.py --sim` runs (the next run starts afresh); run "
                                    f"`{args.command} --sim` while it runs")
            if args.sim and not store.lock_path.exists():
                raise no_sim
            pid = hand_to_running_bot(store, {"command": args.command, "to": args.to, "id": args.id})
            if pid is not None:
                print(f"{args.command} sent to the running bot (pid {pid}): it acts within one loop and logs what "
                      "it did")
                return 0
            if args.sim:   # never starts trading
                store.release_lock()
                raise no_sim
        if args.sim:
            return run_sim(args, config, bot_class)
        if args.live_once and not confirm_live_once(args, config):
            return 1
        get_logger(config)

        if args.command not in ("convert", "close"):   # they hold it already
            store.acquire_lock()
        try:
            venue = build_venue(config)
            bot = make_bot(bot_class, config, venue, store, once=args.live_once,
                           feeds=args.command not in ("convert", "close"))
            if args.command in ("convert", "close"):
                manage = bot.manage
                lines = (manage.convert_to_monitor(bot.now(), args.id) if args.command == "convert"
                         else manage.close_by_hand(bot.now(), args.id))
                for line in lines:
                    print(line)
                return 0
            install_signal_handlers(bot)
            return bot.run(loops=args.loops)
        finally:
            store.release_lock()
    except (ConfigError, StateFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"error: {exc} twice: stopped at once, without finishing the step (the state file holds the last "
              "saved step; the next start reconciles it with the venue)", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
