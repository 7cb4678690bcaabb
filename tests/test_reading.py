"""Phase 1 of the loop (bot/reading.py): when the open-orders list is read, which bids wake the loop, and
where each book comes from with and without push feeds (a stand-in for bot/feeds.py's interface)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal as D

from bot.clock import SimulatedClock
from bot.config import BotConfig
from bot.metrics import CallMeter
from bot.position_manager import BotState, ExitMode, Position, PositionState
from bot.reading import FULL_CHECK_EVERY, POLL, PUSH, Reader, TpChecks, triggers
from bot.venue.base import Book

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def position(token="t1", mode=ExitMode.LIMIT_ORDERS, status=PositionState.OPEN, tp_order_id="0xtp", shares=D(10)):
    return Position(token_id=token, condition_id="c-" + token, exit_mode=mode, status=status, shares=shares,
                    entry_shares=shares, entry_price=D("0.5"), entry_cost=D(5), tp_price=D("0.55"),
                    sl_price=D("0.45"), tp_order_id=tp_order_id, opened_at=NOW, updated_at=NOW)


def intact_book(token="t1", bid="0.50", tp_level=D(10)):
    return Book(token, bids=((D(bid), D(100)),), asks=((D("0.55"), tp_level),))


def test_rest_only_checks_every_interval_and_relaxes_while_books_show_the_tp_intact():
    checks, p = TpChecks(30), position()
    books = {"t1": intact_book()}
    assert checks.due([p], books, 0)            # the first check is always made
    assert not checks.due([p], books, 10)       # within the interval
    assert not checks.due([p], books, 30)       # books show the TP untouched: relaxed
    assert checks.due([p], {"t1": intact_book(tp_level=D(4))}, 60)   # someone took part of the TP's level
    assert checks.due([p], books, 60 + FULL_CHECK_EVERY * 30)        # the safety net


def test_with_a_fresh_user_channel_the_list_is_read_only_when_forced_untold_or_at_the_safety_net():
    checks, p = TpChecks(30, push_interval=600), position()
    books = {"t1": intact_book()}
    assert checks.due([p], books, 0, push=True)
    assert not checks.due([p], books, 300, push=True)
    moved = {"t1": intact_book(tp_level=D(4))}
    assert not checks.due([p], moved, 330, push=True, reported={"0xtp"}), "the channel reported that fill"
    assert checks.due([p], moved, 360, push=True, reported=set()), "a fill the channel did not report"
    checks.force()
    assert checks.due([p], books, 361, push=True), "after a reconnect"
    assert not checks.due([p], books, 700, push=True)
    assert checks.due([p], books, 961, push=True)


def test_triggers_wake_on_the_stop_loss_a_watched_tp_and_any_move_of_an_exit():
    resting = position("a")
    watched = position("b", mode=ExitMode.MONITOR, tp_order_id=None)
    exiting = position("c", status=PositionState.EXITING)
    held = position("d", status=PositionState.HELD)
    out = triggers([resting, watched, exiting, held])
    assert out["a"] == (D("0.45"), None), "a resting TP is the venue's to fill"
    assert out["b"] == (D("0.45"), D("0.55"))
    assert out["c"] == (D(1), None)
    assert "d" not in out


@dataclass
class FakeFeeds:
    """The interface of bot/feeds.py the reader uses, with books that are fresh or not as a test says."""

    books: dict[str, Book] = field(default_factory=dict)
    due: list[str] = field(default_factory=list)
    verified: list[tuple[str, D | None]] = field(default_factory=list)

    def fresh(self, token):
        return token in self.books

    def book(self, token):
        return self.books.get(token)

    def seen_at(self, token):
        return 5.0

    def due_for_check(self, now):
        return list(self.due)

    def verify(self, token, book, started):
        self.verified.append((token, book.best_bid))
        return True

    def user_fresh(self):
        return False

    def user_verified(self):
        pass

    def take_changes(self):
        from types import SimpleNamespace
        return SimpleNamespace(tokens=set(), orders={}, user_reconnected=False, market_reconnected=False,
                               resolved=set())

    def order(self, order_id):
        return None


class CountingVenue:
    def __init__(self):
        self.asked: list[list[str]] = []
        self.seen: list[set[str]] = []

    def get_books(self, tokens):
        tokens = list(tokens)
        self.asked.append(tokens)
        return {t: intact_book(t, bid="0.49") for t in tokens}

    def books_seen(self, books):
        self.seen.append(set(books))

    def open_orders(self):
        return []

    def api_calls(self):
        return {}


def reader(feeds=None):
    venue = CountingVenue()
    config = BotConfig()
    state = BotState()
    return Reader(venue, config, SimulatedClock(start=10), CallMeter([venue], state), feeds), venue


def test_without_feeds_every_held_token_is_read_in_one_batch():
    r, venue = reader()
    snap = r.read([position("a"), position("b")], NOW)
    assert venue.asked == [["a", "b"]]
    assert {t: s[0] for t, s in snap.seen.items()} == {"a": POLL, "b": POLL}


def test_with_feeds_fresh_tokens_come_from_the_feed_and_only_the_stale_ones_are_read_and_verified():
    feeds = FakeFeeds(books={"a": intact_book("a", bid="0.51"), "b": intact_book("b", bid="0.51")})
    r, venue = reader(feeds)
    snap = r.read([position("a"), position("b"), position("c")], NOW)
    assert venue.asked == [["c"]], "only the stale token"
    assert snap.seen["a"][0] == PUSH and snap.books["a"].best_bid == D("0.51")
    assert snap.seen["c"][0] == POLL
    assert feeds.verified == [("c", D("0.49"))]
    assert venue.seen == [{"a", "b"}], "pushed books reach the venue (paper orders fill from them)"


def test_one_token_due_for_its_check_reads_every_held_token_in_the_same_request():
    feeds = FakeFeeds(books={"a": intact_book("a", bid="0.51"), "b": intact_book("b", bid="0.51")}, due=["b"])
    r, venue = reader(feeds)
    snap = r.read([position("a"), position("b"), position("c")], NOW)
    assert venue.asked == [["a", "b", "c"]]
    assert all(s[0] == POLL for s in snap.seen.values()) and snap.books["a"].best_bid == D("0.49"), "REST wins"
    assert [t for t, _ in feeds.verified] == ["a", "b", "c"]


def test_a_check_interval_equal_to_the_loop_is_not_skipped_by_the_loops_jitter():
    checks, p = TpChecks(1.0), position()
    moved = {"t1": intact_book(tp_level=D(4))}
    assert checks.due([p], moved, 100.000)
    assert checks.due([p], moved, 100.999), "a loop 1 ms early is still the next check"
    assert not checks.due([p], moved, 101.5)


def test_a_failed_rest_read_leaves_the_feeds_books_in_use_and_fails_the_loop_only_without_them():
    import pytest

    from bot.errors import TemporaryVenueError

    class Busy(CountingVenue):
        def get_books(self, tokens):
            raise TemporaryVenueError("429 Too Many Requests")

    feeds = FakeFeeds(books={"a": intact_book("a", bid="0.40")})
    r, _ = reader(feeds)
    r.venue = Busy()
    snap = r.read([position("a"), position("c")], NOW)
    assert snap.books["a"].best_bid == D("0.40") and snap.seen["a"][0] == PUSH and "c" not in snap.books
    r2, _ = reader()
    r2.venue = Busy()
    with pytest.raises(TemporaryVenueError):
        r2.read([position("a")], NOW)
