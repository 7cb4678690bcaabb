"""The simulator's GET /prices-history and Gamma's closed markets (FACTS.md Part 0, 0.7), over HTTP with ``requests``
and through the bot's own ``LiveVenue.prices_history``. Everything runs on a SimulatedClock (time moves only when a
test says); expected answers are computed here from the moves and paths the tests make, by the venue's rule: one point
per ``fidelity`` minutes, each the last mid at or before it."""
from __future__ import annotations

import bisect
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import requests

from bot.clock import SimulatedClock
from bot.errors import OrderRejected
from bot.sim import SimExchange
from bot.sim.engine import HISTORY_MAX_POINTS
from bot.venue.live import LiveVenue

DAY = 86400
MINUTE = 60
WINDOW_MESSAGE = "'startTs' and 'endTs' interval is too long"


@pytest.fixture
def hsim():
    """A sim on a simulated clock (its start is a whole minute), with a market that moves only when told."""
    clock = SimulatedClock()
    with SimExchange(seed=3, clock=clock) as sim:
        market = sim.create_market("Will history be served?", yes_price=0.5, volatility=0)
        yield sim, clock, market


def history(sim, token, **params):
    r = requests.get(sim.clob_url + "/prices-history", params={"market": token, **params}, timeout=10)
    return r.status_code, r.json()


def expected(moves, first, last, step_s):
    """[(t, price)] at t = first, first + step, ... <= last (first on a multiple of step): the last move at or before
    t; none before the first move. ``moves``: [(t, price)] ascending."""
    times = [t for t, _ in moves]
    out = []
    for t in range(first, last + 1, step_s):
        i = bisect.bisect_right(times, t) - 1
        if i >= 0:
            out.append((t, moves[i][1]))
    return out


def as_pairs(answer) -> list[tuple[int, D]]:
    return [(p["t"], D(str(p["p"]))) for p in answer["history"]]


