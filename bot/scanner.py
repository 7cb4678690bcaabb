"""Market discovery on Gamma: active binary markets that pass the config's filters.

Rule for the best candidate: among markets that pass every filter and are neither blacklisted nor
held, the one with the most liquidity (ties: the tighter spread); within it, the Yes token if its price
is in [min_price, max_price], else the No token.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from bot.config import ApiSection, BotConfig, StrategySection
from bot.errors import MalformedResponse, TemporaryVenueError, VenueError
from bot.money import to_decimal

log = logging.getLogger("bot.scanner")

PAGE_SIZE = 100
#: Gamma's HTTP timeout when none is given: the default of ``api.request_timeout_seconds``.
DEFAULT_TIMEOUT_S: float = ApiSection.model_fields["request_timeout_seconds"].default


@dataclass(frozen=True)
class Candidate:
    """A market and the outcome token the bot would buy."""

    market_id: str
    condition_id: str
    question: str
    slug: str
    token_id: str
    outcome: str
    price: Decimal
    spread: Decimal
    liquidity: Decimal
    volume: Decimal
    tick_size: Decimal
    min_order_size: Decimal
    neg_risk: bool
    end_date: datetime | None
    version: str = "v1"   # Gamma's market version: "v1" (CTF token ids) or "v2" (Protocol V2 position ids)


#: Where each market version keeps its outcome ids (FACTS.md Part 0, 0.8: "choose the ID field by version, even
#: when both fields are present"; "reject missing or unsupported versions").
ID_FIELDS = {"v1": "clobTokenIds", "v2": "positionIds"}
#: The versions this bot's venue client can trade: both, through the unified SDK (polymarket-client), which signs
#: a V2 position id's orders for ExchangeV3 (EIP-712 domain "3") and a CTF token id's for the CTF exchanges.
TRADABLE_VERSIONS = frozenset({"v1", "v2"})
#: Bits 40..103 of an outcome id are zero in a Protocol V2 position id and only there (the SDK's own rule,
#: ``is_v2_position_id``, by which it picks ExchangeV3: tests/test_venue_sdk.py checks the two agree).
_V2_RESERVED_BITS = ((1 << 64) - 1) << 40


def is_v2_id(token_id: str) -> bool:
    """Whether an outcome id has the shape of a Protocol V2 position id (the SDK signs those for ExchangeV3)."""
    try:
        value = int(str(token_id), 0)
    except ValueError:
        return False
    return value >= 0 and value & _V2_RESERVED_BITS == 0


class UnsupportedMarket(ValueError):
    """A market the bot must not trade: its version is missing, unknown, or not one its SDK can trade."""


def _json_list(raw: object, field: str) -> list[Any]:
    """Gamma sends some lists as JSON-encoded strings ("[\"Yes\", \"No\"]")."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ValueError(f"{field}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, list):
        raise ValueError(f"{field}: expected a list, got {type(value).__name__}")
    return value


def _parse_date(raw: object) -> datetime | None:
    if not raw:
        return None
    text = str(raw).replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def market_version(raw: dict[str, Any], tradable: frozenset[str] = TRADABLE_VERSIONS) -> str:
    """The market's version, or UnsupportedMarket saying why it is skipped (missing, unknown, not tradable)."""
    version = raw.get("version")
    if version is None or version == "":
        raise UnsupportedMarket("Gamma gives it no version (a market without one is not traded: its outcome ids "
                                "cannot be told apart)")
    if str(version) not in ID_FIELDS:
        raise UnsupportedMarket(f"unknown market version {version!r}")
    if str(version) not in tradable:
        raise UnsupportedMarket(f"a Protocol {str(version).upper()} market: the venue client in use cannot trade it")
    return str(version)


