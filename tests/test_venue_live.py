"""The live venue's error mapping and response parsing, with the SDK's HTTP answered by a scripted
transport (httpx.MockTransport under the real SDK): malformed responses, refusals, lost answers."""
from __future__ import annotations

import json
from decimal import Decimal as D

import httpx
import pytest
from eth_account import Account

from bot.clock import SimulatedClock
from bot.errors import MalformedResponse, OrderRejected, TemporaryVenueError, UnknownOutcome
from bot.venue import live
from bot.venue.base import MarketInfo
from bot.venue.limits import RateLimiter
from bot.venue.live import LiveVenue

TOKEN = "12345678901234567890"
INFO = MarketInfo(TOKEN, "0xcond", D("0.01"), D(5), False)
BOOK = {"asset_id": TOKEN, "bids": [{"price": "0.48", "size": "10"}, {"price": "0.49", "size": "5"}],
        "asks": [{"price": "0.52", "size": "10"}, {"price": "0.51", "size": "5"}]}


class Script:
    """Answers by path; counts calls."""

    def __init__(self, routes):
        self.routes = routes
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        key = path if path in self.routes else f"{request.method} {path}"
        answer = self.routes.get(key, KeyError)
        if answer is KeyError:
            common = {"/version": {"version": 2}, "/tick-size": {"minimum_tick_size": 0.01},
                      "/neg-risk": {"neg_risk": False},
                      f"/markets-by-token/{TOKEN}": {"condition_id": "0xcond", "primary_token_id": TOKEN,
                                                     "secondary_token_id": "2"},
                      "/clob-markets/0xcond": {"c": "0xcond", "t": [{"t": TOKEN, "o": "Yes"}, {"t": "2", "o": "No"}],
                                               "mts": 0.01, "mos": 5, "fd": {"r": 0, "e": 0, "to": True}}}
            answer = common.get(path, {"error": "no route"})
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        return httpx.Response(status, content=body if isinstance(body, bytes) else json.dumps(body).encode())


