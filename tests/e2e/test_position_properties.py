"""Property-based test of positions' lives: random price paths, random venue answers (fills, partial fills,
delayed matching, HTTP 200 refusals, lost and garbled answers, 429/425/5xx faults, the engine's restart
window, sparse answers) and random crashes inside every phase, through the real SDK against bot/sim; and
CLOB V2's harder answers (FACTS.md Part 0): each example draws its markets' taker fee curve and whether the
venue forgets orders that are no longer live, and steps may bring ghost fills (matched, never settled, FAILED
a few seconds later) and balance locks (every order refused for "balance" while the balance reads right).

After every step (what the bot knows may lag the venue only where an order's outcome is still being
looked up):
- the account's shares of each token equal the active positions' shares on it, less what their TPs
  filled on the venue and the bot has not read yet (never more than the bot bought, never negative);
  the one allowance: a fill the bot booked from a match whose trades are not settled yet (its record not
  ``confirmed``) may be a ghost fill that moved nothing, by at most that order's ghost-matched shares;
- a position never sold more than it bought; the sells resting on a token (a TP, or a ladder's rungs) never
  offer more than the account holds, each one a position's;
- every open position has a stop-loss price, and a limit_orders one a TP (resting, or being looked up),
  unless its TP was refused by a balance lock the bot is waiting out, or its fill FAILED and was taken back at
  the end of the loop (placed again in the next one); meanwhile the bot watches the TP price itself;
- a position in ``settling`` has no shares left to sell; no shares are ever booked as sold outside the bot
  (nobody else trades this account);
- no position needs a person, the bot never pauses itself (nothing here is a reason to), and it logs no
  unexpected error (a traceback).
At the end, once everything has exited (no position opening, exiting or settling): each position's realized
P&L is the account's cash change for it (the sum over positions equals the account's USDC change, within
$0.001 a position).

Default profile: 30 drawn examples and the explicit ones, about 10 seconds. ``HYPOTHESIS_PROFILE=nightly``
runs many more.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from bot import crashpoints
from bot.clock import SimulatedClock
from bot.config import with_overrides
from bot.orders import RecordState, Role
from bot.position_manager import ExitMode, PositionState, PositionStore
from bot.scanner import MarketScanner
from bot.sim import SimExchange
from bot.venue.live import LiveVenue
from main_bot import Bot
from tests.e2e.conftest import e2e_config

settings.register_profile("default", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("nightly", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("debug", max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "40")), deadline=None,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")

SHARE_UNIT = D("0.01")
CRASH_POINTS = ["before_send", "after_buy", "after_tp", "after_cancel", "before_sell", "after_sell"]
ANSWERS = ["normal", "normal", "normal", "delayed", "refused", "lost", "garbled", "busy", "sparse", "restart"]
# Taker fee curves (r, e) of /clob-markets `fd` (FACTS.md Part 0, 0.1): none, and three real shapes.
FEE_CURVES = [(0, 0), (0.02, 2), (0.05, 1), (0.25, 2)]


class Crash(BaseException):
    """A kill at a crash point: not an Exception, so the bot's own handlers cannot swallow it."""


@dataclass(frozen=True)
class GhostFills:
    """The next ``n`` executions of the account match but never settle; their trades FAIL after ``fail_after_s``
    (FACTS.md Part 0, 0.2)."""
    n: int
    fail_after_s: float


@dataclass(frozen=True)
class BalanceLock:
    """For ``seconds`` every order is refused "not enough balance / allowance" (FACTS.md Part 0, 0.4)."""
    seconds: int


@dataclass(frozen=True)
class Step:
    price: float
    answer: str
    crash: str | None
    advance: float
    venue: GhostFills | BalanceLock | None = None   # set before the bot's loop (and left to run its course)


steps = st.lists(st.builds(
    Step,
    price=st.sampled_from([0.30, 0.40, 0.44, 0.46, 0.48, 0.50, 0.52, 0.54, 0.56, 0.60, 0.70]),
    answer=st.sampled_from(ANSWERS),
    crash=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(CRASH_POINTS)),
    advance=st.sampled_from([1.0, 3.0, 11.0, 31.0]),
    venue=st.one_of(st.none(), st.none(), st.none(), st.none(),
                    st.builds(GhostFills, n=st.sampled_from([1, 2]), fail_after_s=st.sampled_from([0.0, 1.0, 3.0])),
                    st.builds(BalanceLock, seconds=st.integers(2, 20))),
), min_size=4, max_size=14)


