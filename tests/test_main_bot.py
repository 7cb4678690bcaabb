"""The loop's logic over the paper venue with scripted books (no network): routing by exit mode,
triggers, time exit under freezegun, pause on needs_attention, the A/B draw."""
from __future__ import annotations

from decimal import Decimal as D

from freezegun import freeze_time

from bot.config import BotConfig, with_overrides
from bot.position_manager import CloseReason, ExitMode, PositionState, PositionStore
from bot.scanner import Candidate
from bot.venue.base import Book, MarketInfo
from bot.venue.paper import PaperVenue
from main_bot import Bot

TOKEN = "111"
INFO = MarketInfo(TOKEN, "0xcond", D("0.01"), D("5"), False)


class Books:
    def __init__(self):
        self.set(D("0.50"))

    def set(self, mid: D):
        self.book = Book(TOKEN, bids=((mid - D("0.01"), D("500")),), asks=((mid + D("0.01"), D("500")),))

    def get_books(self, token_ids):
        return {t: self.book for t in token_ids if t == TOKEN}

    def get_market_info(self, token_id, condition_id=""):
        return INFO

    def api_calls(self):
        return {}


class OneMarket:
    """A scanner that always offers the same market (unless skipped)."""

    def api_calls(self):
        return {}

    def candidates(self, now, skip=lambda cid: False):
        if skip("0xcond"):
            return []
        return [Candidate("1", "0xcond", "Will it rain?", "rain", TOKEN, "Yes", D("0.5"), D("0.02"), D(5000),
                          D(100), D("0.01"), D(5), False, None)]


def make_bot(tmp_path, **trading):
    config = BotConfig.model_validate({
        "bot": {"positions_file": str(tmp_path / "positions.json"), "log_file": None},
        "capital": {"total": "100", "max_trade_size": "10.2", "max_positions": 1},
        "trading": {"order_check_interval_seconds": 0.001, **trading},
        "strategy": {"scan_interval_seconds": 0.001, "max_hold_hours": 24},
    })
    books = Books()
    venue = PaperVenue(books, D(100), state_file=tmp_path / "paper.json")
    return Bot(config, venue, OneMarket(), PositionStore(config.bot.positions_file)), books


def test_time_exit_counts_days_not_the_hours_field(tmp_path):
    # The seed used timedelta.hours, which is 1 for a 1-day-1-hour-old position: it would never exit.
    with freeze_time("2026-11-24 10:00:00") as frozen:
        bot, books = make_bot(tmp_path)
        bot.run_once()
        pos = bot.state.all_positions()[0]
        assert pos.status == PositionState.OPEN and pos.exit_mode == ExitMode.MONITOR
        frozen.tick(23 * 3600)
        bot.run_once()
        assert pos.status == PositionState.OPEN
        frozen.tick(2 * 3600)   # 25 h in total: timedelta(hours=25).seconds//3600 == 1, .days == 1
        bot.run_once()
        assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TIME_EXIT


def test_limit_orders_mode_rests_tp_and_watches_sl(tmp_path):
    bot, books = make_bot(tmp_path, use_concurrent_orders=True)
    bot.run_once()
    pos = bot.state.all_positions()[0]
    assert pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.tp_order_id.startswith("dry_run_")
    assert (pos.tp_price, pos.sl_price) == (D("0.57"), D("0.45"))
    books.set(D("0.46"))     # bid 0.45: the SL fires
    bot.run_once()
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert bot.state.is_blacklisted("0xcond", bot.now())
    assert bot.venue.open_orders() == []


def test_flag_change_affects_new_positions_only(tmp_path):
    bot, books = make_bot(tmp_path, use_concurrent_orders=True)
    bot.run_once()
    bot.config = with_overrides(bot.config, trading__use_concurrent_orders=False)
    books.set(D("0.52"))
    bot.run_once()
    assert bot.state.all_positions()[0].exit_mode == ExitMode.LIMIT_ORDERS