@pytest.fixture
def venue_with(monkeypatch):
    def make(routes, key=True):
        script = Script(routes)
        clock = SimulatedClock()
        acct = Account.create()
        venue = LiveVenue("http://venue.test", private_key="0x" + acct.key.hex().removeprefix("0x") if key else None,
                          api_creds=("k", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=", "p") if key else None,
                          clock=clock, seed=1, http_transport=httpx.MockTransport(script))
        return venue, script, clock
    return make


def test_books_parse_best_first_and_skip_a_malformed_book(venue_with):
    bad = {"asset_id": "999", "bids": [{"price": "oops", "size": "1"}], "asks": []}
    venue, script, _ = venue_with({"/books": [BOOK, bad]}, key=False)
    books = venue.get_books([TOKEN, "999"])
    assert list(books) == [TOKEN] and books[TOKEN].best_bid == D("0.49") and books[TOKEN].best_ask == D("0.51")
    assert script.calls == ["POST /books"]


def test_books_that_are_not_a_list_are_malformed(venue_with):
    venue, _, _ = venue_with({"/books": {"unexpected": True}}, key=False)
    with pytest.raises(MalformedResponse) as err:
        venue.get_books([TOKEN])
    assert err.value.endpoint == "POST /books"


def test_reads_are_retried_with_backoff_then_reported_temporary(venue_with):
    venue, script, clock = venue_with({"/books": (503, {"error": "Trading is currently cancel-only"})}, key=False)
    start = clock.time()
    with pytest.raises(TemporaryVenueError) as err:
        venue.get_books([TOKEN])
    assert err.value.status == 503 and script.calls.count("POST /books") == 4   # 1 + 3 retries
    assert clock.time() - start >= 3 * 2.5   # 503 is a window to wait out: long, jittered waits


def test_transport_error_on_a_read_is_temporary(venue_with):
    venue, script, _ = venue_with({"/books": httpx.ConnectError("refused")}, key=False)
    with pytest.raises(TemporaryVenueError, match="ConnectError"):
        venue.get_books([TOKEN])


def test_a_5xx_on_post_order_is_an_unknown_outcome(venue_with):
    venue, script, _ = venue_with({"POST /order": (500, {"error": "Internal Server Error"})})
    with pytest.raises(UnknownOutcome):
        venue.limit_sell(TOKEN, D("0.6"), D("10"), INFO)
    assert script.calls.count("POST /order") == 1   # never blindly resent


def test_refusal_is_rejected_and_balance_refusals_are_recognised(venue_with):
    venue, _, _ = venue_with({"POST /order": (400, {"error": "not enough balance / allowance: the balance is "
                                                                "not enough -> balance: 0, order amount: 1"})})
    with pytest.raises(OrderRejected) as err:
        venue.limit_sell(TOKEN, D("0.6"), D("10"), INFO)
    assert err.value.is_balance and err.value.status == 400


def test_order_answer_without_an_id_uses_the_signed_id(venue_with):
    venue, _, _ = venue_with({"POST /order": {"success": True, "status": "live"}})
    saved = []
    fill = venue.limit_sell(TOKEN, D("0.6"), D("10"), INFO, before_post=saved.append)
    assert fill.order_id == saved[0] and fill.order_id.startswith("0x") and fill.settled


def test_http_200_success_false_is_a_refusal(venue_with):
    venue, _, _ = venue_with({"POST /order": {"success": False, "orderID": None, "errorMsg": "Insufficient balance"}})
    with pytest.raises(OrderRejected, match="Insufficient balance"):
        venue.market_buy(TOKEN, D("5"), D("0.55"), INFO)


@pytest.mark.parametrize("answer", [
    {"success": True, "orderID": "0xabc", "errorMsg": None},                          # the recorded bare success
    {"success": True, "orderID": "0xabc", "status": "delayed", "makingAmount": "", "takingAmount": ""},
    {"success": True, "orderID": "0xabc", "status": "matched", "makingAmount": "", "takingAmount": ""},
    {"success": True, "orderID": "0xabc", "status": "matched", "makingAmount": "x", "takingAmount": "1"},
])
def test_an_answer_that_does_not_say_what_matched_is_not_known_yet(venue_with, answer):
    venue, _, _ = venue_with({"POST /order": answer})
    fill = venue.market_buy(TOKEN, D("5"), D("0.55"), INFO)
    assert fill.settled is False and fill.filled_shares == 0 and fill.order_id == "0xabc"


@pytest.mark.parametrize("answer", [(200, b"<html>gateway</html>"), (502, {"error": "bad gateway"}),
                                    httpx.ReadTimeout("timed out")])
def test_an_ambiguous_order_answer_is_an_unknown_outcome_with_the_id_saved(venue_with, answer):
    venue, _, _ = venue_with({"POST /order": answer})
    saved = []
    with pytest.raises(UnknownOutcome):
        venue.market_sell(TOKEN, D("10"), D("0.40"), INFO, before_post=saved.append)
    assert len(saved) == 1 and saved[0].startswith("0x")


def test_matched_order_amounts_become_a_fill(venue_with):
    venue, _, _ = venue_with({"POST /order": {"success": True, "orderID": "0xabc", "status": "matched",
                                              "makingAmount": "10", "takingAmount": "5.9",
                                              "transactionsHashes": ["0x1"], "tradeIDs": ["t"]}})
    fill = venue.limit_sell(TOKEN, D("0.59"), D("10"), INFO)
    assert (fill.order_id, fill.filled_shares, fill.usdc, fill.avg_price) == ("0xabc", D(10), D("5.9"), D("0.59"))


def test_order_lookup_handles_null_and_garbage(venue_with):
    venue, _, _ = venue_with({"/data/order/0xnull": None, "/data/order/0xbad": {"status": "LIVE"}})
    assert venue.get_order("0xnull") is None
    with pytest.raises(MalformedResponse):
        venue.get_order("0xbad")


def test_api_calls_are_counted_by_endpoint_with_ids_collapsed(venue_with):
    venue, _, _ = venue_with({"/books": [BOOK], "/data/order/0xabc": None})
    venue.get_books([TOKEN])
    venue.get_order("0xabc")
    venue.get_order("0xabc")
    assert venue.api_calls() == {"POST /books": 1, "GET /data/order/{id}": 2}


def test_cancel_only_503_on_an_order_is_temporary_not_unknown(venue_with):
    venue, _, _ = venue_with({"POST /order": (503, {"error": "Trading is currently cancel-only."})})
    with pytest.raises(TemporaryVenueError):
        venue.limit_sell(TOKEN, D("0.6"), D("10"), INFO)


def test_self_imposed_rate_limit_per_endpoint(venue_with):
    """POST /books: the venue allows 500 per 10 s; the bot 80 % of that (400) in any 10 s window."""
    venue, script, clock = venue_with({"/books": [BOOK]}, key=False)
    start = clock.time()
    for _ in range(400):
        venue.get_books([TOKEN])
    assert clock.time() == start
    venue.get_books([TOKEN])
    assert 9.9 <= clock.time() - start <= 10.1


def test_overall_cap_max_requests_per_second(venue_with):
    venue, script, clock = venue_with({"/books": [BOOK]}, key=False)
    venue.limiter = RateLimiter(clock, overall_per_second=20)
    start = clock.time()
    for _ in range(30):   # 20 in any second
        venue.get_books([TOKEN])
    assert 0.99 <= clock.time() - start <= 1.1


# -- issue 10, rule 14: a transient error at start-up is retried, not fatal ------------------------------

def _deriving_venue(monkeypatch, answers):
    """A LiveVenue built without API credentials (it derives them at start) against scripted answers."""
    script = Script(answers)
    clock = SimulatedClock()
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    return (lambda: LiveVenue("http://venue.test", private_key=key, clock=clock, seed=1,
                              http_transport=httpx.MockTransport(script)), script, clock)


CREDS = {"apiKey": "k", "secret": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=", "passphrase": "p"}


@pytest.mark.parametrize("status, text", [(503, "trading is currently cancel-only"), (429, "Too Many Requests"),
                                          (425, "Too Early")])
@pytest.mark.parametrize("busy_on", ["create", "derive"])
def test_deriving_the_api_key_is_retried_when_the_venue_is_busy(monkeypatch, status, text, busy_on):
    """As the SDK does: POST /auth/api-key, and on a 400 (the key exists) GET /auth/derive-api-key. A busy answer to
    either is waited out (simulated time) and the whole exchange tried again."""
    calls = {"n": 0}

    def busy_then(answer):
        def route(_request):
            calls["n"] += 1
            return (status, {"error": text}) if calls["n"] <= 5 else answer
        return route

    exists = (400, {"error": "Could not create api key"})
    routes = ({"POST /auth/api-key": busy_then(exists), "GET /auth/derive-api-key": CREDS} if busy_on == "create"
              else {"POST /auth/api-key": exists, "GET /auth/derive-api-key": busy_then(CREDS)})
    make, script, clock = _deriving_venue(monkeypatch, routes)
    started = clock.time()
    venue = make()
    assert venue.feed_credentials()["apiKey"] == "k"
    assert calls["n"] == 6 and clock.time() > started
    assert script.calls[-2:] == ["POST /auth/api-key", "GET /auth/derive-api-key"]


def test_a_definite_refusal_of_the_key_stops_at_once(monkeypatch):
    make, script, clock = _deriving_venue(monkeypatch, {"POST /auth/api-key": (401, {"error": "Unauthorized"}),
                                                        "GET /auth/derive-api-key": (401, {"error": "Unauthorized"})})
    with pytest.raises(OrderRejected, match="refused to create or derive API credentials.*Unauthorized"):
        make()
    assert script.calls == ["POST /auth/api-key"]   # not a 400: nothing to derive (the SDK's rule)
    make, script, clock = _deriving_venue(monkeypatch, {"POST /auth/api-key": (400, {"error": "exists"}),
                                                        "GET /auth/derive-api-key": (401, {"error": "Unauthorized"})})
    with pytest.raises(OrderRejected, match="refused to create or derive API credentials.*Unauthorized"):
        make()
    assert script.calls == ["POST /auth/api-key", "GET /auth/derive-api-key"]


def test_a_venue_busy_for_long_at_start_up_is_reported_not_waited_on_forever(monkeypatch):
    make, script, clock = _deriving_venue(monkeypatch, {"POST /auth/api-key": (503, {"error": "cancel-only"}),
                                                        "GET /auth/derive-api-key": (503, {"error": "cancel-only"})})
    started = clock.time()
    with pytest.raises(TemporaryVenueError, match="still refused after"):
        make()
    assert clock.time() - started >= live.STARTUP_RETRY_S


# -- CLOB V2 (FACTS.md Part 0): fees in USDC, fills that fail, orders the venue forgets -----------------------

FEE_INFO = MarketInfo(TOKEN, "0xcond", D("0.01"), D(5), False, D("0.05"), 1)
FEE_MARKET = {"c": "0xcond", "t": [{"t": TOKEN, "o": "Yes"}, {"t": "2", "o": "No"}], "mts": 0.01, "mos": 5,
              "fd": {"r": 0.05, "e": 1, "to": True}}


def test_a_buy_answer_is_booked_with_its_usdc_fee_and_is_not_a_settlement(venue_with):
    # the live fill of py-clob-client-v2 issue 107: BUY 25 @ 0.13 on fd r 0.05 e 1 took 25 shares, 3.25 + 0.14
    venue, _, _ = venue_with({"POST /order": {"success": True, "orderID": "0xb", "status": "matched",
                                              "makingAmount": "3.25", "takingAmount": "25"}})
    fill = venue.market_buy(TOKEN, D("3.25"), D("0.14"), FEE_INFO)
    assert (fill.filled_shares, fill.usdc, fill.fee) == (D(25), D("3.25"), D("0.14137"))
    assert not fill.confirmed   # "matched" is not a settlement: confirmed from its trades later


def _trade(tid, status, size, price, taker_order="0xother", maker_order=None, side="TAKER"):
    t = {"id": tid, "taker_order_id": taker_order, "asset_id": TOKEN, "side": "SELL", "size": size, "price": price,
         "status": status, "trader_side": side, "fee_rate_bps": "0", "maker_orders": []}
    if maker_order:
        t["maker_orders"] = [{"order_id": maker_order, "matched_amount": size, "price": price, "asset_id": TOKEN}]
    return t


def test_an_orders_trades_count_failed_ones_apart_and_fees_by_the_curve(venue_with):
    trades = [_trade("1", "CONFIRMED", "10", "0.5", taker_order="0xs"),
              _trade("2", "FAILED", "4", "0.49", taker_order="0xs"),
              _trade("3", "MATCHED", "6", "0.6", maker_order="0xtp", side="MAKER"),
              _trade("4", "MINED", "1", "0.6", maker_order="0xtp", side="MAKER")]
    venue, script, _ = venue_with({"/data/trades": {"data": trades, "next_cursor": "LTE="},
                                   "/clob-markets/0xcond": FEE_MARKET})
    got = venue.orders_trades({"0xs": TOKEN, "0xtp": TOKEN, "0xnone": TOKEN}, since=1.0)
    assert script.calls.count("GET /data/trades") == 1   # one read for every order
    sell, tp, none = got["0xs"], got["0xtp"], got["0xnone"]
    # taker: fee = 10 x 0.05 x (0.5 x 0.5) = 0.125 USDC; the FAILED trade is not a fill
    assert (sell.filled_shares, sell.usdc, sell.fee, sell.failed_shares, sell.confirmed) == \
        (D(10), D(5), D("0.125"), D(4), True)
    # maker: no fee; one trade only MATCHED: not settled yet
    assert (tp.filled_shares, tp.usdc, tp.fee, tp.confirmed) == (D(7), D("4.2"), D(0), False)
    assert none.filled_shares == 0 and none.failed_shares == 0


def test_an_order_lookup_answered_404_is_an_order_no_longer_live(venue_with):
    venue, _, _ = venue_with({"/data/order/0xgone": (404, {"error": "order not found"})})
    assert venue.get_order("0xgone") is None


def test_a_wake_cuts_a_reads_retry_wait_short(venue_with):
    from bot.clock import Waker

    venue, script, clock = venue_with({"/books": (503, {"error": "Trading is currently cancel-only"})}, key=False)
    waker = Waker()
    venue.interruptible(waker)
    waker.wake()   # a stop-loss the feed saw is waiting for the loop
    start = clock.time()
    with pytest.raises(TemporaryVenueError, match="retry cut short"):
        venue.get_books([TOKEN])
    assert script.calls.count("POST /books") == 1 and clock.time() == start   # no retry, no wait
    venue.interruptible(None)
    waker.close()