class _Errors(logging.Handler):
    """Records the bot logged with a traceback (``log.exception``: "unexpected error", not a venue's answer)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(f"{record.name}: {record.getMessage()}")


class World:
    """The sim, one funded wallet and the bot, which can be killed and started again from its files."""

    def __init__(self, sim: SimExchange, tmp: Path, fee_curve: tuple[float, int] = (0.02, 2), forget: bool = True,
                 stops: dict | None = None):
        self.sim = sim
        self.clock = sim.clock
        settings = {"capital__max_positions": 2, "capital__max_trade_size": "10", "trading__ab_test_ratio": 0.5,
                    "trading__ab_test_seed": 5, "trading__order_check_interval_seconds": 5,
                    "strategy__take_profit_pct": "0.08", "strategy__stop_loss_pct": "0.08",
                    "strategy__max_hold_hours": 0.05, **(stops or {})}
        self.config = e2e_config(tmp, sim, **settings)
        self.stops_seen: dict[str, tuple[D | None, D | None]] = {}   # position -> (its stop, its highest bid) so far
        self.wallet = sim.new_wallet(usdc=100)
        self.start_usdc = D(str(sim.balances(self.wallet["address"])["usdc"]))
        rate, exponent = fee_curve
        self.markets = [sim.create_market(f"Market {i}?", yes_price=0.5, volatility=0, fee_rate=rate,
                                          fee_exponent=exponent) for i in range(2)]
        sim.forget_orders(forget)
        self.locks: list[tuple[float, float]] = []   # the venue's balance locks in this example (clock times)
        self.errors = _Errors()   # what the bot logged with a traceback: a bug (it classifies what it expects)
        logging.getLogger("bot").addHandler(self.errors)
        self.seen: set[str] = set()   # what the example went through (hypothesis statistics)
        self.checks = 0
        self.tp_taken_back: dict[tuple[str, str | None], int] = {}   # (position, TP) -> the check that saw it
        self.restart()

    def restart(self) -> None:
        venue = LiveVenue(self.sim.clob_url, private_key=self.wallet["private_key"], funder=self.wallet["address"],
                          clock=self.clock)
        self.bot = Bot(self.config, venue, MarketScanner(self.sim.gamma_url, self.config.strategy),
                       PositionStore(self.config.bot.positions_file), clock=self.clock)

    def run_once(self, crash: str | None) -> None:
        def hook(name: str) -> None:
            if name == crash:
                raise Crash(name)

        crashpoints.set_hook(hook if crash else None)
        try:
            self.bot.run(loops=self.bot.loops_done + 1)   # one loop, errors classified as in production
        except Crash:
            self.restart()   # what is on disk is all the next bot knows
        finally:
            crashpoints.set_hook(None)

    def set_answers(self, answer: str) -> None:
        sim = self.sim
        sim.set_faults(0)
        sim.refuse_orders()
        sim.set_sparse_answers(answer == "sparse")
        for m in self.markets:
            sim.set_market_options(m["condition_id"], seconds_delay=3 if answer == "delayed" else 0)
        if answer == "refused":
            sim.refuse_orders(next=1)
        elif answer == "lost":
            sim.set_faults(1.0, statuses=[500], paths=["/order"], after=True)
        elif answer == "garbled":
            sim.set_faults(1.0, statuses=[200], paths=["/order"], after=True)
        elif answer == "busy":
            sim.set_faults(0.5, statuses=[429, 425, 500, 503], seed=1)
        elif answer == "restart" and sim.engine_phase()["phase"] == "normal":
            sim.restart_engine(seconds_425=20, post_only_seconds=20)

    def set_venue(self, event: GhostFills | BalanceLock | None) -> None:
        if isinstance(event, GhostFills):
            self.sim.ghost_fills(event.n, fail_after_s=event.fail_after_s)
        elif isinstance(event, BalanceLock):
            self.sim.balance_lock(event.seconds)
            now = self.clock.time()
            self.locks = [(start, min(end, now)) for start, end in self.locks] + [(now, now + event.seconds)]

    def tp_may_be_missing(self, pos) -> bool:
        """Two moments a limit_orders position may be open without a resting TP, while the bot watches the TP price
        itself (and the stop-loss as ever):
        - its TP's fill FAILED (a ghost fill) and was taken back at the end of the loop (the fills are settled after
          the positions are handled): the TP is placed again in the next loop, so this holds for one check only;
        - only in an example with a balance lock: its TP was refused while the venue's lock was on (a bot started
          since tries again in its next loop), or the bot has declared a lock and places TPs again once an order
          goes through (or its probe time has passed)."""
        last_tp = next((r for r in reversed(pos.orders) if r.role == Role.TP), None)
        if last_tp is None:
            return False
        # (a ladder: any rung's fill that FAILED, not only the last TP's)
        for tp in [r for r in pos.orders if r.role == Role.TP and r.failed > 0 and r.state == RecordState.DONE]:
            first = self.tp_taken_back.setdefault((pos.id, tp.order_id), self.checks)
            if first == self.checks:
                return True
        if not self.locks:
            return False
        sent = last_tp.sent_at
        refused_in_lock = last_tp.state == RecordState.FAILED and sent is not None \
            and any(start <= sent < end for start, end in self.locks)
        return refused_in_lock or self.bot.manage.lock.blocks_entries()

    def close(self) -> None:
        logging.getLogger("bot").removeHandler(self.errors)

    def check(self) -> None:
        self.checks += 1
        assert not self.errors.records, self.errors.records[0]
        state = self.bot.state
        if self.bot.manage.lock.active:
            self.seen.add("the bot declared a balance lock")
        sim, address = self.sim, self.wallet["address"]
        balances = sim.balances(address)
        assert not state.paused, state.pause_reason
        for pos in state.all_positions():
            assert pos.status != PositionState.NEEDS_ATTENTION, (pos.id, pos.attention_reason)
            # once the entry is booked (its fill sets the exit prices), a stop never moves down, and neither does the
            # highest bid it follows (crashes and restarts included)
            if pos.status != PositionState.OPENING and pos.entry_shares > 0:
                stop, high = self.stops_seen.get(pos.id, (None, None))
                assert stop is None or (pos.sl_price is not None and pos.sl_price >= stop), (pos.id, stop,
                                                                                           pos.sl_price)
                assert high is None or (pos.high_bid is not None and pos.high_bid >= high), (pos.id, high,
                                                                                            pos.high_bid)
                self.stops_seen[pos.id] = (pos.sl_price, pos.high_bid)
                if pos.stop_why:
                    self.seen.add(f"a stop was raised ({pos.stop_why})")
                if pos.metrics.get("rungs_filled"):
                    self.seen.add("a TP rung filled")
            assert pos.sold_shares <= pos.entry_shares + SHARE_UNIT, (pos.id, pos.sold_shares, pos.entry_shares)
            assert pos.shares >= 0
            # nobody but the bot trades this account: no shares ever left it outside the bot (a ghost fill, or
            # its failure, is not a sale by hand)
            assert not [r for r in pos.orders if r.role == Role.OUTSIDE], (pos.id, pos.metrics)
            if pos.status == PositionState.SETTLING:   # it only waits for the venue to settle its last fills
                assert pos.shares < SHARE_UNIT, (pos.id, str(pos.shares))
                self.seen.add("a position settling")
            if pos.status == PositionState.OPEN:
                assert pos.sl_price is not None, pos.id
                if pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.shares >= pos.min_order_size:
                    if not pos.tp_order_id and not (pos.pending is not None and pos.pending.role == Role.TP):
                        assert self.tp_may_be_missing(pos), pos.id
                        self.seen.add("a TP missing for a while")
        resting = [o for o in sim.engine.open_orders(address) if o["side"] == "SELL"]
        # the sells resting on a token (a TP, or each rung of a ladder) never offer more than the account holds
        offered: dict[str, D] = {}
        for o in resting:
            offered[o["asset_id"]] = offered.get(o["asset_id"], D(0)) + D(str(o["original_size"])) \
                - D(str(o["size_matched"]))
        for token, shares in offered.items():
            assert shares <= D(str(balances["tokens"].get(token, 0))) + SHARE_UNIT / 100, (token[:8], str(shares))
        if len(offered) < len(resting):
            self.seen.add("several rungs resting on one token")
        known = state.known_order_ids()
        assert all(o["id"] in known for o in resting), "a resting order no position knows"
        settled, ghost = venue_fills(sim, address)
        by_token: dict[str, list] = {}
        for pos in state.all_positions():
            by_token.setdefault(pos.token_id, []).append(pos)
        for token, positions in by_token.items():
            if any(p.status == PositionState.OPENING or (p.pending is not None and p.pending.order_id)
                   for p in positions):
                continue   # an order's outcome is being looked up: the bot knows it does not know yet
            expected = D(0)
            # Ghost fills (FACTS.md Part 0, 0.2): a fill booked from a match the venue has not settled yet (its
            # record not confirmed) may have moved nothing. Only such a record, and only by the shares its order
            # matched as ghosts, may leave the account holding fewer (a buy) or more (a sale) than the books say.
            ghost_bought = ghost_sold = D(0)
            for p in positions:
                if not p.is_active:
                    continue
                unread = D(0)
                tps = [tp for tp in p.live_tps if tp.order_id]
                for tp in tps:
                    # what the venue took from the account for the resting TP (its settled trades: a ghost match
                    # in size_matched took nothing), less what the bot booked; a filled TP is forgotten by
                    # GET /data/order, so the trades are the simulator's own record
                    tp_unread = settled.get(tp.order_id or "", D(0)) - tp.filled
                    # the bot books no TP sale the venue did not settle, but a ghost match not yet known FAILED
                    allowed = ghost.get(tp.order_id or "", D(0)) if not tp.confirmed else D(0)
                    assert tp_unread >= -allowed - SHARE_UNIT / 100, (p.id, (tp.order_id or "")[:10], str(tp_unread),
                                                                      str(allowed))
                    unread += tp_unread
                expected += p.shares - unread
                for r in p.orders:
                    if r.confirmed or r.filled <= 0 or not r.order_id or any(r is tp for tp in tps):
                        continue
                    if r.role == Role.ENTRY:
                        ghost_bought += min(r.filled, ghost.get(r.order_id, D(0)))
                    else:
                        ghost_sold += min(r.filled, ghost.get(r.order_id, D(0)))
            held = D(str(balances["tokens"].get(token, 0)))
            assert held >= 0
            assert expected - ghost_bought - SHARE_UNIT / 100 <= held \
                <= expected + ghost_sold + SHARE_UNIT * len(positions), \
                (token[:8], str(held), str(expected), str(ghost_bought), str(ghost_sold))

    def wind_down(self) -> None:
        """Everything calm again and the holding time over: every position exits (or is held as dust)."""
        self.config = self.bot.config = with_overrides(self.config, strategy__scan_interval_seconds=10**9)
        self.bot.delay_scan()
        self.set_answers("normal")
        self.sim.balance_lock(0)   # a lock drawn late ends here (ghost fills still due may come: they FAIL anyway)
        self.locks = [(start, min(end, self.clock.time())) for start, end in self.locks]
        for m in self.markets:   # a book an exit can sell into (a collapsed one is held by design, not dumped)
            self.sim.set_price(m["token_ids"][0], 0.5)
        self.clock.advance(60)
        for _ in range(40):
            self.bot.run(loops=self.bot.loops_done + 1)
            self.bot.delay_scan()
            self.check()
            if all(p.status in (PositionState.CLOSED, PositionState.HELD) for p in self.bot.state.all_positions()):
                break
            self.clock.advance(61)
        assert all(p.status in (PositionState.CLOSED, PositionState.HELD) for p in self.bot.state.all_positions()), \
            [(p.id, p.status.value, p.pending) for p in self.bot.state.all_positions()]
        assert not [p.id for p in self.bot.state.all_positions()
                    if p.status in (PositionState.SETTLING, PositionState.OPENING, PositionState.EXITING)]
        positions = self.bot.state.all_positions()
        _, ghost = venue_fills(self.sim, self.wallet["address"])
        self.seen |= {"ghost fills matched"} if ghost else set()
        self.seen |= {"a FAILED fill taken back"} if any(p.metrics.get("failed_fills") for p in positions) else set()
        self.seen |= {f"closed {p.close_reason.value}" for p in positions if p.close_reason}
        cash = D(str(self.sim.balances(self.wallet["address"])["usdc"])) - self.start_usdc
        booked = sum((p.exit_proceeds - p.entry_cost for p in self.bot.state.all_positions()), D(0))
        assert abs(cash - booked) <= D("0.001") * max(1, len(self.bot.state.all_positions())), (str(cash), str(booked))


def venue_fills(sim: SimExchange, address: str) -> tuple[dict[str, D], dict[str, D]]:
    """The account's shares matched per order on the venue: (settled, ghost). The sim settles at once
    (settlement_delay_s 0: a real trade is CONFIRMED by the end of the request that matched it), so a trade of
    the account that is not CONFIRMED is a ghost fill (MATCHED until it turns FAILED) that moved nothing."""
    assert sim.engine.settlement_delay_s == 0
    settled: dict[str, D] = {}
    ghost: dict[str, D] = {}
    for t in sim.engine.trades(address):
        order_id = t["taker_order_id"] if t["trader_side"] == "TAKER" else t["maker_orders"][0]["order_id"]
        into = settled if t["status"] == "CONFIRMED" else ghost
        into[order_id] = into.get(order_id, D(0)) + D(t["size"])
    return settled, ghost


# Found by the search: a TP adopted after a lost answer matched as a ghost fill, which FAILED; the shares came back
# at the end of the loop and the TP rests again in the next one.
GHOST_TP = [Step(0.56, "refused", None, 11.0, BalanceLock(4)), Step(0.5, "busy", None, 31.0),
            Step(0.56, "normal", None, 1.0), Step(0.54, "restart", None, 3.0), Step(0.44, "normal", None, 31.0),
            Step(0.3, "delayed", None, 31.0), Step(0.3, "refused", None, 11.0),
            Step(0.44, "sparse", "after_buy", 1.0, GhostFills(1, 1.0)),
            Step(0.44, "garbled", None, 11.0, GhostFills(2, 3.0)),
            Step(0.56, "normal", None, 31.0), Step(0.7, "delayed", "after_buy", 11.0),
            Step(0.54, "normal", "before_sell", 3.0)]

# A TP refused in a balance lock, then a crash: the new bot knows nothing of the lock and tries again.
LOCKED_TP = [Step(0.56, "normal", None, 3.0), Step(0.56, "busy", None, 1.0, BalanceLock(2)),
             Step(0.7, "restart", None, 11.0), Step(0.3, "delayed", "after_buy", 3.0, BalanceLock(5)),
             Step(0.48, "normal", None, 1.0, BalanceLock(4)),
             Step(0.46, "delayed", "after_sell", 1.0, GhostFills(2, 0.0)),
             Step(0.44, "restart", "after_sell", 31.0), Step(0.44, "lost", None, 3.0),
             Step(0.4, "lost", "after_cancel", 31.0), Step(0.4, "normal", "before_sell", 11.0, BalanceLock(14)),
             Step(0.52, "sparse", None, 31.0), Step(0.52, "refused", None, 1.0), Step(0.44, "garbled", "after_tp", 1.0),
             Step(0.56, "lost", None, 31.0)]
# Exit sales looked up while their ghost trades were still MATCHED (the position settling), alone and in a batch of
# exits: the exit went on as if it were still exiting (IllegalTransition in settling; fixed in 3a125cf).
SETTLING_LOOKUP = [Step(0.4, "lost", None, 3.0), Step(0.3, "refused", None, 1.0),
                   Step(0.48, "lost", None, 1.0, GhostFills(2, 3.0)), Step(0.3, "refused", None, 1.0)]
SETTLING_BATCH = [Step(0.44, "lost", None, 1.0), Step(0.6, "normal", None, 3.0),
                  Step(0.48, "garbled", None, 3.0, GhostFills(2, 3.0)), Step(0.6, "delayed", None, 11.0),
                  Step(0.52, "sparse", "after_sell", 11.0), Step(0.6, "normal", None, 3.0),
                  Step(0.5, "refused", None, 31.0), Step(0.3, "restart", None, 11.0),
                  Step(0.56, "restart", "before_send", 3.0, BalanceLock(3))]


#: Stops that follow the price (bot/stops.py) and take-profit ladders (bot/ladder.py), drawn as strategy settings
#: (the third ladder's first rung, under the minimum of 5 shares, merges into the second: one TP). The A/B draws of
#: seed 5 give monitor to the first six entries: other seeds give limit_orders first (4: all of the first six; 3 and
#: 7: a mix), so that TPs and rungs rest.
STOPS = [{}, {"trading__ab_test_seed": 4}, {"strategy__trailing_stop_pct": "0.04"},
         {"strategy__trailing_stop_pct": "0.03", "strategy__trailing_activation_pct": "0.04"},
         {"strategy__break_even_at_pct": "0.04"},
         {"strategy__trailing_stop_pct": "0.05", "strategy__break_even_at_pct": "0.02", "trading__ab_test_seed": 4},
         {"strategy__take_profit_ladder": "0.04:0.5/0.08:0.5", "trading__ab_test_seed": 4},
         {"strategy__take_profit_ladder": "0.03:0.3/0.06:0.3/0.10:0.4", "strategy__trailing_stop_pct": "0.04",
          "trading__ab_test_seed": 3},
         {"strategy__take_profit_ladder": "0.03:0.2/0.08:0.8", "strategy__break_even_at_pct": "0.02",
          "trading__ab_test_seed": 7}]


#: Ladders through crashes in every phase, lost and delayed answers, a ghost fill of a rung and a balance lock (the
#: draws above reach resting rungs rarely: most of their entries are refused or lost).
LADDER_CRASHES = [Step(0.5, "normal", None, 3.0), Step(0.54, "normal", "after_tp", 3.0), Step(0.54, "lost", None, 11.0),
                  Step(0.56, "normal", None, 31.0, GhostFills(1, 1.0)), Step(0.5, "busy", "after_cancel", 3.0),
                  Step(0.44, "normal", "before_sell", 3.0), Step(0.44, "normal", None, 11.0),
                  Step(0.52, "refused", None, 3.0), Step(0.56, "delayed", None, 31.0),
                  Step(0.6, "normal", "after_sell", 3.0), Step(0.3, "normal", None, 3.0)]
LADDER_LOCK = [Step(0.5, "normal", None, 3.0), Step(0.53, "normal", None, 31.0, BalanceLock(5)),
               Step(0.55, "sparse", None, 11.0), Step(0.57, "restart", "after_tp", 31.0),
               Step(0.6, "garbled", None, 3.0, GhostFills(2, 0.0)), Step(0.52, "normal", None, 31.0),
               Step(0.46, "lost", "after_cancel", 3.0), Step(0.44, "normal", None, 11.0)]

# Found by the search: two lower rungs matched as ghost fills (FAILED, taken back) while the top rung's fill went
# through; the rungs' sales were counted lowest first, so the top rung's shares "covered" the lower rungs and their
# shares were offered again at the top rung's price. A rung's own fills are now its own.
GHOST_RUNGS = [Step(0.3, "normal", None, 3.0, BalanceLock(8)), Step(0.5, "restart", None, 31.0),
               Step(0.56, "garbled", "before_send", 1.0), Step(0.4, "refused", None, 31.0, BalanceLock(15)),
               Step(0.48, "sparse", "after_tp", 31.0), Step(0.44, "restart", None, 3.0),
               Step(0.46, "refused", "after_tp", 3.0, GhostFills(2, 0.0)), Step(0.7, "busy", None, 31.0),
               Step(0.52, "garbled", None, 31.0), Step(0.44, "normal", "after_buy", 1.0),
               Step(0.46, "normal", None, 31.0, GhostFills(2, 1.0)), Step(0.7, "delayed", None, 1.0),
               Step(0.56, "normal", None, 3.0), Step(0.48, "normal", None, 31.0)]

# Found by the search once limit_orders came first: a TP placed while the bid stood over it took everything at once
# as a ghost fill; the position waited in settling with the TP still recorded as resting, and the next loop checked
# it there (TpChecked is not allowed in settling).
GHOST_CROSS = [Step(0.56, "normal", None, 11.0), Step(0.6, "normal", "after_cancel", 31.0),
               Step(0.52, "sparse", None, 11.0), Step(0.6, "normal", None, 11.0, GhostFills(1, 1.0)),
               Step(0.46, "garbled", "before_sell", 11.0), Step(0.48, "normal", "after_cancel", 1.0, BalanceLock(2)),
               Step(0.4, "normal", None, 31.0, BalanceLock(6)), Step(0.54, "normal", None, 1.0)]


@settings(settings.get_profile(PROFILE))
@example(path=GHOST_CROSS, fee_curve=(0.05, 1), forget=False, stops=STOPS[8])
@example(path=GHOST_RUNGS, fee_curve=(0.25, 2), forget=False, stops=STOPS[7])
@example(path=LADDER_CRASHES, fee_curve=(0.02, 2), forget=True, stops=STOPS[7])
@example(path=LADDER_LOCK, fee_curve=(0.25, 2), forget=False, stops=STOPS[6])
@example(path=GHOST_TP, fee_curve=(0.25, 2), forget=False, stops={})
@example(path=LOCKED_TP, fee_curve=(0.25, 2), forget=True, stops={})
@example(path=SETTLING_LOOKUP, fee_curve=(0, 0), forget=False, stops={})
@example(path=SETTLING_BATCH, fee_curve=(0.05, 1), forget=True, stops={})
@given(path=steps, fee_curve=st.sampled_from(FEE_CURVES), forget=st.booleans(), stops=st.sampled_from(STOPS))
def test_a_positions_life_keeps_the_books_and_the_account_in_step(tmp_path_factory, path, fee_curve, forget, stops):
    tmp = tmp_path_factory.mktemp("life")
    with SimExchange(seed=3, clock=SimulatedClock(start=1_800_000_000.0)) as sim:
        world = World(sim, tmp, fee_curve, forget, stops)
        try:
            live(world, path)
        finally:
            world.close()
        for what in sorted(world.seen):
            event(what)


def live(world: World, path: list[Step]) -> None:
    for step in path:
        world.set_answers(step.answer)
        world.set_venue(step.venue)
        for m in world.markets:
            world.sim.set_price(m["token_ids"][0], step.price)
        world.run_once(step.crash)
        world.set_answers("normal")
        world.check()
        world.clock.advance(step.advance)
    world.wind_down()


@pytest.mark.parametrize("bid_then", [0.4, 0.3], ids=["closes", "reanchors"])
def test_an_unsettled_exit_sale_found_by_lookup_waits_cleanly(tmp_path, caplog, bid_then):
    """A stop-loss sale whose answer is lost matches as a ghost fill; the bot looks it up (MATCHED, not settled
    yet) after its retry delay and before the trade FAILS: the position waits in settling, without an error (with
    the bid where it was, or below the exit's floor). (Found by the search above: the exit went on as if the
    position were still exiting, closing it or re-anchoring its floor: IllegalTransition in settling; fixed in
    3a125cf, "exits ... treat a settling position as done".)"""
    with SimExchange(seed=3, clock=SimulatedClock(start=1_800_000_000.0)) as sim:
        world = World(sim, tmp_path)
        try:
            for step in [Step(0.5, "normal", None, 1.0), Step(0.4, "lost", None, 2.5, GhostFills(1, 3.0))]:
                world.set_answers(step.answer)
                world.set_venue(step.venue)
                for m in world.markets:
                    sim.set_price(m["token_ids"][0], step.price)
                world.run_once(step.crash)
                world.set_answers("normal")
                world.check()
                world.clock.advance(step.advance)
            for m in world.markets:
                sim.set_price(m["token_ids"][0], bid_then)
            with caplog.at_level(logging.ERROR, logger="bot"):
                world.run_once(None)   # the lookup: sold, MATCHED
            assert [p.status for p in world.bot.state.all_positions() if p.close_reason] == [PositionState.SETTLING]
            assert "is not allowed in state settling" not in caplog.text, caplog.text
            world.clock.advance(5)
            live(world, [Step(bid_then, "normal", None, 1.0)])   # then the trade FAILS: the shares are sold again
        finally:
            world.close()


@pytest.fixture(autouse=True)
def _no_hook_left():
    yield
    crashpoints.set_hook(None)