def test_shares_gone_outside_the_bot_close_the_position_at_cost_without_a_pause(tmp_path):
    with freeze_time("2026-11-24 10:00:00") as frozen:
        bot, books = make_bot(tmp_path)
        bot.run_once()
        pos = bot.state.all_positions()[0]
        bot.venue.fund(TOKEN, D(0))   # the shares vanished behind the bot's back (sold on polymarket.com)
        books.set(D("0.40"))
        for _ in range(3):   # first read as the venue's balance cache lagging: refreshed and retried
            bot.run_once()
            assert pos.status == PositionState.EXITING and not bot.state.paused
            frozen.tick(61)
        bot.run_once()
        # the position shrinks to what the account holds (nothing): closed, the gone shares booked at cost
        assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.SOLD_OUTSIDE
        assert pos.realized_pnl == 0 and not bot.state.paused   # booked at cost, its fee included
        assert "left the account outside the bot" in pos.metrics["shares_left_note"]


def test_a_lagging_balance_is_not_taken_for_missing_shares(tmp_path):
    with freeze_time("2026-11-24 10:00:00") as frozen:
        bot, books = make_bot(tmp_path)
        bot.run_once()
        pos = bot.state.all_positions()[0]
        held = bot.venue.token_balance(TOKEN)
        bot.venue.fund(TOKEN, D(0))   # the balance cache has not seen the fill yet
        books.set(D("0.40"))
        bot.run_once()
        assert pos.status == PositionState.EXITING and pos.balance_shortfalls == 1
        bot.venue.fund(TOKEN, held)   # ...and now it has
        frozen.tick(3)
        bot.run_once()
        assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
        assert not bot.state.paused


def test_ab_ratio_and_seed_make_a_reproducible_split(tmp_path):
    bot, _ = make_bot(tmp_path, ab_test_ratio=0.3, ab_test_seed=42)
    draws = [bot.manage.choose_exit_mode() for _ in range(2000)]
    share = sum(d == ExitMode.LIMIT_ORDERS for d in draws) / len(draws)
    assert 0.27 < share < 0.33
    bot2, _ = make_bot(tmp_path / "again", ab_test_ratio=0.3, ab_test_seed=42)
    assert [bot2.manage.choose_exit_mode() for _ in range(2000)] == draws


def test_loop_survives_venue_errors_and_pauses_after_repeated_failures(tmp_path):
    bot, books = make_bot(tmp_path)

    def broken(*a, **k):
        raise RuntimeError("boom")

    bot.scanner.candidates = broken
    for _ in range(5):
        bot.delay_scan(now_too=True)   # scan every time
        bot.run_guarded()
        bot.run_guarded(bot.run_events)   # what the feeds wake between loops: nothing to do, no recovery either
    assert bot.state.paused and "boom" in bot.state.pause_reason


# -- issue 10 ----------------------------------------------------------------------------------------------

import json  # noqa: E402

import pytest  # noqa: E402

from bot.clock import SimulatedClock  # noqa: E402
from bot.errors import StateFileError  # noqa: E402
from bot.position_manager import BotState, Position  # noqa: E402
from bot.report import build_report  # noqa: E402


class NoMarket:
    """A scanner that finds nothing, but asks Gamma each time (so the shared API counters move)."""

    def __init__(self):
        self.calls = 0

    def api_calls(self):
        return {"GET /markets": self.calls}

    def candidates(self, now, skip=lambda cid: False):
        self.calls += 1
        return []


class LiveLike(Books):
    """Identifies as a live venue with a wallet; any order would fail the test."""

    name = "live"
    funder = "0x" + "ab" * 20


def config_for(tmp_path, **bot):
    return BotConfig.model_validate({
        "bot": {"positions_file": str(tmp_path / "positions.json"), "log_file": None, **bot},
        "capital": {"total": "100", "max_trade_size": "10.2", "max_positions": 1},
        "strategy": {"scan_interval_seconds": 0.001},
    })


def write_positions(tmp_path, *positions: Position) -> str:
    path = tmp_path / "positions.json"
    state = BotState()
    for p in positions:
        state.add(p)
    PositionStore(path).save(state)
    return path.read_text()


