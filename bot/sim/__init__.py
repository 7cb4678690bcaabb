"""A simulated Polymarket on loopback (CLOB + Gamma over HTTP, the CLOB's WebSocket market and user channels)
that the real py-clob-client-v2 trades against, and the unified SDK (polymarket-client) too, through its private
``polymarket._internal.environment.create_environment`` hook (see tests/sim/test_protocol_v2.py). Markets of both
kinds: CTF (V1) and Protocol V2 (``create_market(..., version="v2")``, FACTS.md Part 0, 0.8). ``SimExchange``
starts it in-process; ``python -m bot.sim`` serves it from the command line."""
from __future__ import annotations

import random
import threading
from decimal import Decimal

from eth_account import Account
from eth_utils import to_checksum_address

from bot.clock import Clock, SystemClock
from bot.sim.engine import Engine, SimReject, dec_str
from bot.sim.feeds import FeedServer
from bot.sim.server import SimHTTPServer, SimState, make_server
from bot.wallets import deposit_wallet_address

__all__ = ["SimExchange", "SimReject"]


class SimExchange:
    """The simulated exchange: a context manager serving CLOB and Gamma on free 127.0.0.1 ports, and the
    WebSocket channels at ``ws_url + "/ws/market"`` and ``ws_url + "/ws/user"``.

    Every ``/_sim/...`` control route has a Python twin here with the same arguments and results.
    """

    def __init__(self, *, markets: int = 0, seed: int = 0, clock: Clock | None = None, port: int = 0,
                 gamma_port: int = 0, default_volatility=None, settlement_delay_s: float = 0.0,
                 step_seconds: float = 1.0, page_size: int = 500, ws_port: int = 0):
        self.clock = clock or SystemClock()
        self.seed = seed
        self.engine = Engine(seed=seed, clock=self.clock,
                             default_volatility=Decimal(str(default_volatility)) if default_volatility is not None
                             else Decimal("0.004"), step_seconds=step_seconds, settlement_delay_s=settlement_delay_s)
        self.state = SimState(self.engine, seed=seed, page_size=page_size)
        self._ports = (port, gamma_port)
        self._ws_port = ws_port
        self._servers: list[SimHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self.feeds = FeedServer(self.engine, self.state.keys, self.state.accounts_of_owner)
        self.clob_url = self.gamma_url = self.relayer_url = self.ws_url = ""
        rng = random.Random(seed)
        for i in range(markets):
            self.create_market(f"Simulated market {i + 1}: will it happen?",
                               yes_price=round(rng.uniform(0.35, 0.65), 2))

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SimExchange:
        for port, gamma in ((self._ports[0], False), (self._ports[1], True)):
            server = make_server(self.state, self, port, gamma)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"sim-{'gamma' if gamma else 'clob'}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.clob_url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.gamma_url = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        self.relayer_url = self.clob_url   # the relayer's GET /deployed is served by the CLOB server
        self.ws_url = self.feeds.start(self._ws_port)
        return self

    def stop(self) -> None:
        self.feeds.stop()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> SimExchange:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- control (same as /_sim routes) ---------------------------------------------------------

    def create_market(self, question, yes_price=0.5, tick_size="0.01", min_order_size=5, neg_risk=False,
                      volatility=None, **kw) -> dict:
        m = self.engine.add_market(question, yes_price=Decimal(str(yes_price)), tick_size=str(tick_size),
                                   min_order_size=min_order_size, neg_risk=neg_risk, volatility=volatility, **kw)
        return {"id": m.id, "condition_id": m.condition_id, "slug": m.slug, "token_ids": list(m.token_ids)}

    def fund(self, address, usdc=None, token_id=None, shares=None, allowance=None) -> None:
        self.engine.fund(address, usdc=usdc, token_id=token_id, shares=shares, allowance=allowance)

    def balances(self, address) -> dict:
        self.engine.run_due()   # delayed orders whose delay has passed have matched by now
        b = self.engine.balances(address)
        return {"usdc": dec_str(b["usdc"]), "tokens": {t: dec_str(q) for t, q in b["tokens"].items()},
                "open_orders": b["open_orders"]}

    def set_book(self, token_id, bids, asks) -> None:
        self.engine.set_book(token_id, bids, asks)

    def set_price(self, token_id, price) -> None:
        self.engine.move_price(token_id, Decimal(str(price)))

    def resolve(self, condition_id, winner) -> None:
        self.engine.resolve(condition_id, winner)

    def record_history(self, token_id, points) -> dict:
        """Load a hand-made price path into the history ``GET /prices-history`` serves for ``token_id``'s market:
        ``points`` are (unix seconds, price of ``token_id``), prices in [0, 1] with at most 6 decimals; the other
        token's is 1 - it. It replaces the market's history from its first minute to its last (one entry a minute:
        the latest point of each); the current mid and book stay as they are. ``POST /_sim/history`` ``{"token_id",
        "points": [[t, p], ...]}``. Returns {"ok": true, "points": entries kept}."""
        return {"ok": True, "points": self.engine.record_history(token_id, points)}

    def set_faults(self, rate=0.0, statuses=(429, 425, 500, 503), paths=None, delay_s=0, seed=None,
                   after=False) -> None:
        """Answer ``rate`` of the requests (on ``paths``) with one of ``statuses``; ``after``: carry the request
        out first (the answer is lost, not the request). ``set_faults()`` turns them off. (The venue's own
        behaviours below are switched apart and are left as they are.)"""
        self.state.set_faults(rate, statuses, paths, delay_s, seed, after)

    # -- the venue's harder answers (all off by default) -----------------------------------------

    def set_market_options(self, market, seconds_delay=None, dynamic_tick=None, fee_rate_bps=None) -> dict:
        """Switch per-market options on an existing market (``market``: condition id, Gamma id or a token
        id; None leaves an option as it is). The same options can be given to ``create_market``:
        - ``seconds_delay``: marketable orders answer ``delayed`` and match after that many seconds;
        - ``dynamic_tick``: tick 0.001 while the Yes price is above 0.96 or below 0.04;
        - ``fee_rate_bps``: the string trades report (default ``""`` as V2 sends it).
        Returns the market's current options."""
        m = (self.engine.market_by_condition(market) or self.engine.market_by_id(market)
             or self.engine.market_by_token(market))
        if m is None:
            raise SimReject("market not found", 404)
        self.engine.set_market_options(m, seconds_delay=seconds_delay, dynamic_tick=dynamic_tick,
                                       fee_rate_bps=fee_rate_bps)
        return {"condition_id": m.condition_id, "seconds_delay": m.seconds_delay, "dynamic_tick": m.dynamic_tick,
                "tick_size": dec_str(m.tick_size), "fee_rate_bps": m.fee_rate_bps}

    # -- what today's venue does only sometimes (FACTS.md Part 0; POST /_sim/faults keys) ------------

    def ghost_fills(self, n: int, fail_after_s: float = 1.0) -> None:
        """The next ``n`` executions with a user on either side are ghost fills (FACTS.md Part 0, 0.2): answered
        ``matched`` with amounts and transaction hashes, ``size_matched`` grows, a fully matched resting order
        leaves the book, the user channel gets the trade MATCHED (and the maker's UPDATE), but no balance
        moves; each trade turns FAILED ``fail_after_s`` seconds later on the sim clock (at the next request or
        ``advance``; 0: at once), never CONFIRMED. Key ``{"ghost_fills": n, "ghost_fail_s": s}``."""
        self.engine.ghost_fills(n, fail_after_s)

    def forget_orders(self, on: bool = True) -> None:
        """On (the default): ``GET /data/order/{id}`` answers ``null`` for orders no longer LIVE or DELAYED
        (FACTS.md Part 0, 0.3); off: every known order is answered. Key ``{"forget_orders": bool}``."""
        with self.engine.lock:
            self.engine.forget_orders = bool(on)

    def balance_lock(self, seconds: float) -> None:
        """For ``seconds`` on the sim clock, every user order is refused (HTTP 400 ``not enough balance /
        allowance: the sum of matched orders exceeds the balance``) while balance reads stay true (FACTS.md
        Part 0, 0.4); 0 ends it. Key ``{"balance_lock_s": seconds}``."""
        self.engine.balance_lock(seconds)

    def market_resolved_messages(self, on: bool = True) -> None:
        """Off: resolutions send no ``market_resolved`` on the market channel (FACTS.md Part 0, 0.5: it may
        never arrive). On by default. Key ``{"market_resolved_messages": bool}``."""
        with self.engine.lock:
            self.engine.market_resolved_messages = bool(on)

    def sell_answer_net(self, on: bool = True) -> None:
        """On: a taker SELL's POST answer gives ``takingAmount`` net of its fee; off (default): the notional.
        Which the venue does is unknown (FACTS.md Part 0, 0.1): the bot must be right under both. Key
        ``{"sell_answer_net": bool}``."""
        with self.engine.lock:
            self.engine.sell_answer_net = bool(on)

    def delayed_uncancellable(self, on: bool = True) -> None:
        """On: a cancel of a DELAYED order answers it in ``not_canceled`` with ``cannot cancel because the
        order is in pending/delayed status`` and it matches when its delay is over (FACTS.md Part 0, 0.5).
        Off by default. Key ``{"delayed_uncancellable": bool}``."""
        with self.engine.lock:
            self.engine.delayed_uncancellable = bool(on)

    def refuse_orders(self, next=0, rate=0.0, message=None, seed=None) -> None:  # noqa: A002
        """Answer order posts with the venue's HTTP 200 refusal ``{"success": false, "orderID": null,
        "errorMsg": message, "status": ""}``, creating nothing: exactly the ``next`` N posts (each order of
        a ``POST /orders`` batch counts as one), then at a seeded ``rate``. ``refuse_orders()`` turns it off.
        The default message is the venue's ``not enough balance / allowance``."""
        self.state.set_refusals(next=next, rate=rate, message=message, seed=seed)

    def set_sparse_answers(self, on: bool = True) -> None:
        """Successful order posts carry only success, orderID, errorMsg and status (no amounts)."""
        self.state.sparse_answers = bool(on)

    def restart_engine(self, seconds_425: float = 90, post_only_seconds: float = 120) -> dict:
        """Start the matching engine's restart window now (on the sim clock): for ``seconds_425`` every
        order post and cancel answers HTTP 425; then for ``post_only_seconds`` an order that is not
        post-only answers HTTP 503 ``code: post_only_mode`` (cancels and post-only orders are accepted).
        Returns {"restarting_until", "post_only_until"} (unix seconds)."""
        return self.state.restart_engine(seconds_425, post_only_seconds)

    def engine_phase(self) -> dict:
        """{"phase": "restarting" | "post_only" | "normal", "seconds_left": int}."""
        phase, left = self.state.engine_phase()
        return {"phase": phase, "seconds_left": left}

    def advance(self) -> None:
        """Catch the venue up with its clock now (delayed orders due, the living market), as any request
        does."""
        self.engine.advance()

    def set_rate_limits(self, limits: dict[str, tuple[int, float]] | None) -> None:
        """Enforce per-endpoint limits like the venue's (``{"POST /orders": (1000, 10.0)}``, keys as in
        request_counts): a request beyond one is answered 429 and counted in request_counts()["rate_limited"]."""
        self.state.set_rate_limits(limits)

    def request_counts(self) -> dict:
        """REST requests by endpoint (WebSocket traffic is not counted here: see feed_stats)."""
        return self.state.request_counts()

    def reset_request_counts(self) -> None:
        self.state.reset_counts()

    # -- push feeds (the WebSocket channels) and latency ------------------------------------------

    def drop_feeds(self, channel: str | None = None) -> None:
        """Close every WebSocket connection of ``channel`` ("market", "user"; None: both) abruptly, as a
        network failure would (no close frame). New connections are accepted as usual."""
        self.feeds.drop(channel)

    def silence_feeds(self, channel: str | None = None) -> None:
        """The connections of ``channel`` (None: both) open now stay open and answer PING with PONG, but send
        no more events. Connections opened later are normal (a reconnect cures it)."""
        self.feeds.silence(channel)

    def stop_subscription(self, token_id) -> None:
        """The open market connections send nothing more about ``token_id`` (other tokens keep flowing); a new
        subscribe for it (operation subscribe or a new connection) restores it, with a fresh snapshot."""
        self.feeds.stop_subscription(token_id)

    def feed_stats(self) -> dict:
        """{"connections": {"market": n_open, "user": n_open}, "opened": {... ever}, "messages": {event_type: n}
        (events queued to connections), "pings": n}."""
        return self.feeds.stats()

    def order_arrivals(self) -> dict[str, float]:
        """Order id -> ``time.time()`` when its post had been read by the server (before any processing);
        the latest 100 000 orders."""
        return self.state.order_arrivals()

    def clear_order_arrivals(self) -> None:
        self.state.clear_order_arrivals()

    # -- approvals (per account and contract; bot.sim.engine's Approvals) -------------------------------------

    def set_approval(self, address, spender, approved=True, token=None) -> dict:
        """Approve (or revoke, ``approved`` False) a contract for ``address`` (the funder): ``spender`` is an address
        or a name of polymarket-client's config (``ctf_exchange``, ``neg_risk_exchange``, ``neg_risk_adapter``,
        ``exchange_v3``, ``auto_redeem_operator``); ``token``: "collateral" (its pUSD allowance), "conditional_tokens"
        or "position_manager" (its share approval), None: all the contract is approved on by polymarket.com's setup.
        Orders of a kind are refused while the contract of that kind lacks it (engine.order_contracts). New wallets
        approve every exchange and the neg-risk adapter, not the auto-redeem operator (FACTS.md Part 0, 0.8).
        Returns ``approvals(address)``. ``POST /_sim/approvals`` with the same keys."""
        self.engine.approvals.set(address, spender, bool(approved), token)
        return self.approvals(address)

    def approvals(self, address) -> dict:
        """{"collateral": {spender: bool}, "conditional_tokens": {operator: bool}, "position_manager": {operator:
        bool}} for ``address`` (``GET /_sim/approvals?address=``)."""
        return self.engine.approvals.table(address)

    def new_wallet(self, usdc=0, signature_type=0, deployed=True) -> dict:
        """A fresh throwaway key and the wallet it trades from, funded with ``usdc``: {"private_key", "address"
        (the funder: the order maker), "owner" (the key's EOA), "signature_type"}. signature_type 0: the key's
        own address; 3: the key's deposit wallet (deployed or not)."""
        acct = Account.create()
        address = acct.address
        if signature_type == 3:
            address = self.new_deposit_wallet(acct.address, deployed=deployed)["address"]
        elif signature_type != 0:
            raise ValueError(f"new_wallet: signature_type {signature_type} is not simulated (0 or 3)")
        self.fund(address, usdc=usdc)
        return {"private_key": "0x" + acct.key.hex().removeprefix("0x"), "address": address, "owner": acct.address,
                "signature_type": signature_type}

    def new_deposit_wallet(self, owner, deployed=True) -> dict:
        """The deposit wallet of ``owner`` (an EOA): its CREATE2 address, registered on the simulated chain,
        deployed or not (``deploy_deposit_wallet`` deploys it later). Fund it with ``fund`` as any wallet."""
        owner = to_checksum_address(owner)
        wallet = deposit_wallet_address(owner)
        self.state.add_deposit_wallet(wallet, owner, bool(deployed))
        return {"address": wallet}

    def deploy_deposit_wallet(self, address) -> None:
        """Deploy a deposit wallet made with ``new_deposit_wallet(..., deployed=False)``."""
        self.state.deploy_deposit_wallet(address)
