"""The replay's data part (bot/replay/history.py): resolved markets from Gamma, the downloader and its cache.

Unit tests drive ``download`` with a fake venue that answers from hand-made paths and records every window it is
asked (and refuses one over 15 days, as the venue does: FACTS.md Part 0, 0.7); the end-to-end test runs the bot's
real ``LiveVenue`` and ``closed_markets`` over HTTP against bot/sim. Times are built from a fixed base (or the sim's
simulated clock), never from today's date."""
from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.clock import SimulatedClock
from bot.config import StrategySection
from bot.errors import OrderRejected, TemporaryVenueError
from bot.replay.history import (
    MAX_WINDOW_S,
    CacheCorrupt,
    CacheMissing,
    ClosedMarket,
    History,
    HistoryCache,
    closed_markets,
    download,
    history_windows,
    load,
)
from bot.sim import SimExchange
from bot.venue.live import LiveVenue

DAY = 86400
HOUR = 3600
BASE = 1_700_002_800          # a fixed whole hour (2023-11-14 23:00 UTC)
NOW = BASE + 90 * DAY         # the fake venue's clock: every window below is in its past


@dataclass(frozen=True)
class Market:
    market_id: str
    slug: str
    token_ids: tuple[str, ...]


class FakeVenue:
    """Answers GET /prices-history from ``paths`` (token -> [(t, price)]): the points in [start, end], as the venue
    sends them. Records each request; refuses a window over 15 days as the venue does; ``refuse``: tokens it answers
    with a temporary error (after its own retries)."""

    def __init__(self, paths: dict[str, list[tuple[int, D]]], now: int = NOW, refuse: tuple[str, ...] = ()):
        self.paths = paths
        self.clock = SimulatedClock(now)
        self.calls: list[tuple[str, int, int, int]] = []
        self.refuse = set(refuse)

    def prices_history(self, token_id, start_ts, end_ts, fidelity_min):
        self.calls.append((token_id, start_ts, end_ts, fidelity_min))
        if end_ts - start_ts > MAX_WINDOW_S:
            raise OrderRejected("'startTs' and 'endTs' interval is too long", endpoint="GET /prices-history",
                                status=400)
        if token_id in self.refuse:
            raise TemporaryVenueError("Too Many Requests", endpoint="GET /prices-history", status=429)
        return [(t, p) for t, p in self.paths.get(token_id, []) if start_ts <= t <= end_ts]


def hourly(token_seed: int, start: int, end: int) -> list[tuple[int, D]]:
    """A hand-made hourly path over [start, end]."""
    rng = random.Random(token_seed)
    return [(t, D(rng.randint(5, 95)) / 100) for t in range(start, end + 1, HOUR)]


def in_window(path, start, end):
    return [(t, p) for t, p in path if start <= t <= end]


# -- windows ------------------------------------------------------------------------------------------------------