def held(**kw) -> Position:
    return Position(token_id=TOKEN, condition_id="0xcond", shares=D("19.6"), entry_shares=D("19.6"),
                    entry_price=D("0.51"), entry_cost=D("9.996"), tp_price=D("0.57"), sl_price=D("0.45"), **kw)


def test_a_paper_position_is_never_managed_by_a_live_run(tmp_path):
    # Rule 6: dry-run positions left in positions.json were taken as real after bot.dry_run: false.
    text = write_positions(tmp_path, held(id="paper1", venue="paper"))
    with pytest.raises(StateFileError) as err:
        Bot(config_for(tmp_path, dry_run=False), LiveLike(), NoMarket(), PositionStore(tmp_path / "positions.json"))
    msg = str(err.value)
    assert "id paper1" in msg and "paper orders (dry-run)" in msg and f"wallet {LiveLike.funder}" in msg
    assert "move" in msg and "--dry-run" in msg
    assert (tmp_path / "positions.json").read_text() == text


def test_live_positions_of_another_wallet_or_in_a_dry_run_are_refused(tmp_path):
    write_positions(tmp_path, held(id="live1", venue="live", wallet="0x" + "cd" * 20))
    with pytest.raises(StateFileError, match=r"id live1.*run with the wallet that holds them"):
        Bot(config_for(tmp_path), LiveLike(), NoMarket(), PositionStore(tmp_path / "positions.json"))
    with pytest.raises(StateFileError, match=r"id live1.*this run trades paper orders.*bot.dry_run: false"):
        Bot(config_for(tmp_path), PaperVenue(Books(), D(100)), NoMarket(), PositionStore(tmp_path / "positions.json"))
    # the same wallet, spelled in another case, is the same venue
    write_positions(tmp_path, held(id="live1", venue="live", wallet=LiveLike.funder.upper().replace("0X", "0x")))
    Bot(config_for(tmp_path), LiveLike(), NoMarket(), PositionStore(tmp_path / "positions.json"))


def test_positions_record_their_venue_and_older_files_get_it_on_first_save(tmp_path):
    write_positions(tmp_path, held(id="old1"))   # a file from before the field: no venue recorded
    bot = Bot(config_for(tmp_path), LiveLike(), NoMarket(), PositionStore(tmp_path / "positions.json"))
    bot.save()
    saved = json.loads((tmp_path / "positions.json").read_text())["positions"][0]
    assert (saved["venue"], saved["wallet"]) == ("live", LiveLike.funder)
    paper, _ = make_bot(tmp_path / "paper")
    paper.run_once()   # opens a paper position
    saved = json.loads((tmp_path / "paper" / "positions.json").read_text())["positions"][0]
    assert (saved["venue"], saved["wallet"]) == ("paper", None)


def test_the_metrics_the_report_needs_survive_a_restart(tmp_path):
    # Rule 7: BotState.to_dict put the live counters dict into the saved snapshot, so the "unchanged" check
    # compared it with itself and counters were never written on their own.
    clock = SimulatedClock()
    config = config_for(tmp_path, loop_interval_seconds=30)
    bot = Bot(config, PaperVenue(Books(), D(100)), NoMarket(), PositionStore(config.bot.positions_file), clock=clock)
    assert bot.run(loops=6) == 0
    report = build_report(bot.state)
    reloaded = PositionStore(config.bot.positions_file).load()
    assert reloaded.counters["run_seconds"] == 150 == bot.state.counters["run_seconds"]
    assert reloaded.counters == bot.state.counters and build_report(reloaded) == report
    assert report["hours_running"] > 0 and report["shared_api_calls"] == 6   # one Gamma scan per loop


def test_a_state_file_that_cannot_be_written_stops_the_loop_with_its_name(tmp_path):
    bot, _ = make_bot(tmp_path)
    bot.run_once()
    (tmp_path / "positions.json.tmp").mkdir()   # as with a read-only file system
    bot.state.pause("x")
    with pytest.raises(StateFileError, match="positions.json: cannot be written"):
        bot.run(loops=1)


