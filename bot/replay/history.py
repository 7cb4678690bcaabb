"""Price history for replays: resolved markets from Gamma, their tokens' recorded prices, and a cache on disk.

- ``closed_markets``: the resolved markets whose ``endDate`` falls in a window, read from Gamma's
  ``/markets?closed=true`` and parsed by the scanner's own ``parse_market`` (binary markets, the version's outcome
  ids, ids that match the version), with the scanner's filters that still mean something for a market that is over
  (an order book, the minimum volume); each with its resolution (``outcomePrices``: what one share of each outcome
  paid).
- ``download``: each token's ``GET /prices-history`` through the venue (``LiveVenue.prices_history``: its rate limits
  and retries), in windows of at most 15 days (FACTS.md Part 0, 0.7: a longer one is refused), concatenated and
  de-duplicated by timestamp into the cache. A token whose cached file already covers the window is not asked again,
  so a second run sends no request.
- ``load``: a token's cached history as two parallel lists, ``times`` (unix seconds, ascending) and ``prices``
  (Decimals), what a replay loop walks by index or searches with ``bisect`` (``History.price_at``).

The cache is a directory with one JSON file per (token, fidelity); docs/replay.md describes the format. A file that
cannot be read whole is reported (``CacheCorrupt``, naming it) and downloaded again, never used; a token with no
history is cached as such; gaps in a history are kept and reported, never filled.
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import requests

from bot.clock import Clock, SystemClock
from bot.config import StrategySection
from bot.errors import VenueError
from bot.scanner import (
    DEFAULT_TIMEOUT_S,
    TRADABLE_VERSIONS,
    Candidate,
    UnsupportedMarket,
    gamma_markets,
    parse_market,
)

log = logging.getLogger("bot.replay.history")

#: The longest startTs..endTs window ``GET /prices-history`` accepts (FACTS.md Part 0, 0.7: at most 15 days, a longer
#: one is refused with HTTP 400 "'startTs' and 'endTs' interval is too long"). No request spans more.
MAX_WINDOW_S = 15 * 86400
#: Two points further apart than this many steps (``fidelity`` minutes each) have a gap between them: the venue sends
#: one point per step, forward-filled (FACTS.md Part 0, 0.7), so a missing step is missing data.
GAP_STEPS = 1.5
#: Gamma pages: markets per request, and the most pages read (Gamma refuses deep offsets: FACTS.md Part 2, section 7).
GAMMA_PAGE_SIZE = 100
GAMMA_MAX_PAGES = 20
#: What a share of each outcome of a resolved binary market pays (Gamma's ``outcomePrices`` once it is resolved):
#: one outcome 1 and the other 0, or both 0.5 (a 50-50 resolution). Anything else is not a resolution.
RESOLUTIONS = frozenset({(Decimal(1), Decimal(0)), (Decimal(0), Decimal(1)), (Decimal("0.5"), Decimal("0.5"))})
CACHE_FORMAT = "bot-price-history"
CACHE_VERSION = 1
_SAFE_NAME = re.compile(r"^[0-9A-Za-z_-]{1,100}$")

Moment = datetime | int | float


# -- resolved markets (Gamma) -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClosedMarket:
    """A resolved binary market, as a replay needs it."""

    market_id: str
    condition_id: str
    question: str
    slug: str
    version: str                          # "v1" (CTF token ids) or "v2" (Protocol V2 position ids)
    end_date: datetime                    # Gamma's endDate (the window is chosen by it)
    closed_time: datetime | None          # Gamma's closedTime when it sends one (when it actually closed)
    volume: Decimal
    token_ids: tuple[str, str]            # the outcome ids of its version (clobTokenIds or positionIds)
    outcomes: tuple[str, str]
    payouts: tuple[Decimal, Decimal]      # what one share of each outcome paid: (1, 0), (0, 1) or (0.5, 0.5)
    candidates: tuple[Candidate, Candidate]   # the scanner's view of it (tick, minimum size, neg risk, ...)

    @property
    def winner(self) -> str | None:
        """The outcome that paid 1 (None for a 50-50 resolution)."""
        return next((o for o, p in zip(self.outcomes, self.payouts, strict=True) if p == 1), None)

    @property
    def winning_token(self) -> str | None:
        return next((t for t, p in zip(self.token_ids, self.payouts, strict=True) if p == 1), None)

    def payout(self, token_id: str) -> Decimal:
        """What one share of ``token_id`` paid at the resolution."""
        try:
            return self.payouts[self.token_ids.index(str(token_id))]
        except ValueError:
            raise KeyError(f"token {token_id} is not an outcome of market {self.market_id} ({self.slug})") from None


def _unix(moment: Moment, what: str) -> int:
    """Unix seconds of a datetime (naive ones are UTC) or a number."""
    if isinstance(moment, datetime):
        return math.floor((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
    if isinstance(moment, bool) or not isinstance(moment, int | float) or not math.isfinite(moment):
        raise ValueError(f"{what}: expected a datetime or unix seconds, got {moment!r}")
    return math.floor(moment)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(raw: object) -> datetime | None:
    """Gamma's dates: "2026-03-19T23:20:15Z" (endDate) or "2026-03-19 23:20:15+00" (closedTime); None if absent or
    unreadable."""
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _closed_market(raw: dict[str, Any], strategy: StrategySection, since: int, until: int,
                   tradable: frozenset[str], unversioned_as_v1: bool) -> ClosedMarket | str:
    """The market, or why it is left out (a sentence naming it)."""
    mid = str(raw.get("id", "?"))
    name = f"Gamma market {mid} ({raw.get('slug') or raw.get('question') or 'no slug'})"
    if not raw.get("closed"):
        return f"{name}: not closed"
    if not raw.get("enableOrderBook", True):   # the scanner's filter: no order book, no CLOB history
        return f"{name}: no order book on the CLOB"
    if unversioned_as_v1 and raw.get("version") in (None, ""):
        raw = {**raw, "version": "v1"}
    try:
        pair = parse_market(raw, tradable)
    except UnsupportedMarket as exc:
        return f"Skipping {exc}"
    except ValueError as exc:
        return f"Skipping malformed market: {exc}"
    if not pair:
        return f"{name}: not a binary market"
    yes, no = pair
    if yes.end_date is None:
        return f"{name}: Gamma gives no endDate"
    end = math.floor(yes.end_date.timestamp())
    if not since <= end <= until:
        return f"{name}: endDate {_iso(end)} is outside {_iso(since)} .. {_iso(until)}"
    if yes.volume < strategy.min_volume:
        return f"{name}: volume {yes.volume} below strategy.min_volume {strategy.min_volume}"
    payouts = (yes.price, no.price)   # a closed market's outcomePrices are its resolution
    if payouts not in RESOLUTIONS:
        return (f"{name}: outcomePrices {[str(p) for p in payouts]} are not a resolution (1 and 0, or 0.5 each): "
                "not resolved yet")
    return ClosedMarket(market_id=yes.market_id, condition_id=yes.condition_id, question=yes.question, slug=yes.slug,
                        version=yes.version, end_date=yes.end_date, closed_time=_parse_time(raw.get("closedTime")),
                        volume=yes.volume, token_ids=(yes.token_id, no.token_id), outcomes=(yes.outcome, no.outcome),
                        payouts=payouts, candidates=(yes, no))


def closed_markets(gamma_host: str, strategy: StrategySection, since: Moment, until: Moment,
                   limit: int | None = None, slugs: Sequence[str] | None = None,
                   session: requests.Session | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                   tradable: frozenset[str] = TRADABLE_VERSIONS, unversioned_as_v1: bool = False,
                   skipped: list[str] | None = None) -> list[ClosedMarket]:
    """Resolved binary markets whose ``endDate`` is in [since, until], the busiest (``volumeNum``) first, at most
    ``limit``; with ``slugs``, those markets only (in that order).

    Filters, as the scanner applies them (``bot.scanner.parse_market`` and ``MarketScanner.candidates``), where they
    still mean something for a market that is over: binary markets only; a market version the venue client trades
    (``tradable``), its outcome ids from the field that version names and of that version's shape; an order book
    (``enableOrderBook``); ``strategy.min_volume``. Not applied here: liquidity, spread, the price range and the hours
    to the end, which describe the moment of an entry (a replay applies them to the recorded prices as it goes).
    A market Gamma gives no ``version`` is skipped, as the scanner skips it, unless ``unversioned_as_v1`` (then its
    ``clobTokenIds`` are read as V1 ids, and still checked for a CTF id's shape). A closed market whose
    ``outcomePrices`` are not 1/0 or 0.5/0.5 is not resolved yet: skipped. Each skip is logged, and appended to
    ``skipped`` when given."""
    start, end = _unix(since, "since"), _unix(until, "until")
    if start > end:
        raise ValueError(f"since ({_iso(start)}) is after until ({_iso(end)})")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    session = session or requests.Session()
    url = gamma_host.rstrip("/") + "/markets"
    notes = skipped if skipped is not None else []

    def skip(why: str) -> None:
        notes.append(why)
        log.info("%s", why)

    out: list[ClosedMarket] = []
    seen: set[str] = set()

    def take(raw: dict[str, Any]) -> None:
        market = _closed_market(raw, strategy, start, end, tradable, unversioned_as_v1)
        if isinstance(market, str):
            skip(market)
        elif market.market_id not in seen:
            seen.add(market.market_id)
            out.append(market)

    if slugs:
        for slug in dict.fromkeys(slugs):
            found = gamma_markets(session, url, {"slug": slug, "closed": "true"}, timeout_s)
            if not found:
                skip(f"slug {slug!r}: Gamma has no resolved market with that slug")
                continue
            for raw in found:
                take(raw)
        return out[:limit] if limit is not None else out
    params: dict[str, Any] = {"closed": "true", "end_date_min": _iso(start), "end_date_max": _iso(end),
                              "order": "volumeNum", "ascending": "false", "limit": GAMMA_PAGE_SIZE}
    if strategy.min_volume > 0:
        params["volume_num_min"] = str(strategy.min_volume)
    for page in range(GAMMA_MAX_PAGES):
        found = gamma_markets(session, url, {**params, "offset": page * GAMMA_PAGE_SIZE}, timeout_s)
        for raw in found:
            take(raw)
            if limit is not None and len(out) >= limit:
                return out
        if len(found) < GAMMA_PAGE_SIZE:
            return out
    log.warning("Gamma has more than %d resolved markets between %s and %s: reading the busiest %d only "
                "(narrow the window or give slugs)", GAMMA_MAX_PAGES * GAMMA_PAGE_SIZE, _iso(start), _iso(end),
                GAMMA_MAX_PAGES * GAMMA_PAGE_SIZE)
    return out


# -- the cache ----------------------------------------------------------------------------------------------------


class CacheError(Exception):
    """A cached history that cannot be used; ``path`` names its file."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


class CacheMissing(CacheError):
    """No file for this (token, fidelity) yet."""


class CacheCorrupt(CacheError):
    """The file is there but cannot be read whole (cut short, not JSON, not this format, inconsistent)."""


@dataclass(frozen=True)
class History:
    """A token's recorded prices at one fidelity over the window ``start``..``end`` (unix seconds) the cache covers.

    ``times`` (unix seconds, strictly ascending) and ``prices`` (Decimals, ``prices[i]`` at ``times[i]``) are two
    parallel lists: a replay loop walks them by index, or finds the price at any moment with ``price_at`` (bisect).
    Equal prices are the same Decimal object (loads are interned). Empty lists: the token has no history in the
    window (it never traded then); that is recorded, not an error."""

    token: str
    fidelity_min: int
    start: int
    end: int
    fetched_at: int
    times: list[int]
    prices: list[Decimal]
    path: Path | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def empty(self) -> bool:
        return not self.times

    @cached_property
    def gaps(self) -> list[tuple[int, int]]:
        """(from, to) of each pair of neighbouring points more than GAP_STEPS steps apart: missing data, kept as
        gaps (nothing is filled in). Before the first point and after the last are not gaps (the market may have
        opened later or closed earlier than the window)."""
        limit = GAP_STEPS * self.fidelity_min * 60
        t = self.times
        return [(a, b) for a, b in zip(t, itertools.islice(t, 1, None), strict=False) if b - a > limit]

    def price_at(self, ts: float) -> Decimal | None:
        """The last recorded price at or before ``ts`` (None before the first point)."""
        i = bisect.bisect_right(self.times, ts) - 1
        return self.prices[i] if i >= 0 else None

    def points(self) -> list[tuple[int, Decimal]]:
        return list(zip(self.times, self.prices, strict=True))

    def between(self, start: int, end: int) -> History:
        """The part of it in [start, end] (the covered window narrowed to it)."""
        i, j = bisect.bisect_left(self.times, start), bisect.bisect_right(self.times, end)
        return History(self.token, self.fidelity_min, max(start, self.start), min(end, self.end), self.fetched_at,
                       self.times[i:j], self.prices[i:j], self.path)

    def describe_gaps(self) -> str:
        """One line about the gaps ("" when there are none)."""
        if not self.gaps:
            return ""
        a, b = max(self.gaps, key=lambda g: g[1] - g[0])
        return (f"token {self.token} (fidelity {self.fidelity_min} min): {len(self.gaps)} gap(s) in the history, the "
                f"longest {(b - a) / 60:.0f} min from {_iso(a)} to {_iso(b)}; kept as gaps, not filled")


class HistoryCache:
    """One JSON file per (token, fidelity) under ``directory`` (created on first write); see docs/replay.md."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    def path(self, token: str, fidelity_min: int) -> Path:
        """``<token>.f<fidelity>.json``; a token id that is not a plain name (digits, letters, ``_``, ``-``) is
        hashed into one (its header still names it)."""
        token = str(token)
        name = token if _SAFE_NAME.match(token) else "h" + hashlib.sha256(token.encode()).hexdigest()[:40]
        return self.directory / f"{name}.f{int(fidelity_min)}.json"

    def read(self, token: str, fidelity_min: int) -> History:
        """The cached history, or CacheMissing (no file) / CacheCorrupt (a file that cannot be used: the error names
        it and says what is wrong)."""
        token, fidelity_min = str(token), int(fidelity_min)
        path = self.path(token, fidelity_min)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CacheMissing(f"no cached price history for token {token} at fidelity {fidelity_min} min ({path} "
                               "does not exist): download it first", path) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CacheCorrupt(f"cached price history {path} cannot be read: {exc}", path) from None
        return _parse_file(text, token, fidelity_min, path)

    def write(self, history: History) -> Path:
        """Write atomically: a temporary file in the same directory, flushed to disk, then renamed over the old one
        (a reader sees the old file or the new one, never half of one)."""
        path = self.path(history.token, history.fidelity_min)
        self.directory.mkdir(parents=True, exist_ok=True)
        deltas = [b - a for a, b in zip(history.times, history.times[1:], strict=False)]
        body = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "token": history.token,
                "fidelity_min": history.fidelity_min, "start": history.start, "end": history.end,
                "fetched_at": history.fetched_at, "points": len(history.times),
                "t": history.times[:1] + deltas, "p": [str(p) for p in history.prices]}
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(body, separators=(",", ":")))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def _parse_file(text: str, token: str, fidelity_min: int, path: Path) -> History:
    def bad(reason: str) -> CacheCorrupt:
        return CacheCorrupt(f"cached price history {path} is unusable: {reason}", path)

    try:
        body = json.loads(text)
    except ValueError as exc:
        raise bad(f"not valid JSON ({exc}): the file is cut short or damaged") from None
    if not isinstance(body, dict) or body.get("format") != CACHE_FORMAT:
        raise bad(f"not a {CACHE_FORMAT} file")
    if body.get("version") != CACHE_VERSION:
        raise bad(f"format version {body.get('version')!r}, this bot reads version {CACHE_VERSION}")
    if body.get("token") != token or body.get("fidelity_min") != fidelity_min:
        raise bad(f"it holds token {body.get('token')!r} at fidelity {body.get('fidelity_min')!r}, not token {token} "
                  f"at fidelity {fidelity_min}")
    header: list[int] = [v for v in (body.get(k) for k in ("start", "end", "fetched_at", "points")) if type(v) is int]
    if len(header) != 4:
        raise bad("its header lacks start, end, fetched_at or points (whole numbers)")
    start, end, fetched_at, count = header
    deltas, raw_prices = body.get("t"), body.get("p")
    if not isinstance(deltas, list) or not isinstance(raw_prices, list):
        raise bad("its data lacks the lists t and p")
    if not len(deltas) == len(raw_prices) == count:
        raise bad(f"the header says {count} points, the data has {len(deltas)} times and {len(raw_prices)} prices")
    if start > end:
        raise bad(f"its window starts ({start}) after it ends ({end})")
    if not all(type(d) is int for d in deltas) or any(d <= 0 for d in itertools.islice(deltas, 1, None)):
        raise bad("its times are not whole numbers in strictly ascending order")
    times = list(itertools.accumulate(deltas))
    if times and (times[0] < start or times[-1] > end):
        raise bad(f"points outside its window {start}..{end}")
    try:
        if not all(type(s) is str for s in raw_prices):
            raise TypeError
        uniq = {s: Decimal(s) for s in set(raw_prices)}
        if not all(p.is_finite() and 0 <= p <= 1 for p in uniq.values()):
            raise ValueError
    except (TypeError, ValueError, InvalidOperation):
        raise bad("a price that is not a decimal string in [0, 1]") from None
    return History(token, fidelity_min, start, end, fetched_at, times, [uniq[s] for s in raw_prices], path)


def _as_cache(cache: HistoryCache | str | os.PathLike[str]) -> HistoryCache:
    return cache if isinstance(cache, HistoryCache) else HistoryCache(cache)


def load(cache: HistoryCache | str | os.PathLike[str], token: str, fidelity_min: int) -> History:
    """A token's cached history (``History``: ``times`` and ``prices`` lists). Gaps are logged (a warning naming the
    token and the longest gap) and kept in ``History.gaps``; an empty history (the token never traded in the window)
    is logged too. CacheMissing / CacheCorrupt (naming the file) when it cannot be used: ``download`` fills or
    repairs it."""
    history = _as_cache(cache).read(token, fidelity_min)
    if history.empty:
        log.info("token %s (fidelity %d min): no price history between %s and %s (it never traded then)",
                 history.token, history.fidelity_min, _iso(history.start), _iso(history.end))
    elif history.gaps:
        log.warning("%s", history.describe_gaps())
    return history


# -- the downloader -----------------------------------------------------------------------------------------------


class HistoryVenue(Protocol):
    """What ``download`` needs of a venue (``bot.venue.live.LiveVenue``)."""

    def prices_history(self, token_id: str, start_ts: int, end_ts: int,
                       fidelity_min: int) -> list[tuple[int, Decimal]]:
        """``GET /prices-history`` for one window: [(unix seconds, price)], oldest first."""


class MarketTokens(Protocol):
    """What ``download`` needs of a market (``ClosedMarket``)."""

    @property
    def market_id(self) -> str: ...

    @property
    def token_ids(self) -> tuple[str, ...]: ...


def history_windows(start: int, end: int, max_span: int = MAX_WINDOW_S) -> list[tuple[int, int]]:
    """[start, end] cut into consecutive windows of at most ``max_span`` seconds: (start, start + span), (start +
    span, start + 2 span), ..., (.., end). Neighbours share their boundary second (whether the venue's window
    includes its ends is not recorded: sharing loses no point either way; the duplicate is dropped)."""
    if end < start:
        raise ValueError(f"window ends ({end}) before it starts ({start})")
    if max_span < 1:
        raise ValueError(f"max_span must be at least 1 second, got {max_span}")
    out, a = [], start
    while True:
        b = min(a + max_span, end)
        out.append((a, b))
        if b >= end:
            return out
        a = b


@dataclass
class DownloadReport:
    """What a ``download`` did. ``markets``: those with some history in the window (the ones to replay)."""

    markets: list[Any] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)      # tokens fetched (or extended) in this run
    cached: list[str] = field(default_factory=list)          # tokens the cache already covered: no request
    empty: list[str] = field(default_factory=list)           # tokens with no history in the window
    repaired: dict[str, str] = field(default_factory=dict)   # token -> what was wrong with its file (re-downloaded)
    failed: dict[str, str] = field(default_factory=dict)     # token -> the venue's error (nothing cached)
    skipped: dict[str, str] = field(default_factory=dict)    # market id -> why it is left out
    requests: int = 0                                        # prices_history calls sent
    messages: list[str] = field(default_factory=list)


def _merge(old: History | None, new: Iterable[tuple[int, Decimal]], start: int, end: int) -> tuple[list[int],
                                                                                                    list[Decimal]]:
    """The points of ``old`` then ``new`` in [start, end], one per timestamp (the first seen wins), ascending."""
    by_time: dict[int, Decimal] = {}
    if old is not None:
        by_time.update(zip(old.times, old.prices, strict=True))
    for t, p in new:
        if start <= t <= end and t not in by_time:
            by_time[t] = p
    times = sorted(by_time)
    return times, [by_time[t] for t in times]


def download(venue: HistoryVenue, markets: Iterable[MarketTokens], since: Moment, until: Moment, fidelity_min: int,
             cache: HistoryCache | str | os.PathLike[str], progress: Callable[[int, int], None] | None = None,
             *, clock: Clock | None = None) -> DownloadReport:
    """Every token's history of ``markets`` over [since, until] at ``fidelity_min`` minutes, into ``cache``.

    A token whose cached file covers the window is not asked again (a second run sends nothing); one that covers part
    of it is asked only for the rest, and the file grows to the union. The rest is asked in windows of at most 15
    days (``history_windows``; FACTS.md Part 0, 0.7), through ``venue.prices_history`` (the venue's rate limits and
    retries apply), concatenated and de-duplicated by timestamp. The window stops at the clock's now (``clock``, by
    default the venue's): nothing later exists yet, and a later run asks for what has come since.

    Never a crash for bad data: a cached file that cannot be read whole is reported (its error names it) and
    downloaded again; a token with no points is cached as empty (not asked again); a market none of whose tokens has a
    point in the window is skipped with a message; a token the venue refuses is reported, left uncached (the next
    run asks again) and its market skipped. ``progress(done, total)`` is called with the tokens done so far."""
    start, end = _unix(since, "since"), _unix(until, "until")
    fidelity_min = int(fidelity_min)
    if fidelity_min < 1:
        raise ValueError(f"fidelity_min must be a whole number of minutes >= 1, got {fidelity_min}")
    clock = clock or getattr(venue, "clock", None) or SystemClock()
    now = math.floor(clock.time())
    end = min(end, now)
    if start > end:
        raise ValueError(f"nothing to download: since ({_iso(start)}) is after until or now ({_iso(end)})")
    store = _as_cache(cache)
    report = DownloadReport()
    market_list = list(markets)
    tokens = list(dict.fromkeys(str(t) for m in market_list for t in m.token_ids))
    total = len(tokens)
    has_points: dict[str, bool] = {}

    def note(message: str, level: int = logging.INFO) -> None:
        report.messages.append(message)
        log.log(level, "%s", message)

    if progress is not None:
        progress(0, total)
    for done, token in enumerate(tokens, 1):
        old: History | None = None
        try:
            old = store.read(token, fidelity_min)
        except CacheMissing:
            pass
        except CacheCorrupt as exc:
            report.repaired[token] = str(exc)
            note(f"{exc}; downloading it again", logging.ERROR)
        if old is not None and old.start <= start and old.end >= end:
            report.cached.append(token)
            history = old
        else:
            pieces = [(start, end)] if old is None else \
                [(a, b) for a, b in ((start, old.start), (old.end, end)) if a < b]
            got: list[tuple[int, Decimal]] = []
            try:
                for a, b in pieces:
                    for w_start, w_end in history_windows(a, b):
                        report.requests += 1
                        got.extend(venue.prices_history(token, w_start, w_end, fidelity_min))
            except VenueError as exc:
                report.failed[token] = str(exc)
                note(f"token {token}: the venue refused its price history ({exc}); not cached, asked again next run",
                     logging.WARNING)
                if progress is not None:
                    progress(done, total)
                continue
            lo, hi = (start, end) if old is None else (min(start, old.start), max(end, old.end))
            times, prices = _merge(old, got, lo, hi)
            history = History(token, fidelity_min, lo, hi, now, times, prices)
            store.write(history)
            report.downloaded.append(token)
        window = history.between(start, end)
        has_points[token] = not window.empty
        if window.empty:
            report.empty.append(token)
        elif window.gaps:
            note(window.describe_gaps(), logging.WARNING)
        if progress is not None:
            progress(done, total)
    for market in market_list:
        ids = [str(t) for t in market.token_ids]
        name = f"market {market.market_id} ({getattr(market, 'slug', '') or 'no slug'})"
        failed = [t for t in ids if t in report.failed]
        if failed:
            report.skipped[market.market_id] = f"{name}: its history could not be downloaded (token {failed[0]})"
        elif not any(has_points.get(t) for t in ids):
            report.skipped[market.market_id] = (f"{name}: no price history between {_iso(start)} and {_iso(end)} "
                                                f"(it never traded then, or predates the CLOB): skipped")
        else:
            report.markets.append(market)
            continue
        note(report.skipped[market.market_id], logging.WARNING)
    return report
