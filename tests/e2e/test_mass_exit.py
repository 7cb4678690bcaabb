"""Mass exits through the real SDK against bot/sim: many positions gap through their stop-losses at once.

Their TPs are cancelled in one DELETE /orders, their sells signed (ids saved) and sent together in POST /orders
batches; every position ends closed, nothing is sold twice, refusals are retried under the exit protocol's
rules, and the bot stays under the venue's per-endpoint rate limits (which the sim enforces when asked)."""
from __future__ import annotations

from decimal import Decimal

from bot.clock import SimulatedClock
from bot.money import SHARE_EPSILON
from bot.orders import Role
from bot.position_manager import ExitMode, Position, PositionState, PositionStore
from bot.scanner import MarketScanner
from bot.sim import SimExchange
from bot.venue.live import LiveVenue
from main_bot import Bot
from tests.e2e.conftest import Harness

SHARES = Decimal(20)


def hold(h: Harness, n: int) -> list[Position]:
    """``n`` open positions, half with a resting TP, half monitored; one quiet loop (nothing triggers)."""
    h.no_new_trades()
    bot, now = h.bot, h.bot.now()
    out = []
    for i in range(n):
        m = h.sim.create_market(f"Gap market {i}?", yes_price=0.5, volatility=0)
        yes = m["token_ids"][0]
        h.sim.fund(h.wallet["address"], token_id=yes, shares=SHARES)
        mode = ExitMode.LIMIT_ORDERS if i % 2 == 0 else ExitMode.MONITOR
        pos = Position(token_id=yes, condition_id=m["condition_id"], market_id=m["id"], question=m["slug"],
                       exit_mode=mode, status=PositionState.OPEN, shares=SHARES, entry_shares=SHARES,
                       entry_price=Decimal("0.50"), entry_cost=Decimal("10"), tp_price=Decimal("0.75"),
                       sl_price=Decimal("0.40"), opened_at=now, updated_at=now)
        bot.state.add(pos)
        if mode == ExitMode.LIMIT_ORDERS:
            bot.manage.arm_tp(pos, now)
            assert pos.tp_order_id
        out.append(pos)
    bot._reconciled = True
    bot.save()
    h.loop()
    assert all(p.status == PositionState.OPEN for p in out)
    return out


def gap(h: Harness, positions: list[Position]) -> None:
    for pos in positions:
        h.sim.set_book(pos.token_id, bids=[("0.30", "1000")], asks=[("0.32", "1000")])


def sold(pos: Position) -> Decimal:
    return sum((r.filled for r in pos.orders if r.role in (Role.EXIT, Role.TP)), Decimal(0))


def assert_all_out(h: Harness, positions: list[Position]) -> None:
    assert all(p.status == PositionState.CLOSED for p in positions), [p.status for p in positions]
    assert all(sold(p) <= p.entry_shares + SHARE_EPSILON for p in positions), "a position sold twice"
    tokens = h.venue_balances()["tokens"]
    assert all(Decimal(tokens.get(p.token_id, "0")) < SHARE_EPSILON for p in positions)
    assert h.venue_balances()["open_orders"] == 0


def test_mass_exit_one_batched_cancel_and_sells_sent_together(sim, tmp_path):
    h = Harness(sim, tmp_path)
    positions = hold(h, 20)
    sim.reset_request_counts()
    gap(h, positions)
    h.loop()
    assert_all_out(h, positions)
    counts = sim.request_counts()["by_endpoint"]
    assert counts.get("DELETE /orders") == 1 and "DELETE /order" not in counts   # one cancel for the 10 TPs
    assert counts.get("POST /orders") == 2 and "POST /order" not in counts       # 20 sells: batches of 15 and 5
    assert all(p.close_reason and p.close_reason.value == "stop_loss" for p in positions)


def test_mass_exit_with_refused_cancels_and_sells_ends_with_every_position_out(sim, tmp_path):
    h = Harness(sim, tmp_path)
    positions = hold(h, 20)
    gap(h, positions)
    sim.refuse_orders(rate=0.3, seed=5)                              # sells refused inside the 200 array
    sim.set_faults(0.3, statuses=[429, 503], paths=["/orders"], seed=7)   # whole batch requests refused
    for _ in range(40):
        h.loop(advance=5)
        if all(p.status == PositionState.CLOSED for p in positions):
            break
        assert all(p.status in (PositionState.EXITING, PositionState.CLOSED) for p in positions)
    else:
        sim.refuse_orders(rate=0)
        sim.set_faults(0)
        h.loop(3, advance=60)
    assert_all_out(h, positions)
    assert sim.request_counts()["faults"] > 0
    retried = [p for p in positions if p.metrics.get("exit_retries")]
    assert retried, "no sell was refused: the fault rate did not bite"


def test_mass_exit_stays_under_the_venues_rate_limits(tmp_path):
    clock = SimulatedClock(start=1_800_000_000)
    # The venue's published table, scaled down so that 20 exits press on it (keys as the sim counts them).
    limits = {"DELETE /orders": (2, 1.0), "POST /orders": (2, 1.0), "GET /data/order/{id}": (5, 1.0),
              "GET /balance-allowance": (5, 1.0), "GET /balance-allowance/update": (5, 1.0), "POST /books": (3, 1.0)}
    bot_limits = {k.replace("/{id}", ""): v for k, v in limits.items()}   # the bot names GET /data/order alike
    with SimExchange(seed=3, clock=clock) as sim:
        h = Harness(sim, tmp_path)
        h.venue = LiveVenue(sim.clob_url, private_key=h.wallet["private_key"], funder=h.wallet["address"],
                            clock=clock, rate_limits=bot_limits)
        h.bot = Bot(h.config, h.venue, MarketScanner.from_config(h.config), PositionStore(h.config.bot.positions_file),
                    clock=clock)
        positions = hold(h, 20)
        sim.set_rate_limits(limits)
        gap(h, positions)
        h.loop(3)
        assert_all_out(h, positions)
        counts = sim.request_counts()
        assert counts["rate_limited"] == 0, counts
        assert counts["by_endpoint"]["POST /orders"] == 2 and counts["by_endpoint"]["DELETE /orders"] == 1


def test_a_mass_exit_of_older_positions_reads_balances_without_refreshing_them(sim, tmp_path):
    """Past the fresh-fill window (FRESH_FILL_S) the batch reads the balance cache as it is: one balance
    request per position instead of two, and every position still ends out, nothing sold twice."""
    from bot.exits import FRESH_FILL_S

    h = Harness(sim, tmp_path)
    positions = hold(h, 6)
    h.clock.advance(FRESH_FILL_S + 1)
    h.loop()   # a quiet loop after the window
    sim.reset_request_counts()
    gap(h, positions)
    h.loop()
    assert_all_out(h, positions)
    counts = sim.request_counts()["by_endpoint"]
    assert "GET /balance-allowance/update" not in counts and counts.get("GET /balance-allowance") == 6