def parse_market(raw: dict[str, Any], tradable: frozenset[str] = TRADABLE_VERSIONS) -> list[Candidate]:
    """Both outcome tokens of a Gamma market as candidates, their ids from the field its version names;
    UnsupportedMarket when it must not be traded, ValueError naming a malformed field."""
    mid = str(raw.get("id", "?"))
    try:
        version = market_version(raw, tradable)
    except UnsupportedMarket as exc:
        raise UnsupportedMarket(f"Gamma market {mid}: {exc}") from None
    try:
        outcomes = _json_list(raw.get("outcomes"), "outcomes")
        prices = [to_decimal(p, "outcomePrices") for p in _json_list(raw.get("outcomePrices"), "outcomePrices")]
        tokens = [str(t) for t in _json_list(raw.get(ID_FIELDS[version]), ID_FIELDS[version])]
        if not (len(outcomes) == len(prices) == len(tokens) == 2):
            return []  # not a binary market
        best_bid = raw.get("bestBid")
        best_ask = raw.get("bestAsk")
        spread = raw.get("spread")
        if spread is None and best_bid is not None and best_ask is not None:
            spread = to_decimal(best_ask, "bestAsk") - to_decimal(best_bid, "bestBid")
        condition_id = str(raw.get("conditionId") or "")
        question = str(raw.get("question") or "")
        slug = str(raw.get("slug") or "")
        spread_d = to_decimal(spread if spread is not None else 1, "spread")
        liquidity = to_decimal(raw.get("liquidityNum", raw.get("liquidity", 0)) or 0, "liquidityNum")
        volume = to_decimal(raw.get("volumeNum", raw.get("volume", 0)) or 0, "volumeNum")
        tick_size = to_decimal(raw.get("orderPriceMinTickSize", "0.01") or "0.01", "orderPriceMinTickSize")
        min_order_size = to_decimal(raw.get("orderMinSize", 5) or 5, "orderMinSize")
        neg_risk = bool(raw.get("negRisk", False))
        end_date = _parse_date(raw.get("endDate"))
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Gamma market {mid}: {exc}") from None
    # The SDK routes an order by the id's shape, not by Gamma's version: an id of the other kind would be
    # signed for the other exchange (refused at best). Never trade a market whose ids contradict its version.
    wrong = [t for t in tokens if is_v2_id(t) != (version == "v2")]
    if wrong:
        raise UnsupportedMarket(f"Gamma market {mid}: version {version!r} but {ID_FIELDS[version]} holds "
                                f"{'a CTF token id' if version == 'v2' else 'a Protocol V2 position id'} "
                                f"({wrong[0]}): not traded")
    return [Candidate(market_id=mid, condition_id=condition_id, question=question, slug=slug, token_id=tokens[i],
                      outcome=str(outcomes[i]), price=prices[i], spread=spread_d, liquidity=liquidity, volume=volume,
                      tick_size=tick_size, min_order_size=min_order_size, neg_risk=neg_risk, end_date=end_date,
                      version=version)
            for i in (0, 1)]


def gamma_markets(session: requests.Session, url: str, params: dict[str, Any],
                  timeout_s: float) -> list[dict[str, Any]]:
    """One Gamma ``GET /markets``: its list of markets, or the bot's venue errors (busy: temporary; refused; not
    JSON or not a list: malformed)."""
    try:
        resp = session.get(url, params=params, timeout=timeout_s)
    except requests.RequestException as exc:
        raise TemporaryVenueError(f"Gamma unreachable: {type(exc).__name__}", endpoint="GET /markets") from None
    if resp.status_code in (425, 429) or resp.status_code >= 500:
        raise TemporaryVenueError(f"Gamma busy: {resp.text[:200]}", endpoint="GET /markets", status=resp.status_code)
    if resp.status_code != 200:
        raise VenueError(f"Gamma refused the query: {resp.text[:200]}", endpoint="GET /markets",
                         status=resp.status_code)
    try:
        data = resp.json()
    except ValueError:
        raise MalformedResponse("Gamma answered with something that is not JSON", endpoint="GET /markets") from None
    if not isinstance(data, list):
        raise MalformedResponse(f"expected a list of markets, got {type(data).__name__}", endpoint="GET /markets")
    return [m for m in data if isinstance(m, dict)]