def test_history_windows_cover_the_span_in_pieces_of_at_most_15_days():
    rng = random.Random(4)
    for _ in range(200):
        start = BASE + rng.randint(0, 10 * DAY)
        end = start + rng.choice([0, 1, MAX_WINDOW_S - 1, MAX_WINDOW_S, MAX_WINDOW_S + 1, rng.randint(0, 100 * DAY)])
        windows = history_windows(start, end)
        assert windows[0][0] == start and windows[-1][1] == end
        assert all(0 <= b - a <= MAX_WINDOW_S for a, b in windows)
        assert all(prev[1] == nxt[0] for prev, nxt in zip(windows, windows[1:], strict=False))
        assert len(windows) == max(1, -(-(end - start) // MAX_WINDOW_S))
    with pytest.raises(ValueError, match="before it starts"):
        history_windows(BASE, BASE - 1)


def test_download_asks_each_token_in_windows_of_at_most_15_days(tmp_path):
    market = Market("1", "one", ("tok-a", "tok-b"))
    since, until = BASE, BASE + 40 * DAY
    venue = FakeVenue({t: hourly(i, since, until) for i, t in enumerate(market.token_ids)})
    report = download(venue, [market], since, until, 60, tmp_path)
    w = MAX_WINDOW_S
    want = [(since, since + w), (since + w, since + 2 * w), (since + 2 * w, until)]
    assert venue.calls == [(tok, a, b, 60) for tok in market.token_ids for a, b in want]
    assert report.requests == len(venue.calls) and report.downloaded == list(market.token_ids)
    assert report.markets == [market] and not report.skipped


def test_points_are_concatenated_and_deduplicated_by_timestamp(tmp_path):
    since, until = BASE, BASE + 31 * DAY
    path = hourly(7, since, until)   # its points fall on both ends of each window: asked twice
    venue = FakeVenue({"tok": path + path[:50]})   # and the venue repeats some points
    download(venue, [Market("1", "one", ("tok",))], since, until, 60, tmp_path)
    history = load(tmp_path, "tok", 60)
    assert history.points() == sorted(set(path))
    assert len(set(history.times)) == len(history.times) == len(path)
    assert (history.start, history.end, history.fetched_at) == (since, until, NOW)


def test_a_second_download_is_served_from_the_cache_with_zero_calls(tmp_path):
    since, until = BASE, BASE + 20 * DAY
    market = Market("1", "one", ("tok-a", "tok-b"))
    venue = FakeVenue({t: hourly(i, since, until) for i, t in enumerate(market.token_ids)})
    first = download(venue, [market], since, until, 60, tmp_path)
    loaded = [load(tmp_path, t, 60) for t in market.token_ids]
    venue.calls.clear()
    second = download(venue, [market], since, until, 60, tmp_path)
    assert venue.calls == [] and second.requests == 0
    assert second.cached == list(market.token_ids) and second.downloaded == [] and second.markets == [market]
    assert first.downloaded == list(market.token_ids)
    assert [load(tmp_path, t, 60) for t in market.token_ids] == loaded
    # A narrower window inside the cached one is a hit too; another fidelity is another file.
    download(venue, [market], since + DAY, until - DAY, 60, tmp_path)
    assert venue.calls == []
    download(venue, [market], since, until, 5, tmp_path)
    assert {c[3] for c in venue.calls} == {5}


def test_a_wider_window_asks_only_for_what_the_cache_lacks(tmp_path):
    path = hourly(3, BASE - 10 * DAY, BASE + 30 * DAY)
    venue = FakeVenue({"tok": path})
    market = Market("1", "one", ("tok",))
    download(venue, [market], BASE, BASE + 10 * DAY, 60, tmp_path)
    venue.calls.clear()
    download(venue, [market], BASE - 5 * DAY, BASE + 20 * DAY, 60, tmp_path)
    assert venue.calls == [("tok", BASE - 5 * DAY, BASE, 60), ("tok", BASE + 10 * DAY, BASE + 20 * DAY, 60)]
    history = load(tmp_path, "tok", 60)
    assert (history.start, history.end) == (BASE - 5 * DAY, BASE + 20 * DAY)
    assert history.points() == in_window(path, BASE - 5 * DAY, BASE + 20 * DAY)


def test_the_window_stops_at_the_clocks_now(tmp_path):
    now = BASE + 3 * DAY
    path = hourly(5, BASE, now)
    venue = FakeVenue({"tok": path}, now=now)
    download(venue, [Market("1", "one", ("tok",))], BASE, BASE + 20 * DAY, 60, tmp_path)
    assert venue.calls == [("tok", BASE, now, 60)]
    assert load(tmp_path, "tok", 60).end == now
    venue.clock.advance(DAY)   # a day later, only that day is asked
    venue.paths["tok"] = hourly(5, BASE, now + DAY)
    venue.calls.clear()
    download(venue, [Market("1", "one", ("tok",))], BASE, BASE + 20 * DAY, 60, tmp_path)
    assert venue.calls == [("tok", now, now + DAY, 60)]
    with pytest.raises(ValueError, match="nothing to download"):
        download(venue, [], now + 2 * DAY, now + 3 * DAY, 60, tmp_path)


# -- a damaged cache ----------------------------------------------------------------------------------------------

def test_a_cut_file_is_reported_and_downloaded_again(tmp_path, caplog):
    since, until = BASE, BASE + 5 * DAY
    path = hourly(9, since, until)
    venue = FakeVenue({"tok": path})
    market = Market("1", "one", ("tok",))
    download(venue, [market], since, until, 60, tmp_path)
    file = HistoryCache(tmp_path).path("tok", 60)
    text = file.read_text()
    file.write_text(text[: len(text) // 2])
    with pytest.raises(CacheCorrupt) as damaged:
        load(tmp_path, "tok", 60)
    assert str(file) in str(damaged.value) and "cut short" in str(damaged.value) and damaged.value.path == file
    venue.calls.clear()
    with caplog.at_level(logging.ERROR, logger="bot.replay.history"):
        report = download(venue, [market], since, until, 60, tmp_path)
    assert venue.calls == [("tok", since, until, 60)]
    assert str(file) in report.repaired["tok"]
    assert any(str(file) in r.getMessage() and "downloading it again" in r.getMessage() for r in caplog.records)
    assert load(tmp_path, "tok", 60).points() == path


@pytest.mark.parametrize("damage, words", [
    (lambda body: "not json at all", "not valid JSON"),
    (lambda body: json.dumps({**body, "format": "other"}), "not a bot-price-history file"),
    (lambda body: json.dumps({**body, "token": "someone-else"}), "holds token 'someone-else'"),
    (lambda body: json.dumps({**body, "points": body["points"] + 1}), "the header says"),
    (lambda body: json.dumps({**body, "t": [body["t"][0], -5] + body["t"][2:]}), "strictly ascending"),
    (lambda body: json.dumps({**body, "p": ["x"] + body["p"][1:]}), "not a decimal string in [0, 1]"),
    (lambda body: json.dumps({**body, "p": ["1.5"] + body["p"][1:]}), "not a decimal string in [0, 1]"),
    (lambda body: json.dumps({k: v for k, v in body.items() if k != "end"}), "header lacks"),
])
def test_an_unusable_file_is_named_with_what_is_wrong(tmp_path, damage, words):
    cache = HistoryCache(tmp_path)
    path = hourly(2, BASE, BASE + DAY)
    cache.write(History("tok", 60, BASE, BASE + DAY, NOW, [t for t, _ in path], [p for _, p in path]))
    file = cache.path("tok", 60)
    file.write_text(damage(json.loads(file.read_text())))
    with pytest.raises(CacheCorrupt) as damaged:
        load(cache, "tok", 60)
    assert str(file) in str(damaged.value) and words in str(damaged.value)


def test_a_missing_file_says_which_and_what_to_do(tmp_path):
    with pytest.raises(CacheMissing) as missing:
        load(tmp_path, "tok", 1)
    assert str(HistoryCache(tmp_path).path("tok", 1)) in str(missing.value) and "download" in str(missing.value)


def test_writes_are_atomic(tmp_path, monkeypatch):
    cache = HistoryCache(tmp_path)
    old = History("tok", 60, BASE, BASE + HOUR, NOW, [BASE, BASE + HOUR], [D("0.4"), D("0.5")])
    cache.write(old)

    def crash(*args):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        cache.write(History("tok", 60, BASE, BASE + 2 * HOUR, NOW, [BASE], [D("0.9")]))
    assert cache.read("tok", 60) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache.path("tok", 60).name]   # no temporary file left


def test_odd_token_ids_get_safe_file_names(tmp_path):
    cache = HistoryCache(tmp_path)
    cache.write(History("../../etc/passwd", 1, BASE, BASE, NOW, [BASE], [D("0.5")]))
    assert [p.parent for p in tmp_path.iterdir()] == [tmp_path]
    assert cache.read("../../etc/passwd", 1).prices == [D("0.5")]


# -- what the data holds ------------------------------------------------------------------------------------------

def test_a_token_that_never_traded_is_cached_as_empty_and_its_market_skipped(tmp_path, caplog):
    since, until = BASE, BASE + 20 * DAY
    dead = Market("2", "dead-market", ("dead-yes", "dead-no"))
    live = Market("1", "live-market", ("live-yes", "live-no"))
    venue = FakeVenue({"live-yes": hourly(1, since, until), "live-no": hourly(2, since, until)})
    with caplog.at_level(logging.INFO, logger="bot.replay.history"):
        report = download(venue, [dead, live], since, until, 60, tmp_path)
    assert report.markets == [live] and report.empty == ["dead-yes", "dead-no"]
    assert "dead-market" in report.skipped["2"] and "no price history" in report.skipped["2"]
    assert any("dead-market" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    empty = load(tmp_path, "dead-yes", 60)
    assert empty.empty and len(empty) == 0 and (empty.start, empty.end) == (since, until)
    assert empty.price_at(until) is None
    venue.calls.clear()
    again = download(venue, [dead, live], since, until, 60, tmp_path)   # recorded as such: not asked again
    assert venue.calls == [] and again.skipped == report.skipped


def test_gaps_are_kept_as_gaps_and_reported(tmp_path, caplog):
    since, until = BASE, BASE + 4 * DAY
    hole = (BASE + DAY + 5 * HOUR, BASE + DAY + 9 * HOUR)   # four hourly points missing inside
    path = [(t, p) for t, p in hourly(6, since, until) if not hole[0] < t < hole[1]]
    venue = FakeVenue({"tok": path})
    with caplog.at_level(logging.WARNING, logger="bot.replay.history"):
        report = download(venue, [Market("1", "one", ("tok",))], since, until, 60, tmp_path)
        history = load(tmp_path, "tok", 60)
    assert history.gaps == [hole]
    assert history.points() == path   # nothing filled in
    assert history.price_at(hole[0] + HOUR) == dict(path)[hole[0]]   # the last price before the gap, if asked
    assert any("1 gap(s)" in m and "tok" in m for m in report.messages)
    assert sum("1 gap(s)" in r.getMessage() for r in caplog.records) == 2   # once downloading, once loading


def test_a_token_the_venue_refuses_is_not_cached_and_its_market_skipped(tmp_path):
    since, until = BASE, BASE + 2 * DAY
    good = Market("1", "good", ("g-yes", "g-no"))
    bad = Market("2", "bad", ("b-yes", "b-no"))
    paths = {t: hourly(i, since, until) for i, t in enumerate(good.token_ids + bad.token_ids)}
    venue = FakeVenue(paths, refuse=("b-no",))
    report = download(venue, [good, bad], since, until, 60, tmp_path)
    assert report.markets == [good] and "b-no" in report.failed and "bad" in report.skipped["2"]
    assert not HistoryCache(tmp_path).path("b-no", 60).exists()
    venue.refuse.clear()
    venue.calls.clear()
    report = download(venue, [good, bad], since, until, 60, tmp_path)   # asked again, and only it
    assert [c[0] for c in venue.calls] == ["b-no"] and report.markets == [good, bad]


def test_progress_reports_every_token(tmp_path):
    markets = [Market(str(i), f"m{i}", (f"{i}-yes", f"{i}-no")) for i in range(3)]
    venue = FakeVenue({t: hourly(1, BASE, BASE + DAY) for m in markets for t in m.token_ids})
    seen: list[tuple[int, int]] = []
    download(venue, markets, BASE, BASE + DAY, 60, tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(k, 6) for k in range(7)]


def test_twenty_tokens_of_30_days_at_one_minute_load_fast(tmp_path):
    cache = HistoryCache(tmp_path)
    rng = random.Random(11)
    n = 30 * 1440
    for k in range(20):
        prices = [D(rng.randint(1, 99)) / 100 for _ in range(n)]
        cache.write(History(f"tok{k}", 1, BASE, BASE + n * 60, NOW, list(range(BASE, BASE + n * 60, 60)), prices))
    started = time.perf_counter()
    loaded = [load(cache, f"tok{k}", 1) for k in range(20)]
    seconds = time.perf_counter() - started
    assert sum(len(h) for h in loaded) == 20 * n and not any(h.gaps for h in loaded)
    assert seconds < 2.0, f"loading 20 x {n} points took {seconds:.2f} s"


# -- resolved markets from Gamma ----------------------------------------------------------------------------------

def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ctf_id(seed: int) -> str:
    return str(random.Random(seed).getrandbits(250) | (1 << 250))   # CTF-shaped (never a V2 position id)


def gamma_market(mid: int, end: int, prices=("1", "0"), version: str | None = "v1", volume=1000.0,
                 outcomes=("Yes", "No"), order_book=True) -> dict:
    tokens = [ctf_id(mid * 10 + k) for k in range(len(outcomes))]
    return {"id": str(mid), "slug": f"market-{mid}", "question": f"Market {mid}?", "conditionId": f"0x{mid:064x}",
            "closed": True, "active": True, "enableOrderBook": order_book, "endDate": iso(end),
            "closedTime": datetime.fromtimestamp(end + HOUR, tz=UTC).strftime("%Y-%m-%d %H:%M:%S+00"),
            "outcomes": json.dumps(list(outcomes)), "outcomePrices": json.dumps(list(prices)),
            "clobTokenIds": json.dumps(tokens), "volumeNum": volume, **({"version": version} if version else {})}


class FakeGamma:
    """A requests.Session stand-in serving a list of Gamma markets, paged by limit/offset; records the queries."""

    def __init__(self, markets: list[dict]):
        self.markets = markets
        self.queries: list[dict] = []

    def get(self, url, params=None, timeout=None):
        self.queries.append(dict(params or {}))
        found = [m for m in self.markets if "slug" not in params or m["slug"] == params["slug"]]
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100))
        return _Response(found[offset:offset + limit])


class _Response:
    status_code = 200
    text = ""

    def __init__(self, data):
        self._data = data

    def json(self):
        return self._data


def test_closed_markets_keeps_resolved_binary_markets_the_scanners_way(caplog):
    since, until = BASE, BASE + 30 * DAY
    inside = BASE + 10 * DAY
    markets = [
        gamma_market(1, inside),                                       # kept: Yes paid 1
        gamma_market(2, inside, prices=("0", "1")),                   # kept: No paid 1
        gamma_market(3, inside, prices=("0.5", "0.5")),               # kept: a 50-50 resolution
        gamma_market(4, inside, prices=("0.997", "0.003")),           # closed, not resolved yet
        gamma_market(5, inside, version=None),                        # no version: the scanner skips it
        gamma_market(6, inside, outcomes=("A", "B", "C"), prices=("1", "0", "0")),   # not binary
        gamma_market(7, inside, volume=10.0),                         # below strategy.min_volume
        gamma_market(8, inside, order_book=False),                    # no CLOB
        gamma_market(9, until + DAY),                                 # ends after the window
    ]
    session = FakeGamma(markets)
    strategy = StrategySection(min_volume=D(100))
    skipped: list[str] = []
    with caplog.at_level(logging.INFO, logger="bot.replay.history"):
        found = closed_markets("http://gamma.test", strategy, since, until, session=session, skipped=skipped)
    assert [m.market_id for m in found] == ["1", "2", "3"]
    one, two, half = found
    assert (one.winner, one.winning_token, one.payouts) == ("Yes", one.token_ids[0], (D(1), D(0)))
    assert (two.winner, two.payout(two.token_ids[1])) == ("No", D(1))
    assert (half.winner, half.payouts) == (None, (D("0.5"), D("0.5")))
    assert one.token_ids == tuple(json.loads(markets[0]["clobTokenIds"])) and one.version == "v1"
    assert one.end_date == datetime.fromtimestamp(inside, tz=UTC)
    assert one.closed_time == datetime.fromtimestamp(inside + HOUR, tz=UTC)
    assert one.candidates[0].token_id == one.token_ids[0]
    reasons = "\n".join(skipped)
    for mid, words in (("4", "not a resolution"), ("5", "no version"), ("6", "not a binary market"),
                       ("7", "below strategy.min_volume"), ("8", "no order book"), ("9", "outside")):
        assert f"market {mid}" in reasons and words in reasons, (mid, words)
    assert len(skipped) == 6 and all(m in caplog.text for m in skipped)
    q = session.queries[0]
    assert q["closed"] == "true" and (q["end_date_min"], q["end_date_max"]) == (iso(since), iso(until))
    assert q["volume_num_min"] == "100" and q["order"] == "volumeNum" and q["ascending"] == "false"
    # Opt-in: a market without a version read as V1 (its ids still checked for a CTF id's shape).
    again = closed_markets("http://gamma.test", strategy, since, until, session=FakeGamma(markets),
                           unversioned_as_v1=True)
    assert [m.market_id for m in again] == ["1", "2", "3", "5"]
    assert [m.market_id for m in closed_markets("http://gamma.test", strategy, since, until, limit=2,
                                                session=FakeGamma(markets))] == ["1", "2"]


def test_closed_markets_by_slug_and_paging():
    since, until = BASE, BASE + 30 * DAY
    markets = [gamma_market(100 + k, BASE + DAY + k) for k in range(250)]
    session = FakeGamma(markets)
    found = closed_markets("http://gamma.test", StrategySection(), since, until, session=session)
    assert len(found) == 250 and [q["offset"] for q in session.queries] == [0, 100, 200]
    session = FakeGamma(markets + [gamma_market(999, until + DAY)])
    skipped: list[str] = []
    found = closed_markets("http://gamma.test", StrategySection(), since, until, session=session,
                           slugs=["market-120", "market-999", "no-such-market"], skipped=skipped)
    assert [m.slug for m in found] == ["market-120"]
    assert any("market 999" in s and "outside" in s for s in skipped)
    assert any("'no-such-market'" in s for s in skipped)
    assert [q["slug"] for q in session.queries] == ["market-120", "market-999", "no-such-market"]
    with pytest.raises(ValueError, match="after until"):
        closed_markets("http://gamma.test", StrategySection(), until, since, session=session)


# -- end to end: the bot's LiveVenue and Gamma over HTTP against bot/sim --------------------------------------------

def test_download_a_resolved_sim_market_twice_the_second_time_without_a_request(tmp_path):
    clock = SimulatedClock()                     # its start is a whole minute
    now = int(clock.time())
    since, until = now - 40 * DAY, now - 20 * DAY
    with SimExchange(seed=8, clock=clock) as sim:
        end_date = datetime.fromtimestamp(now - 25 * DAY, tz=UTC)
        traded = sim.create_market("Will the replay find me?", yes_price=0.5, volatility=0, end_date=end_date)
        silent = sim.create_market("Did anyone trade me?", yes_price=0.5, volatility=0, end_date=end_date)
        sim.create_market("Am I still open?", yes_price=0.5, volatility=0, end_date=end_date)
        late = sim.create_market("Do I end too late?", yes_price=0.5, volatility=0,
                                 end_date=datetime.fromtimestamp(now - DAY, tz=UTC))
        rng = random.Random(2)
        path, t = [], since - 2 * HOUR
        while t <= until:   # a move every few minutes, off the minute
            path.append((t, D(rng.randint(20, 80)) / 100))
            t += rng.randint(120, 900)
        sim.record_history(traded["token_ids"][0], path)
        for market, winner in ((traded, "Yes"), (silent, "No"), (late, "Yes")):
            sim.resolve(market["condition_id"], winner)

        found = closed_markets(sim.gamma_url, StrategySection(), since, now - 24 * DAY)
        assert [m.market_id for m in found] == sorted([traded["id"], silent["id"]])   # no volume: Gamma's order
        by_id = {m.market_id: m for m in found}
        assert isinstance(by_id[traded["id"]], ClosedMarket)
        assert by_id[traded["id"]].winner == "Yes" and by_id[silent["id"]].winner == "No"
        assert by_id[traded["id"]].token_ids == tuple(traded["token_ids"])

        venue = LiveVenue(sim.clob_url, clock=clock)
        first = download(venue, found, since, until, 1, tmp_path)
        asked = venue.api_calls()["GET /prices-history"]
        assert asked == 4 * 2 == first.requests   # 4 tokens x 2 windows (20 days: 15 + 5)
        assert first.markets == [by_id[traded["id"]]] and silent["id"] in first.skipped
        second = download(venue, found, since, until, 1, tmp_path)
        assert venue.api_calls()["GET /prices-history"] == asked and second.requests == 0
        assert sim.request_counts()["by_endpoint"]["GET /prices-history"] == asked
        assert second.markets == first.markets and second.skipped == first.skipped

    # What was cached is the path, forward-filled to each minute (a move at t counts from the next whole minute).
    yes, no = (load(tmp_path, tok, 1) for tok in traded["token_ids"])
    minute_moves = [(-(-t // 60) * 60, p) for t, p in path]
    want, i = [], -1
    for m in range(since, until + 1, 60):
        while i + 1 < len(minute_moves) and minute_moves[i + 1][0] <= m:
            i += 1
        want.append((m, minute_moves[i][1]))
    assert yes.points() == want and len(yes) == 20 * 1440 + 1 and not yes.gaps
    assert no.points() == [(m, 1 - p) for m, p in want]
    assert load(tmp_path, silent["token_ids"][0], 1).empty
    assert Path(HistoryCache(tmp_path).path(traded["token_ids"][0], 1)).exists()
