"""The loop's logic over the paper venue with scripted books (no network): routing by exit mode,
triggers, time exit under freezegun, pause on needs_attention, the A/B draw."""
from __future__ import annotations

from decimal import Decimal as D

from freezegun import freeze_time

from bot.config import BotConfig
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
        pos = bot.state.positions[0]
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
    pos = bot.state.positions[0]
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
    bot.config.trading.use_concurrent_orders = False
    books.set(D("0.52"))
    bot.run_once()
    assert bot.state.positions[0].exit_mode == ExitMode.LIMIT_ORDERS


def test_account_short_of_shares_needs_attention_and_pauses(tmp_path):
    with freeze_time("2026-11-24 10:00:00") as frozen:
        bot, books = make_bot(tmp_path)
        bot.run_once()
        pos = bot.state.positions[0]
        bot.venue._tokens[TOKEN] = D(0)   # the shares vanished behind the bot's back
        books.set(D("0.40"))
        for _ in range(3):   # first read as the venue's balance cache lagging: refreshed and retried
            bot.run_once()
            assert pos.status == PositionState.EXITING and not bot.state.paused
            frozen.tick(61)
        bot.run_once()
        assert pos.status == PositionState.NEEDS_ATTENTION and "account holds 0" in pos.attention_reason
        assert bot.state.paused and "needs attention" in bot.state.pause_reason
        # a paused bot opens nothing new even with a free slot
        assert len(bot.state.positions) == 1


def test_a_lagging_balance_is_not_taken_for_missing_shares(tmp_path):
    with freeze_time("2026-11-24 10:00:00") as frozen:
        bot, books = make_bot(tmp_path)
        bot.run_once()
        pos = bot.state.positions[0]
        held = bot.venue._tokens[TOKEN]
        bot.venue._tokens[TOKEN] = D(0)   # the balance cache has not seen the fill yet
        books.set(D("0.40"))
        bot.run_once()
        assert pos.status == PositionState.EXITING and pos.metrics["balance_shortfalls"] == 1
        bot.venue._tokens[TOKEN] = held   # ...and now it has
        frozen.tick(3)
        bot.run_once()
        assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
        assert not bot.state.paused


def test_ab_ratio_and_seed_make_a_reproducible_split(tmp_path):
    bot, _ = make_bot(tmp_path, ab_test_ratio=0.3, ab_test_seed=42)
    draws = [bot._choose_exit_mode() for _ in range(2000)]
    share = sum(d == ExitMode.LIMIT_ORDERS for d in draws) / len(draws)
    assert 0.27 < share < 0.33
    bot2, _ = make_bot(tmp_path / "again", ab_test_ratio=0.3, ab_test_seed=42)
    assert [bot2._choose_exit_mode() for _ in range(2000)] == draws


def test_loop_survives_venue_errors_and_pauses_after_repeated_failures(tmp_path):
    bot, books = make_bot(tmp_path)

    def broken(*a, **k):
        raise RuntimeError("boom")

    bot.scanner.candidates = broken
    for _ in range(5):
        bot._last_scan = None   # scan every time
        bot._run_guarded()
    assert bot.state.paused and "boom" in bot.state.pause_reason


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
    assert [p.token_id for p in PositionStore(bot.config.bot.positions_file).load().positions] == ["C"]
    assert "Skipping Market A: its stop-loss 0.19 is at or above the best bid 0.18" in caplog.text
    assert "Skipping Market B:" in caplog.text
    assert bot.venue.open_orders() == [] and bot.venue.token_balance("A") == 0 == bot.venue.token_balance("B")


def test_a_scan_tries_a_bounded_number_of_candidates(tmp_path):
    from main_bot import MAX_CANDIDATES_PER_SCAN
    markets = ManyMarkets({f"T{i}": book("0.18", "0.22") for i in range(MAX_CANDIDATES_PER_SCAN + 3)})
    bot = bot_over(tmp_path, markets)
    assert not bot._place_new_trade(bot.now())
    assert bot.state.positions == [] and len(markets.info_reads) == MAX_CANDIDATES_PER_SCAN
    assert not PositionStore(bot.config.bot.positions_file).load().positions


def only_position(bot):
    assert len(bot.state.positions) == 1, bot.state.positions
    return bot.state.positions[0]
