#!/usr/bin/env python3
"""Polymarket TP/SL bot: buys, protects every position with a take-profit and a stop-loss, and exits
after a maximum holding time. See README.md.

    python main_bot.py [--config config.json] [--loops N]     run (dry-run unless the config says otherwise)
    python main_bot.py --sim [--loops N]                      run against the embedded simulated exchange
    python main_bot.py status [--json]                        show positions, blacklist and pause
    python main_bot.py report | doctor | convert | resume     A/B report, pre-flight checks, rollback, unpause
    python main_bot.py close --id ID                          close by hand a position needing attention
    python main_bot.py --live-once [--yes]                    one smallest valid position, to its end
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from bot.alerts import Alerter
from bot.clock import Clock, SystemClock, Waker
from bot.config import (
    BotConfig,
    ConfigError,
    check_state_paths,
    check_trade_size,
    load_bot_config,
    load_secrets,
    require_live_secrets,
    unexitable_trade_size,
)
from bot.doctor import Doctor, as_json, format_checks
from bot.errors import (
    BotError,
    MalformedResponse,
    OrderRejected,
    StateFileError,
    TemporaryVenueError,
    UnknownOutcome,
    VenueError,
)
from bot.logger import get_logger, register_secret
from bot.lifecycle import AttentionNeeded, apply
from bot.manage import MAX_CANDIDATES_PER_SCAN, RESOLUTION_CHECK_SECONDS, Manager, Snapshot, tp_visibly_intact
from bot.metrics import CallMeter
from bot.money import fmt
from bot.ownership import refuse_other_venues_positions, stamp, venue_identity
from bot.position_manager import BotState, ExitMode, LockHeld, Position, PositionState, PositionStore
from bot.reconcile import reconcile
from bot.scanner import MarketScanner
from bot.trader import exit_prices
from bot.venue.base import Book, Venue

log = logging.getLogger("bot")

#: Metrics-only changes (API call counts) are written at most this often.
METRICS_FLUSH_SECONDS = 60
#: Even when every book shows the TPs intact, the open-orders list is read every this many check intervals.
FULL_CHECK_EVERY = 10
#: After this many loops in a row that failed with unexpected errors the bot stops opening positions.
MAX_CONSECUTIVE_FAILURES = 5

__all__ = ["Bot", "Snapshot", "tp_visibly_intact", "MAX_CANDIDATES_PER_SCAN", "RESOLUTION_CHECK_SECONDS"]


class Bot:
    """The loop: read the venue in batches, update positions, open new ones, save. What happens to each
    position is in bot/manage.py (handlers), bot/exits.py (the exit protocol) and bot/lifecycle.py (the
    table of its states)."""

    def __init__(self, config: BotConfig, venue: Venue, scanner: MarketScanner, store: PositionStore,
                 clock: Clock | None = None, rng: random.Random | None = None, alerter: Alerter | None = None,
                 once: bool = False):
        self.config, self.venue, self.scanner, self.store = config, venue, scanner, store
        self.clock = clock or SystemClock()
        self.state: BotState = store.load()
        self.venue_kind, self.wallet = venue_identity(venue)
        refuse_other_venues_positions(self.state, self.venue_kind, self.wallet, store.path)
        self.alerter = alerter or Alerter(config.alerts.webhook_url)
        self.manage = Manager(config, venue, scanner, self.state, self.clock, self.alerter, self.save, self._pause,
                              rng)
        self.manage.once = self.once = once   # --live-once: one position of the smallest valid size, to its end
        self.meter = CallMeter([venue, scanner], self.state)
        self.opened_once = self.stop_requested = False
        self._waker: Waker | None = None
        self.loops_done = self.consecutive_failures = 0
        self._last_order_check: float | None = None
        self._last_full_check: float | None = None
        self._last_scan: float | None = None
        self._last_loop_at: float | None = None
        self._last_flush: float | None = None
        self._reconciled = False
        self._reconcile_only: set[str] | None = None   # positions whose start-up check is still to be done
        self._position_failures: dict[str, int] = {}

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), tz=timezone.utc)

    def save(self) -> None:
        stamp(self.state, self.venue_kind, self.wallet)
        self.store.save(self.state)

    def request_stop(self) -> None:
        """Finish the current step, save and stop; a loop's sleep ends at once."""
        self.stop_requested = True
        if self._waker is not None:
            self._waker.wake()

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, loops: int | None = None) -> int:
        """Run until stopped (or ``loops`` iterations); returns the process exit code."""
        for problem in check_trade_size(self.config):
            log.warning("%s", problem)
        problem = unexitable_trade_size(self.config)
        if problem:
            raise ConfigError(problem)
        log.info("Bot started (%s venue): %d active position(s)%s", self.venue.name, len(self.state.active_positions()),
                 "; PAUSED: " + (self.state.pause_reason or "") if self.state.paused else "")
        self._waker = Waker()
        if self.stop_requested:
            self._waker.wake()
        try:
            while not self.stop_requested and (loops is None or self.loops_done < loops):
                started = self.clock.time()
                if self._last_loop_at is not None:
                    self.meter.add_run_time(started - self._last_loop_at)
                self._last_loop_at = started
                self.run_guarded()
                self.loops_done += 1
                if self.once and self.opened_once and not self.state.active_positions():
                    log.info("The one position is closed: stopping (--live-once)")
                    break
                if self.stop_requested or (loops is not None and self.loops_done >= loops):
                    break
                self._sleep(max(0.0, self.config.bot.loop_interval_seconds - (self.clock.time() - started)))
        finally:
            waker, self._waker = self._waker, None
            waker.close()
        self.save()
        log.info("Bot stopped after %d loop(s)", self.loops_done)
        return 0

    def _sleep(self, seconds: float) -> None:
        wait = getattr(self.clock, "wait", None)
        if wait is not None and self._waker is not None:
            wait(seconds, self._waker)
        else:
            self.clock.sleep(seconds)

    def run_guarded(self) -> None:
        """One loop with every exception classified here, so none escapes the loop."""
        try:
            self.run_once()
            self.consecutive_failures = 0
        except StateFileError:
            raise  # never trade on without being able to record what we own
        except TemporaryVenueError as exc:
            log.warning("Venue busy, will retry next loop: %s", exc)
        except MalformedResponse as exc:
            log.error("Malformed venue response, skipped: %s", exc)
        except Exception as exc:  # a venue error or a bug: keep the positions safe, say so
            (log.error if isinstance(exc, VenueError) else log.exception)("Error in the loop: %s", exc)
            self.consecutive_failures += 1
            if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                self._pause(f"{self.consecutive_failures} loops in a row failed; last: {type(exc).__name__}: {exc}")

    def _pause(self, reason: str) -> None:
        """Stop opening positions (existing ones are still managed) and tell the user."""
        if self.state.paused:
            return
        self.state.pause(reason)
        log.error("Pausing new trades: %s", reason)
        self.save()
        self.alerter.send("pause", reason)

    def run_once(self) -> None:
        """One iteration in fixed phases: the user's commands, start-up reconciliation (until it has run),
        read the venue, update positions, maybe open one, save what is left."""
        now = self.now()
        self._take_control(now)
        self._reconcile(now)
        snap = self._read_venue(now)
        self._update_positions(snap, now)
        if self._may_open(now):
            # The entry's calls (candidate books, buy, TP) belong to the position it opens, if any.
            calls_before = self.meter.snapshot()
            pos = None
            try:
                pos = self._place_new_trade(now)
            finally:
                self.meter.charge([pos] if pos else [], self.meter.snapshot() - calls_before, now)
        self._flush_metrics()
        self._log_loop_summary()

    def _take_control(self, now: datetime) -> None:
        """Commands from the command line while the bot runs (``resume``, ``convert``, ``close``), left next
        to the state file by PositionStore.send_control: applied here, within one loop, to the state in
        memory (which the next save writes), never edited under the bot's feet."""
        for cmd in self.store.take_control():
            what = cmd.get("command")
            try:
                if what == "resume":
                    was = self.state.pause_reason if self.state.paused else None
                    self.state.resume()
                    self.consecutive_failures = 0
                    self.save()
                    log.warning("Resumed by the user: new trades allowed again%s", f" (was paused: {was})" if was else "")
                elif what in ("convert", "close"):
                    for line in (self.convert_to_monitor(cmd.get("id")) if what == "convert"
                                 else self.close_by_hand(cmd.get("id"))):
                        log.warning("%s (asked by the user): %s", what, line)
                else:
                    log.warning("Ignoring an unknown command from %s: %r", self.store.control_path, what)
            except VenueError as exc:
                log.error("%s (asked by the user) failed: %s; run it again", what, exc)

    def _flush_metrics(self) -> None:
        """Every change to a position is saved where it happens; what is left at the end of a loop is
        metrics and counters, written at most every METRICS_FLUSH_SECONDS (a crash loses under a minute
        of call counts, never a position)."""
        t = self.clock.time()
        if self._last_flush is None or t - self._last_flush >= METRICS_FLUSH_SECONDS:
            self.save()
            self._last_flush = t

    def _reconcile(self, now: datetime) -> None:
        """Until it has run for every position: check the stored positions against the venue, one by one (a
        position that cannot be checked is checked again next loop, or needs attention); new trades wait."""
        if self._reconciled:
            return
        for pos in self.state.active_positions():   # positions from older files may lack TP/SL prices
            if (pos.tp_price is None or pos.sl_price is None) and pos.entry_price > 0:
                s = self.config.strategy
                pos.tp_price, pos.sl_price = exit_prices(pos.entry_price, s.take_profit_pct, s.stop_loss_pct,
                                                         pos.tick_size)
        try:
            with self.meter.attribute(None, now):
                report = reconcile(self.state, self.venue, now, lambda p: self.manage.arm_tp(p, now),
                                   lambda p: self.manage.finish_opening(p, now),
                                   cancel_unknown=self.config.trading.cancel_unknown_orders, only=self._reconcile_only)
        except VenueError as exc:   # the venue is not answering yet: positions are still managed this loop
            log.warning("Start-up reconciliation could not run (%s); trying again next loop, no new trades until "
                        "it has", exc)
            return
        self._reconcile_only = set(report.retry) or None
        self._reconciled = not report.retry
        attention = [p for p in self.state.positions if p.status == PositionState.NEEDS_ATTENTION]
        for pos in attention:
            self.alerter.send("needs_attention", f"position {pos.id}: {pos.attention_reason}")
        if attention:
            self._pause("a position needs attention (found at start-up): " + "; ".join(
                f"{p.id}: {p.attention_reason}" for p in attention)[:500])
        elif report.restored and self.state.paused and "needs attention" in (self.state.pause_reason or ""):
            self.state.resume()
            log.warning("Every position agrees with the venue again: new trades allowed")
        self.save()
        (log.warning if report.found_anything else log.info)(report.summary())
        if report.found_anything:
            self.alerter.send("reconciliation", report.summary())

    # -- phase 1: read ----------------------------------------------------------------------------

    def _read_venue(self, now: datetime) -> Snapshot:
        """One batched book read for every held token; the open-orders list when a TP check is due."""
        active = self.state.active_positions()
        snap = Snapshot()
        if not active:
            return snap
        with self.meter.attribute(active, now):
            snap.books = self.venue.get_books([p.token_id for p in active])
        resting = [p for p in active if p.exit_mode == ExitMode.LIMIT_ORDERS and p.tp_order_id]
        if resting and self._order_check_due(resting, snap.books):
            with self.meter.attribute(resting, now):
                snap.open_orders = {o.order_id: o for o in self.venue.open_orders()}
            self._last_order_check = self._last_full_check = self.clock.time()
        return snap

    def _order_check_due(self, resting: list[Position], books: dict[str, Book]) -> bool:
        """Every order_check_interval, unless this loop's books show every TP still resting untouched; then
        only every FULL_CHECK_EVERY intervals, as a safety net. Keeps API calls flat in the number of positions."""
        interval = self.config.trading.order_check_interval_seconds
        t = self.clock.time()
        if self._last_order_check is not None and t - self._last_order_check < interval:
            return False
        if self._last_full_check is None or t - self._last_full_check >= FULL_CHECK_EVERY * interval:
            return True
        self._last_order_check = t
        return any(not tp_visibly_intact(p, books.get(p.token_id)) for p in resting)

    # -- phase 2: update (the seed's entry points) -------------------------------------------------

    def _update_positions(self, snap: Snapshot, now: datetime) -> None:
        """Route each active position to the handler of its own exit mode. Each is handled on its own: an
        error in one is logged (after MAX_CONSECUTIVE_FAILURES loops in a row it needs a person) and never
        keeps the others from being managed."""
        for pos in self.state.active_positions():
            if pos.status == PositionState.NEEDS_ATTENTION:
                continue
            try:
                with self.meter.attribute(pos, now):
                    if self.manage.prepare(pos, snap.books.get(pos.token_id), now):
                        if pos.exit_mode == ExitMode.LIMIT_ORDERS:
                            self._update_position_with_limit_orders(pos, snap, now)
                        else:
                            self._update_position_legacy_monitoring(pos, snap, now)
                self._position_failures.pop(pos.id, None)
            except (TemporaryVenueError, MalformedResponse, OrderRejected, UnknownOutcome) as exc:
                log.warning("Position %s: %s; retrying next loop", pos.id, exc)
            except StateFileError:
                raise
            except Exception as exc:  # a bug or something unforeseen in one position: the others go on
                log.exception("Position %s: unexpected error: %s", pos.id, exc)
                failures = self._position_failures[pos.id] = self._position_failures.get(pos.id, 0) + 1
                if failures >= MAX_CONSECUTIVE_FAILURES and pos.is_active:
                    apply(pos, AttentionNeeded(f"{failures} loops in a row failed on it; last: "
                                               f"{type(exc).__name__}: {exc}"), now)
                    self.save()
            self.manage.after(pos, now)

    def _update_position_with_limit_orders(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        """Concurrent mode: the TP rests on the book; the SL is watched from the batched book."""
        self.manage.limit_orders(pos, snap, now)

    def _update_position_legacy_monitoring(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        """Monitor mode: the bot watches TP and SL and sells when the bid reaches either."""
        self.manage.monitor(pos, snap.books.get(pos.token_id), now)

    # -- phase 3: open ----------------------------------------------------------------------------

    def _may_open(self, now: datetime) -> bool:
        if self.state.paused or self.stop_requested or (self.once and self.opened_once) or not self._reconciled:
            return False
        if len(self.manage.managed()) >= self.config.capital.max_positions:
            return False
        if self.config.capital.total - self.manage.deployed() < Decimal(1):
            return False
        t = self.clock.time()
        if self._last_scan is not None and t - self._last_scan < self.config.strategy.scan_interval_seconds:
            return False
        self._last_scan = t
        return True

    def _place_new_trade(self, now: datetime) -> Position | None:
        """Scan, pick one market, buy, and arm its exits (bot/manage.py). Returns the position it opened."""
        pos = self.manage.open_new(now)
        self.opened_once = self.opened_once or pos is not None
        return pos

    # -- the user's commands ------------------------------------------------------------------------

    def convert_to_monitor(self, position_id: str | None = None) -> list[str]:
        """The seed's rollback: open limit_orders positions (or one) go to monitoring."""
        return self.manage.convert_to_monitor(self.now(), position_id)

    def close_by_hand(self, position_id: str | None) -> list[str]:
        """Close by hand a position that needs attention (its shares are gone)."""
        return self.manage.close_by_hand(self.now(), position_id)

    def _log_loop_summary(self) -> None:
        active = self.state.active_positions()
        closed = [p for p in self.state.positions if p.status == PositionState.CLOSED]
        pnl = sum((p.realized_pnl or Decimal(0) for p in closed), Decimal(0))
        modes = {m: sum(1 for p in active if p.exit_mode == m) for m in ExitMode}
        log.info("Loop %d: %d open (%d limit_orders, %d monitor), %d closed, pnl $%s, api calls %d%s",
                 self.loops_done + 1, len(active), modes[ExitMode.LIMIT_ORDERS], modes[ExitMode.MONITOR],
                 len(closed), fmt(pnl, 2), sum(self.meter.snapshot().values()),
                 " [PAUSED]" if self.state.paused else "")


# ----------------------------------------------------------------------------------------------------
# Wiring and CLI


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
    require_live_secrets(secrets)
    for s in (secrets.private_key, secrets.api_secret, secrets.api_passphrase):
        register_secret(s.get_secret_value() if s else None)
    creds = None
    if secrets.api_key:
        creds = (secrets.api_key.get_secret_value(), secrets.api_secret.get_secret_value(),
                 secrets.api_passphrase.get_secret_value())
    log.warning("LIVE TRADING on %s: up to $%s per trade, %d positions, $%s in total", api.clob_host,
                fmt(config.capital.max_trade_size), config.capital.max_positions, fmt(config.capital.total))
    return LiveVenue(api.clob_host, chain_id=api.chain_id, private_key=secrets.private_key.get_secret_value(),
                     funder=secrets.funder_address or None, signature_type=api.signature_type, api_creds=creds,
                     timeout_s=api.request_timeout_seconds, max_requests_per_second=api.max_requests_per_second)


def sim_config(config: BotConfig, clob_url: str, gamma_url: str, state_dir: Path) -> BotConfig:
    """The config for --sim: the sim's hosts, short intervals (20 s holds, 30 s blacklist) and a lively
    market so that a short run shows positions opening and closing; an unset A/B ratio becomes 0.5 so
    both exit modes show. The SL (14%) is wider than the TP (8%) because the entry pays the ask and the
    SL watches the bid: with the sim's 2-tick spread both then sit about as far from the mid, so a short
    run shows take-profits as well as stop-losses (a 6% SL sat one or two ticks under the bid), and an
    8% TP keeps the spread within strategy.max_spread_share_of_tp of it for most of the sim's prices."""
    data = config.model_dump(mode="json")
    data["bot"].update(positions_file=str(state_dir / "positions.json"), log_file=str(state_dir / "bot.log"),
                       loop_interval_seconds=1)
    data["trading"].update(order_check_interval_seconds=2)
    data["strategy"].update(scan_interval_seconds=1, max_hold_hours=20 / 3600, min_liquidity="0", min_volume="0",
                            min_hours_to_end=0, max_hours_to_end=None, take_profit_pct="0.08", stop_loss_pct="0.14",
                            blacklist_hours=30 / 3600)
    if data["trading"]["ab_test_ratio"] is None:
        data["trading"]["ab_test_ratio"] = 0.5  # show both exit modes side by side
    data["api"].update(clob_host=clob_url, gamma_host=gamma_url)
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


def run_sim(args, config: BotConfig) -> int:
    """Start the embedded simulated exchange, fund a throwaway wallet, and trade on it for real."""
    state_dir = Path(args.sim_dir)
    store = prepare_sim_dir(state_dir)
    try:
        return _run_sim(args, config, state_dir, store)
    finally:
        store.release_lock()


def _run_sim(args, config: BotConfig, state_dir: Path, store: PositionStore) -> int:
    from bot.sim import SimExchange
    from bot.venue.live import LiveVenue
    from bot.venue.paper import PaperVenue

    with SimExchange(markets=args.sim_markets, seed=args.seed, default_volatility=Decimal("0.015")) as sim:
        cfg = sim_config(config, sim.clob_url, sim.gamma_url, state_dir)
        get_logger(cfg)
        deposit = getattr(args, "sim_wallet", "eoa") == "deposit"
        wallet = sim.new_wallet(usdc=cfg.capital.total, signature_type=3 if deposit else 0)
        register_secret(wallet["private_key"])
        log.info("Simulated exchange at %s (Gamma %s); throwaway %s %s funded with $%s", sim.clob_url,
                 sim.gamma_url, f"deposit wallet (signature_type 3, owner {wallet['owner']})" if deposit else "wallet",
                 wallet["address"], fmt(cfg.capital.total))
        if args.dry_run:
            venue = PaperVenue(LiveVenue(sim.clob_url), cfg.capital.total,
                               state_file=state_dir / "positions.json.paper.json")
        else:
            venue = LiveVenue(sim.clob_url, private_key=wallet["private_key"], funder=wallet["address"],
                              signature_type=wallet["signature_type"])
        bot = Bot(cfg, venue, MarketScanner(sim.gamma_url, cfg.strategy), store)
        _install_signal_handlers(bot)
        code = bot.run(loops=args.loops)
        print_status(bot.state, as_json=False)
        return code


class Interrupted(BaseException):
    """A second Ctrl-C (or SIGTERM): stop at once, without finishing the step. A BaseException, so that no
    ``except Exception`` on the way takes it for an error to recover from."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def _install_signal_handlers(bot: Bot) -> None:
    def handler(signum, _frame):
        name = signal.Signals(signum).name
        if bot.stop_requested:
            raise Interrupted(signum)
        log.info("Signal %s: finishing this step, saving, exiting (again to exit at once)", name)
        bot.request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def position_row(p: Position) -> dict:
    """The status --json view of a position."""
    d = p.to_dict()
    d["status"] = p.status.value
    return d


def print_status(state: BotState, as_json: bool) -> None:
    if as_json:
        payload = {
            "positions": [position_row(p) for p in state.positions],
            "blacklist": [{"condition_id": cid, "until": until.isoformat()} for cid, until in state.blacklist.items()],
            "paused": state.paused,
            "pause_reason": state.pause_reason,
        }
        print(json.dumps(payload, indent=2))
        return
    print(f"{'id':12} {'mode':12} {'status':18} {'reason':15} {'shares':>9} {'entry':>7} {'tp':>6} {'sl':>6} "
          f"{'exit':>7} {'fees':>6} {'pnl':>8}  question")
    for p in state.positions:
        print(f"{p.id:12} {p.exit_mode.value:12} {p.status.value:18} "
              f"{(p.close_reason.value if p.close_reason else '-'):15} "
              f"{fmt(p.shares if p.is_active else p.sold_shares):>9} {fmt(p.entry_price, 3):>7} {fmt(p.tp_price):>6} "
              f"{fmt(p.sl_price):>6} {fmt(p.exit_price, 3):>7} {fmt(p.fees_paid, 3):>6} {fmt(p.realized_pnl, 2):>8}  "
              f"{p.question[:40]}")
    if not state.positions:
        print("(no positions)")
    for p in state.positions:
        if p.status == PositionState.HELD:
            bid = p.metrics.get("last_bid")
            worth = f", worth about ${fmt(p.shares * Decimal(bid), 2)} at the last bid {bid}" if bid else ""
            print(f"held to resolution: {p.id} {fmt(p.shares)} shares{worth}: below every order minimum (5 shares "
                  "or $1); its payout is booked when the market resolves")
    now = datetime.now(timezone.utc)
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
        since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main_bot.py", description="Polymarket TP/SL bot")
    parser.add_argument("command", nargs="?", default="run",
                        choices=["run", "status", "resume", "report", "doctor", "convert", "close"],
                        help="run the bot (default), status, resume after a pause, the A/B report, doctor "
                             "(read-only checks before going live), convert (limit_orders -> monitor), close --id "
                             "(a position needing attention whose shares are gone, closed by hand)")
    parser.add_argument("--config", default="config.json", help="path of config.json")
    parser.add_argument("--loops", type=int, default=None, help="run N iterations of the loop and exit")
    parser.add_argument("--json", action="store_true", help="status/report: print JSON")
    parser.add_argument("--since", default=None, help="report: only positions opened since this ISO date")
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
    parser.add_argument("--sim-wallet", default="eoa", choices=["eoa", "deposit"],
                        help="with --sim: trade from a plain wallet (signature_type 0) or from a deposit wallet "
                             "(signature_type 3, what polymarket.com accounts made since May 2026 have)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_bot_config(args.config)
        if args.dry_run:
            config.bot.dry_run = True   # --dry-run means paper orders wherever it is given
        if not args.sim:
            check_state_paths(config)
        state_path = Path(args.sim_dir) / "positions.json" if args.sim else Path(config.bot.positions_file)
        if args.command == "status":
            print_status(PositionStore(state_path).load(), args.json)
            return 0
        if args.command == "report":
            return run_report(PositionStore(state_path).load(), args)
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
            return run_sim(args, config)
        if args.live_once and not confirm_live_once(args, config):
            return 1
        get_logger(config)
        if args.command not in ("convert", "close"):   # they hold it already
            store.acquire_lock()
        try:
            venue = build_venue(config)
            bot = Bot(config, venue, MarketScanner(config.api.gamma_host, config.strategy), store, once=args.live_once)
            if args.command in ("convert", "close"):
                lines = bot.convert_to_monitor(args.id) if args.command == "convert" else bot.close_by_hand(args.id)
                for line in lines:
                    print(line)
                return 0
            _install_signal_handlers(bot)
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


if __name__ == "__main__":
    sys.exit(main())
