"""The exit protocol over the paper venue with scripted books: floors, dust, backoff, lost answers."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from bot.errors import UnknownOutcome
from bot.exits import ExitProtocol
from bot.orders import Role
from bot.position_manager import CloseReason, Position, PositionState
from bot.trader import Trader
from bot.venue.base import Book
from bot.venue.paper import PaperVenue
from tests.test_main_bot import TOKEN, Books

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def setup(tmp_path, shares="20"):
    books = Books()
    venue = PaperVenue(books, D(100), state_file=tmp_path / "paper.json")
    venue.fund(TOKEN, D(shares))
    saves = []
    exits = ExitProtocol(Trader(venue), lambda: saves.append(1), D("0.10"))
    pos = Position(token_id=TOKEN, shares=D(shares), entry_shares=D(shares), entry_price=D("0.5"),
                   entry_cost=D("0.5") * D(shares), tp_price=D("0.55"), sl_price=D("0.45"), opened_at=NOW,
                   updated_at=NOW)
    return books, venue, exits, pos, saves


def test_a_collapsed_book_is_not_chased_below_the_floor(tmp_path):
    books, venue, exits, pos, saves = setup(tmp_path)
    trigger = Book(TOKEN, bids=((D("0.45"), D(500)),), asks=((D("0.47"), D(500)),))
    books.book = Book(TOKEN, bids=((D("0.30"), D(500)),), asks=((D("0.32"), D(500)),))   # gone by the sale
    exits.start(pos, CloseReason.STOP_LOSS, trigger, NOW)
    assert pos.status == PositionState.EXITING and pos.sold_shares == 0   # floor 0.40: held, not dumped
    assert pos.metrics["exit_rejected"] == 1 and venue.token_balance(TOKEN) == 20   # FAK found no bid >= 0.40
    books.set(D("0.43"))   # back above the floor (bid 0.42), after the backoff
    exits.resume(pos, books.book, NOW + timedelta(seconds=1))
    assert pos.status == PositionState.EXITING   # still backing off
    exits.resume(pos, books.book, NOW + timedelta(seconds=3))
    assert pos.status == PositionState.CLOSED and pos.exit_price == D("0.42")


def test_dust_below_every_minimum_is_held_to_resolution(tmp_path):
    books, venue, exits, pos, saves = setup(tmp_path, shares="1.5")
    books.set(D("0.46"))   # 1.5 shares at 0.45 = $0.68: below $1 and below 5 shares
    exits.start(pos, CloseReason.STOP_LOSS, books.book, NOW)
    # still a position: held to the market's resolution, watched, its payout booked then (not a closed loss)
    assert pos.status == PositionState.HELD and pos.is_active and pos.shares == D("1.5")
    assert pos.realized_pnl is None and venue.token_balance(TOKEN) == D("1.5")


def test_every_step_is_saved_before_the_next(tmp_path):
    books, venue, exits, pos, saves = setup(tmp_path)
    books.set(D("0.44"))
    exits.start(pos, CloseReason.STOP_LOSS, books.book, NOW)
    assert pos.status == PositionState.CLOSED and len(saves) >= 3   # exiting, sell intent, closed


def test_a_lost_sell_answer_is_recovered_from_the_trades(tmp_path):
    books, venue, exits, pos, saves = setup(tmp_path)
    books.set(D("0.44"))
    real_sell = venue.market_sell

    def sell_then_lose_the_answer(*args, **kwargs):
        real_sell(*args, **kwargs)
        raise UnknownOutcome("timeout", endpoint="POST /order")

    venue.market_sell = sell_then_lose_the_answer
    exits.start(pos, CloseReason.STOP_LOSS, books.book, NOW)
    assert pos.status == PositionState.EXITING and pos.pending.role == Role.EXIT and pos.pending.order_id
    venue.market_sell = real_sell
    exits.resume(pos, books.book, NOW + timedelta(seconds=5))
    assert pos.status == PositionState.CLOSED and pos.sold_shares == 20 and pos.exit_price == D("0.43")


def test_a_bid_seen_below_the_floor_holds_without_sending(tmp_path):
    books, venue, exits, pos, saves = setup(tmp_path)
    pos.trigger_bid = D("0.45")
    pos.status = PositionState.EXITING   # set up directly: the bot only ever moves it through apply
    pos.close_reason = CloseReason.STOP_LOSS
    # floor 0.40; a bid within one slippage step below it (0.36 <= bid < 0.40) is waited out
    books.book = Book(TOKEN, bids=((D("0.38"), D(500)),), asks=((D("0.40"), D(500)),))
    calls_before = len([o for o in venue.orders() if o.side == "SELL"])
    exits.resume(pos, books.book, NOW)
    assert pos.metrics["exit_below_floor"] == 1 and pos.status == PositionState.EXITING
    assert len([o for o in venue.orders() if o.side == "SELL"]) == calls_before   # nothing sent


def test_an_exit_held_below_its_floor_still_stops_the_loss(tmp_path):
    """Rule 13: a monitored TP triggered at 0.47 (floor 0.42) whose sell failed is not held forever while
    the bid falls through its stop-loss (0.45): the floor re-anchors at the new trigger, and it sells."""
    books, venue, exits, pos, saves = setup(tmp_path)
    alerts = []
    exits.alert = lambda event, message: alerts.append(event)
    pos.trigger_bid, pos.retry_at = D("0.47"), (NOW + timedelta(seconds=30)).timestamp()
    pos.status, pos.close_reason = PositionState.EXITING, CloseReason.TAKE_PROFIT
    books.set(D("0.41"))   # bid 0.40: below the floor 0.42 and at or under the SL 0.45, while backing off
    exits.resume(pos, books.book, NOW)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert pos.sold_shares == 20 and pos.exit_price == D("0.40") and alerts == ["exit_reanchored"]


def test_a_further_slippage_step_below_the_floor_re_anchors(tmp_path):
    books, venue, exits, pos, saves = setup(tmp_path)
    pos.trigger_bid = D("0.45")
    pos.status, pos.close_reason = PositionState.EXITING, CloseReason.STOP_LOSS
    books.book = Book(TOKEN, bids=((D("0.30"), D(500)),), asks=((D("0.32"), D(500)),))   # floor 0.40, 0.36
    exits.resume(pos, books.book, NOW)
    assert pos.status == PositionState.CLOSED and pos.exit_price == D("0.30")
    assert pos.trigger_bid == D("0.30") and pos.metrics["exit_reanchored"] == 1


def test_a_lost_sale_is_not_confused_with_another_positions_sale(tmp_path):
    books, venue, exits, _, saves = setup(tmp_path, shares="40")
    first = Position(token_id=TOKEN, shares=D(20), entry_price=D("0.5"), entry_cost=D(10), tp_price=D("0.55"),
                     sl_price=D("0.45"), opened_at=NOW, updated_at=NOW)
    books.set(D("0.44"))
    exits.start(first, CloseReason.STOP_LOSS, books.book, NOW)           # sells 20 and records the order
    assert first.status == PositionState.CLOSED and len(first.exit_order_ids) == 1
    second = Position(token_id=TOKEN, shares=D(20), entry_shares=D(20), entry_price=D("0.5"), entry_cost=D(10),
                      status=PositionState.EXITING, close_reason=CloseReason.STOP_LOSS, opened_at=NOW, updated_at=NOW,
                      pending={"kind": "exit_sell", "since": NOW.timestamp(), "size": "20"},
                      trigger_bid=D("0.43"))   # died before its own sale was signed (schema 2's pending)
    exits.resume(second, books.book, NOW + timedelta(seconds=1))
    assert second.exit_order_ids and second.exit_order_ids[0] not in first.exit_order_ids
    assert second.sold_shares == 20 and venue.token_balance(TOKEN) == 0   # it really sold its own 20