def test_history_follows_the_mid_one_point_a_minute_forward_filled(hsim):
    sim, clock, market = hsim
    yes, no = market["token_ids"]
    t0 = int(clock.time())
    moves = [(t0, D("0.5"))]
    for dt, price in ((90, "0.55"), (130, "0.58"), (200, "0.42"), (900, "0.61")):
        clock.advance(t0 + dt - clock.time())
        sim.set_price(yes, price)
        moves.append((t0 + dt, D(price)))
    clock.advance(300)
    now = int(clock.time())
    status, body = history(sim, yes, startTs=t0 - 600, endTs=now, fidelity=1)
    assert status == 200 and set(body) == {"history"}
    assert all(set(p) == {"t", "p"} and isinstance(p["t"], int) and isinstance(p["p"], float) for p in body["history"])
    # A change at t counts from the first whole minute at or after it (the mid "at or before" each bucket).
    minute_moves = [((t + MINUTE - 1) // MINUTE * MINUTE, p) for t, p in moves]
    assert as_pairs(body) == expected(minute_moves, t0, now, MINUTE)
    # The NO token's mid is 1 - YES's (the sim quotes NO around 1 - YES).
    assert as_pairs(history(sim, no, startTs=t0, endTs=now, fidelity=1)[1]) == \
        [(t, 1 - p) for t, p in expected(minute_moves, t0, now, MINUTE)]


def test_fidelity_gives_one_point_per_fidelity_minutes_on_whole_multiples(hsim):
    sim, clock, market = hsim
    yes = market["token_ids"][0]
    t0 = int(clock.time())
    path = [(t0 - 3 * 3600 + k * 420, D(50 + (k * 7) % 30) / 100) for k in range(26)]   # every 7 minutes
    sim.record_history(yes, path)
    start, end = t0 - 3 * 3600 - 17, t0 - 60
    for fidelity in (1, 5, 60):
        step = fidelity * MINUTE
        first = -(-start // step) * step
        status, body = history(sim, yes, startTs=start, endTs=end, fidelity=fidelity)
        assert status == 200
        assert as_pairs(body) == expected(path, first, end, step)
        assert all(t % step == 0 for t, _ in as_pairs(body))


def test_a_window_over_15_days_is_refused_with_the_venues_error(hsim):
    sim, clock, market = hsim
    yes = market["token_ids"][0]
    end = int(clock.time())
    status, body = history(sim, yes, startTs=end - 15 * DAY, endTs=end, fidelity=60)
    assert status == 200 and body["history"]
    status, body = history(sim, yes, startTs=end - 15 * DAY - 1, endTs=end, fidelity=60)
    assert (status, body) == (400, {"error": WINDOW_MESSAGE})
    venue = LiveVenue(sim.clob_url, clock=clock)
    with pytest.raises(OrderRejected) as refused:
        venue.prices_history(yes, end - 16 * DAY, end, 1)
    assert refused.value.status == 400 and WINDOW_MESSAGE in refused.value.message
    assert venue.api_calls() == {"GET /prices-history": 1}   # a refusal, not retried


def test_an_unknown_token_has_an_empty_history(hsim):
    sim, clock, _ = hsim
    now = int(clock.time())
    assert history(sim, "123456789", startTs=now - DAY, endTs=now) == (200, {"history": []})
    assert history(sim, "123456789", interval="max") == (200, {"history": []})


def test_bad_queries_are_refused(hsim):
    sim, clock, market = hsim
    yes = market["token_ids"][0]
    now = int(clock.time())
    assert history(sim, "", startTs=now - 60, endTs=now)[0] == 400
    assert history(sim, yes)[0] == 400                                  # neither a window nor an interval
    assert history(sim, yes, startTs=now - 60, endTs=now, fidelity=0)[0] == 400
    assert history(sim, yes, startTs="soon", endTs=now)[0] == 400
    assert history(sim, yes, startTs=now, endTs=now - 60)[0] == 400
    assert history(sim, yes, interval="2y")[0] == 400
    assert history(sim, yes, interval="1m", fidelity=5)[0] == 400    # 1m needs fidelity >= 10 (FACTS.md 0.7)
    assert history(sim, yes, interval="1m", fidelity=10)[0] == 200


def test_interval_counts_back_from_now_and_a_resolved_market_needs_explicit_windows(hsim):
    sim, clock, market = hsim
    yes = market["token_ids"][0]
    t0 = int(clock.time())
    path = [(t0 - 2 * DAY + k * 3600, D("0.40") + D(k) / 100) for k in range(48)]
    sim.record_history(yes, path)
    now = int(clock.time())
    status, body = history(sim, yes, interval="1d", fidelity=60)
    assert status == 200 and as_pairs(body) == expected(path + [(t0, D("0.5"))], now - DAY, now, 3600)
    sim.resolve(market["condition_id"], "Yes")
    clock.advance(3600)
    assert history(sim, yes, interval="max", fidelity=60) == (200, {"history": []})   # py-clob-client issue 216
    status, body = history(sim, yes, interval="max", fidelity=720)
    assert status == 200 and body["history"]
    status, body = history(sim, yes, startTs=t0 - 2 * DAY, endTs=t0 + 3600, fidelity=60)
    assert status == 200 and as_pairs(body) == expected(path + [(t0, D("0.5"))], t0 - 2 * DAY, t0, 3600)


def test_history_ends_at_the_resolution(hsim):
    sim, clock, market = hsim
    yes = market["token_ids"][0]
    t0 = int(clock.time())
    clock.advance(600)
    sim.set_price(yes, "0.7")
    clock.advance(600)
    sim.resolve(market["condition_id"], "No")
    resolved_at = int(clock.time())
    clock.advance(3 * 3600)
    status, body = history(sim, yes, startTs=t0, endTs=int(clock.time()), fidelity=1)
    assert status == 200
    assert as_pairs(body) == expected([(t0, D("0.5")), (t0 + 600, D("0.7"))], t0, resolved_at, MINUTE)


def test_record_history_loads_a_hand_made_path_read_by_the_bots_venue_in_15_day_windows(hsim):
    sim, clock, market = hsim
    yes, no = market["token_ids"]
    end = int(clock.time()) - DAY
    start = end - 20 * DAY
    path = [(start + k * 3 * 3600, D(30 + (k * 13) % 50) / 100) for k in range(20 * 8 + 1)]   # every 3 hours
    assert sim.record_history(yes, path) == {"ok": True, "points": len(path)}
    venue = LiveVenue(sim.clob_url, clock=clock)
    got = venue.prices_history(yes, start, start + 15 * DAY, 60) + venue.prices_history(yes, start + 15 * DAY, end, 60)
    want = expected(path, start, start + 15 * DAY, 3600) + expected(path, start + 15 * DAY, end, 3600)
    assert got == want
    assert venue.prices_history(no, start, start + DAY, 60) == [(t, 1 - p) for t, p in expected(path, start,
                                                                                                 start + DAY, 3600)]
    assert venue.api_calls() == {"GET /prices-history": 3}
    # The same over the control route, for the NO token (YES's path is then 1 - it).
    r = requests.post(sim.clob_url + "/_sim/history", json={"token_id": no, "points": [[start, "0.25"]]}, timeout=10)
    assert r.status_code == 200 and r.json() == {"ok": True, "points": 1}
    assert venue.prices_history(yes, start, start, 60) == [(start, D("0.75"))]


def test_record_history_refuses_bad_points(hsim):
    sim, clock, market = hsim
    yes = market["token_ids"][0]
    now = int(clock.time())
    for bad in ([[now, "1.5"]], [[now, "0.1234567"]], [["later", "0.5"]], [[now]]):
        r = requests.post(sim.clob_url + "/_sim/history", json={"token_id": yes, "points": bad}, timeout=10)
        assert r.status_code == 400 and "history point 0" in r.json()["error"]
    r = requests.post(sim.clob_url + "/_sim/history", json={"token_id": "42", "points": []}, timeout=10)
    assert r.status_code == 404


def test_recording_is_cheap_and_memory_is_bounded(hsim):
    sim, clock, market = hsim
    yes = market["token_ids"][0]
    history_of = sim.engine._history[market["id"]]
    before = len(history_of.minutes)
    clock.advance(1)
    for k in range(40):   # many moves inside one minute: one entry
        sim.set_price(yes, D("0.30") + D(k) / 100)
    clock.advance(MINUTE)
    sim.set_price(yes, "0.3")
    assert len(history_of.minutes) == before + 2
    # A path longer than the bound keeps the newest points only.
    now = int(clock.time()) // MINUTE * MINUTE
    n = HISTORY_MAX_POINTS * 2
    path = [(now - (n - k) * MINUTE, D(1 + k % 90) / 100) for k in range(n)]
    sim.record_history(yes, path)
    assert HISTORY_MAX_POINTS <= len(history_of.minutes) <= HISTORY_MAX_POINTS * 11 // 10
    oldest_kept = history_of.minutes[0] * MINUTE
    assert oldest_kept > path[0][0]
    status, body = history(sim, yes, startTs=now - 2 * DAY, endTs=now - DAY, fidelity=1)
    assert status == 200 and as_pairs(body) == expected(path, now - 2 * DAY, now - DAY, MINUTE)


def test_gamma_lists_resolved_markets_with_their_resolution_when_asked_for_closed_ones(hsim):
    sim, clock, market = hsim
    end = datetime.fromtimestamp(clock.time(), tz=UTC) + timedelta(days=2)
    other = sim.create_market("Will the other one stay open?", yes_price=0.4, volatility=0, end_date=end)
    sim.resolve(market["condition_id"], "No")
    resolved_at = datetime.fromtimestamp(clock.time(), tz=UTC)

    def listed(**params):
        r = requests.get(sim.gamma_url + "/markets", params=params, timeout=10)
        assert r.status_code == 200
        return r.json()

    closed = listed(closed="true")
    assert [m["id"] for m in closed] == [market["id"]]
    m = closed[0]
    assert m["closed"] is True and m["acceptingOrders"] is False
    assert json.loads(m["outcomePrices"]) == ["0", "1"]   # No paid 1
    assert json.loads(m["clobTokenIds"]) == market["token_ids"] and m["version"] == "v1"
    assert datetime.fromisoformat(m["closedTime"]) == resolved_at.replace(microsecond=0)
    assert datetime.fromisoformat(m["endDate"].replace("Z", "+00:00")) > resolved_at
    assert [m["id"] for m in listed(closed="false")] == [other["id"]]
    assert [m["id"] for m in listed()] == [other["id"]]   # closed=false by default, as today
    # Gamma's date filters on the closed list.
    end_date = m["endDate"]
    assert [x["id"] for x in listed(closed="true", end_date_min=end_date, end_date_max=end_date)] == [market["id"]]
    assert listed(closed="true", end_date_max=resolved_at.strftime("%Y-%m-%dT%H:%M:%SZ")) == []
