"""Market discovery: Gamma parsing (JSON-encoded string fields) and the selection rule."""
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from bot.errors import MalformedResponse, TemporaryVenueError
from bot.scanner import MarketScanner, UnsupportedMarket, parse_market

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def tid(mid, k: int) -> str:
    """A CTF (V1) token id: a 256-bit number whose bits 40..103 are not all zero, as every real one's are."""
    return str((0xC7F1 << 200) + (0x5A5A5A5A5A5A << 40) + mid * 10 + k)


def pid(mid, k: int) -> str:
    """A Protocol V2 position id: bits 40..103 zero (the SDK's rule)."""
    return str((0x01AB << 104) + mid * 10 + k)


def gamma_market(mid, yes="0.5", liquidity=5000.0, spread=0.01, days=10, accepting=True, cid=None, **extra):
    yes_d = D(yes)
    m = {
        "id": str(mid), "question": f"Question {mid}?", "conditionId": cid or "0x" + f"{mid:064x}",
        "slug": f"q-{mid}", "endDate": (NOW + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "liquidity": str(liquidity), "liquidityNum": liquidity, "volume": "100", "volumeNum": 100.0,
        "outcomes": json.dumps(["Yes", "No"]), "outcomePrices": json.dumps([str(yes_d), str(1 - yes_d)]),
        "clobTokenIds": json.dumps([tid(mid, 1), tid(mid, 2)]), "active": True, "closed": False,
        "acceptingOrders": accepting, "enableOrderBook": True, "bestBid": float(yes_d) - spread / 2,
        "bestAsk": float(yes_d) + spread / 2, "spread": spread, "orderPriceMinTickSize": 0.01, "orderMinSize": 5,
        "negRisk": False, "version": "v1",
    }
    m.update(extra)
    return {k: v for k, v in m.items() if v is not None}


class FakeSession:
    def __init__(self, pages, status=200):
        self.pages, self.status, self.params, self.timeouts = pages, status, [], []

    def get(self, url, params=None, timeout=None):
        self.params.append(params)
        self.timeouts.append(timeout)
        body = self.pages.pop(0) if self.pages else []
        return SimpleNamespace(status_code=self.status, json=lambda: body, text=json.dumps(body)[:100])


def strategy(**kw):
    base = dict(min_liquidity=D(1000), min_volume=D(0), max_spread=D("0.05"), min_hours_to_end=24,
                max_hours_to_end=None, min_price=D("0.2"), max_price=D("0.8"))
    base.update(kw)
    return SimpleNamespace(**base)


def test_parse_market_decodes_json_string_fields():
    yes, no = parse_market(gamma_market(7, yes="0.3"))
    assert (yes.outcome, yes.token_id, yes.price) == ("Yes", tid(7, 1), D("0.3"))
    assert (no.outcome, no.token_id, no.price) == ("No", tid(7, 2), D("0.7"))
    assert yes.tick_size == D("0.01") and yes.min_order_size == D(5) and yes.liquidity == D("5000.0")


def test_parse_market_names_the_bad_field():
    with pytest.raises(ValueError, match="Gamma market 9: .*clobTokenIds"):
        parse_market(gamma_market(9, clobTokenIds="{not json"))


def test_selection_rule_filters_and_ranks_by_liquidity():
    markets = [
        gamma_market(1, liquidity=9000, spread=0.2),            # spread too wide
        gamma_market(2, liquidity=8000, accepting=False),        # not accepting orders
        gamma_market(3, liquidity=7000, days=0.5),               # ends too soon
        gamma_market(4, liquidity=6000, yes="0.9"),              # Yes too dear -> the No token at 0.1 is too cheap
        gamma_market(5, liquidity=3000, yes="0.85"),             # Yes too dear -> buys No at 0.15? below min: skip
        gamma_market(6, liquidity=2000, yes="0.75"),             # Yes in range
        gamma_market(7, liquidity=4000, yes="0.1"),              # No at 0.9: out of range
        gamma_market(8, liquidity=500),                          # too little liquidity
        gamma_market(10, liquidity=2500, yes="0.82"),            # No at 0.18 out of range
        gamma_market(11, liquidity=2600, yes="0.25"),            # in range, more liquid than 6
    ]
    scanner = MarketScanner("http://gamma", strategy(), session=FakeSession([markets]))
    cands = scanner.candidates(NOW)
    assert [c.market_id for c in cands] == ["11", "6"]
    assert cands[0].outcome == "Yes"


def test_no_token_is_chosen_when_yes_is_out_of_range():
    session = FakeSession([[gamma_market(1, yes="0.7")]])
    scanner = MarketScanner("http://gamma", strategy(max_price=D("0.6")), session=session)
    best = scanner.best_candidate(NOW)
    assert (best.outcome, best.token_id, best.price) == ("No", tid(1, 2), D("0.3"))


def test_blacklisted_and_held_markets_are_skipped():
    markets = [gamma_market(1, liquidity=9000), gamma_market(2, liquidity=8000)]
    scanner = MarketScanner("http://gamma", strategy(), session=FakeSession([markets]))
    skip_first = markets[0]["conditionId"]
    assert scanner.best_candidate(NOW, skip=lambda cid: cid == skip_first).market_id == "2"


def test_gamma_requests_use_the_configured_timeout():
    from bot.config import default_config, with_overrides

    config = with_overrides(default_config(), api__request_timeout_seconds=2.5, api__gamma_host="http://gamma")
    session = FakeSession([[], {"closed": False}])
    scanner = MarketScanner.from_config(config, session=session)
    assert scanner.host == "http://gamma" and scanner.strategy is config.strategy
    scanner.candidates(NOW)
    scanner.resolution("1", "Yes")
    assert session.timeouts == [2.5, 2.5]
    assert MarketScanner("http://gamma", config.strategy).timeout_s == default_config().api.request_timeout_seconds


def test_query_uses_real_gamma_parameters():
    session = FakeSession([[]])
    MarketScanner("http://gamma", strategy(min_volume=D(10), max_hours_to_end=48), session=session).candidates(NOW)
    p = session.params[0]
    assert p["active"] == "true" and p["closed"] == "false" and p["order"] == "liquidityNum"
    assert p["ascending"] == "false" and p["liquidity_num_min"] == "1000" and p["volume_num_min"] == "10"
    assert p["end_date_min"] == "2026-11-25T12:00:00Z" and p["end_date_max"] == "2026-11-26T12:00:00Z"


def test_gamma_errors_are_classified():
    with pytest.raises(TemporaryVenueError):
        MarketScanner("http://g", strategy(), session=FakeSession([[]], status=503)).candidates(NOW)
    with pytest.raises(MalformedResponse):
        MarketScanner("http://g", strategy(), session=FakeSession([{"not": "a list"}])).candidates(NOW)


def test_malformed_market_is_skipped_not_fatal():
    markets = [gamma_market(1, outcomePrices="garbage"), gamma_market(2)]
    scanner = MarketScanner("http://gamma", strategy(), session=FakeSession([markets]))
    assert [c.market_id for c in scanner.candidates(NOW)] == ["2"]


# -- market versions (FACTS.md Part 0, 0.8): the id field by version, missing or unknown versions skipped ------

def test_a_protocol_v2_market_takes_its_ids_from_position_ids_even_with_both_fields():
    raw = gamma_market(5, version="v2", positionIds=[pid(5, 1), pid(5, 2)])   # clobTokenIds present too
    yes, no = parse_market(raw)
    assert (yes.token_id, no.token_id, yes.version) == (pid(5, 1), pid(5, 2), "v2")
    with pytest.raises(UnsupportedMarket, match="Gamma market 5: a Protocol V2 market"):
        parse_market(raw, tradable=frozenset({"v1"}))   # a venue client without ExchangeV3 never trades it
    yes, _ = parse_market(gamma_market(5))
    assert (yes.token_id, yes.version) == (tid(5, 1), "v1")


@pytest.mark.parametrize("version, field, ids, said", [
    ("v2", "positionIds", [tid(5, 1), tid(5, 2)], "version 'v2' but positionIds holds a CTF token id"),
    ("v1", "clobTokenIds", json.dumps([pid(5, 1), pid(5, 2)]),
     "version 'v1' but clobTokenIds holds a Protocol V2 position id"),
    ("v2", "positionIds", [pid(5, 1), tid(5, 2)], "positionIds holds a CTF token id"),
])
def test_ids_of_the_other_kind_than_the_version_says_are_never_traded(version, field, ids, said, caplog):
    """The SDK signs an order for the exchange the id's shape names, whatever Gamma's version says: a market whose
    ids contradict its version would be traded through the wrong exchange. Skipped, with the reason, once."""
    raw = gamma_market(5, version=version, **{field: ids})
    with pytest.raises(UnsupportedMarket, match=said):
        parse_market(raw)
    scanner = MarketScanner("http://gamma", strategy(), session=FakeSession([[raw, gamma_market(7)]]))
    with caplog.at_level("INFO", logger="bot.scanner"):
        found = scanner.candidates(NOW)
    assert [c.market_id for c in found] == ["7"] and said in caplog.text


@pytest.mark.parametrize("version,why", [(None, "no version"), ("", "no version"), ("v3", "unknown market version")])
def test_a_market_without_a_known_version_is_skipped_with_the_reason(version, why, caplog):
    with pytest.raises(UnsupportedMarket, match=why):
        parse_market(gamma_market(6, version=version))
    scanner = MarketScanner("http://gamma", strategy(), session=FakeSession([[gamma_market(6, version=version),
                                                                             gamma_market(7)]]))
    with caplog.at_level("INFO", logger="bot.scanner"):
        found = scanner.candidates(NOW)
    assert [c.market_id for c in found] == ["7"] and why in caplog.text and "Gamma market 6" in caplog.text