class MarketScanner:
    """Finds the next market to buy from Gamma's /markets."""

    def __init__(self, gamma_host: str, strategy: StrategySection, timeout_s: float = DEFAULT_TIMEOUT_S,
                 session: requests.Session | None = None, max_pages: int = 3):
        self.host = gamma_host.rstrip("/")
        self.strategy = strategy
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.max_pages = max_pages
        self.calls_by: Counter[str] = Counter()  # requests sent to Gamma, keyed as the simulator counts them
        self.tradable = TRADABLE_VERSIONS
        self._skipped: set[str] = set()   # markets whose skip was logged (once each: a scan runs every minute)

    def _skip_once(self, market_id: str, why: str) -> None:
        if market_id not in self._skipped:
            self._skipped.add(market_id)
            log.info("%s", why)

    @classmethod
    def from_config(cls, config: BotConfig, gamma_host: str | None = None, session: requests.Session | None = None,
                    max_pages: int = 3) -> MarketScanner:
        """The scanner a config asks for: ``api.gamma_host`` (unless ``gamma_host`` is given), the strategy's
        filters, and ``api.request_timeout_seconds`` for every Gamma request."""
        return cls(gamma_host or config.api.gamma_host, config.strategy, timeout_s=config.api.request_timeout_seconds,
                   session=session, max_pages=max_pages)

    def api_calls_total(self) -> int:
        return sum(self.calls_by.values())

    def api_calls(self) -> dict[str, int]:
        """Requests this scanner has sent, keyed like the venue's counts."""
        return dict(self.calls_by)

    def _params(self, now: datetime, offset: int) -> dict[str, str | int]:
        s = self.strategy
        params: dict[str, str | int] = {
            "active": "true", "closed": "false", "limit": PAGE_SIZE, "offset": offset,
            "order": "liquidityNum", "ascending": "false",
            "liquidity_num_min": str(s.min_liquidity),
            "end_date_min": (now + timedelta(hours=s.min_hours_to_end)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if s.min_volume > 0:
            params["volume_num_min"] = str(s.min_volume)
        if s.max_hours_to_end is not None:
            params["end_date_max"] = (now + timedelta(hours=s.max_hours_to_end)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return params

    def fetch_markets(self, now: datetime) -> list[dict[str, Any]]:
        """Raw Gamma markets (a few pages at most)."""
        out: list[dict[str, Any]] = []
        for page in range(self.max_pages):
            self.calls_by["GAMMA GET /markets"] += 1
            data = gamma_markets(self.session, f"{self.host}/markets", self._params(now, page * PAGE_SIZE),
                                 self.timeout_s)
            out.extend(data)
            if len(data) < PAGE_SIZE:
                break
        return out

    def resolution(self, market_id: str, outcome: str) -> Decimal | None:
        """The payout per share of ``outcome`` if the market is closed (1 for the winner, 0 for the loser),
        else None. One Gamma request."""
        self.calls_by["GAMMA GET /markets/{id}"] += 1
        try:
            resp = self.session.get(f"{self.host}/markets/{market_id}", timeout=self.timeout_s)
            data = resp.json() if resp.status_code == 200 else None
        except (requests.RequestException, ValueError):
            raise TemporaryVenueError("Gamma unreachable", endpoint="GET /markets/{id}") from None
        if not isinstance(data, dict) or not data.get("closed"):
            return None
        try:
            outcomes = _json_list(data.get("outcomes"), "outcomes")
            prices = _json_list(data.get("outcomePrices"), "outcomePrices")
            return to_decimal(prices[outcomes.index(outcome)], "outcomePrices")
        except (ValueError, IndexError) as exc:
            raise MalformedResponse(f"market {market_id}: {exc}", endpoint="GET /markets/{id}") from None

    def parse(self, raw: dict[str, Any]) -> list[Candidate]:
        """``parse_market`` with this scanner's tradable versions (a replay memoizes it: bot/replay/market.py)."""
        return parse_market(raw, self.tradable)

    def candidates(self, now: datetime, skip: Callable[[str], bool] = lambda cid: False) -> list[Candidate]:
        """Every acceptable (market, token), best first."""
        s = self.strategy
        found: list[Candidate] = []
        for raw in self.fetch_markets(now):
            if not raw.get("acceptingOrders", False) or raw.get("closed") or not raw.get("enableOrderBook", True):
                continue
            try:
                pair = self.parse(raw)
            except UnsupportedMarket as exc:
                self._skip_once(str(raw.get("id", "?")), f"Skipping {exc}")
                continue
            except ValueError as exc:
                log.warning("Skipping malformed market from GET /markets: %s", exc)
                continue
            if not pair or not pair[0].condition_id or skip(pair[0].condition_id):
                continue
            c = pair[0]
            if c.liquidity < s.min_liquidity or c.volume < s.min_volume or c.spread > s.max_spread:
                continue
            if c.end_date is not None:
                hours_left = (c.end_date - now).total_seconds() / 3600
                if hours_left < s.min_hours_to_end:
                    continue
                if s.max_hours_to_end is not None and hours_left > s.max_hours_to_end:
                    continue
            for cand in pair:
                if s.min_price <= cand.price <= s.max_price:
                    found.append(cand)
                    break
        found.sort(key=lambda c: (-c.liquidity, c.spread))
        return found

    def best_candidate(self, now: datetime, skip: Callable[[str], bool] = lambda cid: False) -> Candidate | None:
        """The market to buy next, or None."""
        cands = self.candidates(now, skip)
        return cands[0] if cands else None