class ManyMarkets:
    """A scanner offering several markets, best first, each with its own scripted book."""

    def __init__(self, books: dict[str, Book]):
        self.books = books
        self.info_reads: list[str] = []

    def api_calls(self):
        return {}

    def candidates(self, now, skip=lambda cid: False):
        return [Candidate(str(i), f"0xcond{t}", f"Market {t}", f"m{t}", t, "Yes", D("0.5"), D("0.02"), D(5000),
                          D(100), D("0.01"), D(5), False, None)
                for i, t in enumerate(self.books) if not skip(f"0xcond{t}")]

    def get_books(self, token_ids):
        return {t: self.books[t] for t in token_ids if t in self.books}

    def get_market_info(self, token_id, condition_id=""):
        self.info_reads.append(token_id)
        return MarketInfo(token_id, condition_id, D("0.01"), D("5"), False)


def book(bid: str, ask: str) -> Book:
    return Book("x", bids=((D(bid), D("500")),), asks=((D(ask), D("500")),))


def bot_over(tmp_path, markets: ManyMarkets, **strategy):
    config = BotConfig.model_validate({
        "bot": {"positions_file": str(tmp_path / "positions.json"), "log_file": None},
        "capital": {"total": "100", "max_trade_size": "10", "max_positions": 3},
        "strategy": {"scan_interval_seconds": 0.001, "min_price": "0.01", "max_price": "0.99", **strategy},
    })
    venue = PaperVenue(markets, D(100), state_file=tmp_path / "paper.json")
    return Bot(config, venue, markets, PositionStore(config.bot.positions_file))


def test_a_market_skipped_before_any_order_writes_nothing_and_the_next_candidate_is_bought(tmp_path, caplog):
    # best first: a book whose SL (0.19) is above its bid, a 0.98 ask whose TP can only be 0.99, then a good one
    markets = ManyMarkets({"A": book("0.18", "0.22"), "B": book("0.97", "0.98"), "C": book("0.50", "0.51")})
    bot = bot_over(tmp_path, markets)
    with caplog.at_level("INFO", logger="bot"):
        assert bot._place_new_trade(bot.now())
    pos = only_position(bot)
    assert pos.token_id == "C" and pos.status == PositionState.OPEN
    assert [p.token_id for p in PositionStore(bot.config.bot.positions_file).load().all_positions()] == ["C"]
    assert "Skipping Market A: its stop-loss 0.19 is at or above the best bid 0.18" in caplog.text
    assert "Skipping Market B:" in caplog.text
    assert bot.venue.open_orders() == [] and bot.venue.token_balance("A") == 0 == bot.venue.token_balance("B")


def test_a_scan_tries_a_bounded_number_of_candidates(tmp_path):
    from bot.manage import MAX_CANDIDATES_PER_SCAN
    markets = ManyMarkets({f"T{i}": book("0.18", "0.22") for i in range(MAX_CANDIDATES_PER_SCAN + 3)})
    bot = bot_over(tmp_path, markets)
    assert not bot._place_new_trade(bot.now())
    assert bot.state.all_positions() == [] and len(markets.info_reads) == MAX_CANDIDATES_PER_SCAN
    assert not PositionStore(bot.config.bot.positions_file).load().all_positions()


def only_position(bot):
    assert len(bot.state.all_positions()) == 1, bot.state.all_positions()
    return bot.state.all_positions()[0]


def test_feeds_are_built_only_when_enabled_and_a_paper_venue_gets_no_user_channel(tmp_path):
    from bot.cli import make_bot as build
    from bot.feeds import Feeds

    bot, _ = make_bot(tmp_path)
    on = build(Bot, bot.config, bot.venue, PositionStore(tmp_path / "a.json"))
    assert isinstance(on.feeds, Feeds) and on.reader.feeds is on.feeds
    assert on.venue.feed_credentials() is None and on.feeds.stats()["user_connected"] is False
    off = build(Bot, with_overrides(bot.config, feeds__enabled=False), bot.venue, PositionStore(tmp_path / "b.json"))
    assert off.feeds is None and off.reader.feeds is None, "feeds.enabled false: the REST-only loop of before"
    assert build(Bot, bot.config, bot.venue, PositionStore(tmp_path / "c.json"), feeds=False).feeds is None
