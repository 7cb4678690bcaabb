"""The venue's two WebSocket push channels, served for the simulated exchange: ``/ws/market`` (public books,
trades, tick changes) and ``/ws/user`` (the orders and trades of the authenticated API key's account), in the
message formats of Polymarket's CLOB (docs.polymarket.com market-data/websocket; shapes of recorded messages).

Threads: websockets' sync server runs one handler thread per connection (it reads the client's messages) and
this module adds one sender thread per connection, fed by an unbounded queue. The engine hands each
operation's messages to ``publish`` under its lock; ``publish`` only queues them, so a slow or stuck client
never holds up the engine. Lock order: the engine's lock, then this server's; never the other way round.

Protocol, as the venue's:
- the first client message subscribes: market ``{"type": "market", "assets_ids": [...], "initial_dump": true,
  "custom_feature_enabled": bool}``, user ``{"type": "user", "auth": {"apiKey", "secret", "passphrase"},
  "markets": [condition ids]}`` (empty or missing: all). Anything else first, a ``PING`` included, closes the
  socket with code 1008; so do wrong user credentials;
- later ``{"operation": "subscribe" | "unsubscribe", "assets_ids" | "markets": [...]}``; a market subscribe
  (first or later) answers with a JSON array of ``book`` snapshots of the known assets it newly subscribes
  (unknown ids are ignored); text ``PING`` is answered ``PONG``; a malformed message after the subscribe is
  ignored;
- a subscribe for an asset the connection already subscribes is ignored: no new ``book`` (FACTS.md Part 0,
  0.5, NautilusTrader docs); unsubscribe, then subscribe, gives a fresh one;
- the initial ``{"type": "market", ...}`` sent again on a connection is answered with the text
  ``INVALID OPERATION`` and changes nothing (FACTS.md Part 0, 0.5, NautilusTrader PR 3717);
- at most 500 assets per market connection (FACTS.md Part 0, 0.5): assets beyond that are not subscribed (no
  snapshot, no messages);
- a ``book`` of a token is also pushed after an operation in which it traded, after that operation's
  ``price_change`` and ``last_trade_price`` (FACTS.md Part 0, 0.5; built by the engine's ``_flush``);
- later messages are single JSON objects.

Fault controls for tests: ``drop`` (close abruptly, as a network failure), ``silence`` (open connections stay
open and answer PING but send no more events), ``stop_subscription`` (open connections stop sending one token
until it is subscribed again). With a real clock, while a market-channel client is subscribed, a ticker calls
``engine.advance()`` every 0.1 s so the living market moves without HTTP requests; never on a SimulatedClock
(tests and benchmarks drive time there).
"""
from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from bot.clock import SimulatedClock
from bot.sim.auth import ApiKeys
from bot.sim.engine import Engine, MarketEvent, UserEvent

MARKET, USER = "market", "user"
CHANNELS = (MARKET, USER)
PATHS = {"/ws/market": MARKET, "/ws/user": USER}
POLICY_VIOLATION = 1008
GOING_AWAY = 1001
CLOSE_TIMEOUT = 2.0   # seconds a peer has to answer our close frame before its socket is closed anyway
STOP_SECONDS = 5.0    # what stop() waits at most for the connections to end
MAX_ASSETS = 500   # per market connection (FACTS.md Part 0, 0.5)
INVALID_OPERATION = "INVALID OPERATION"
TICK_SECONDS = 0.1
log = logging.getLogger(__name__)
#: websockets' own log (a line per connection opened or closed at INFO): warnings only, as the HTTP side is quiet.
_ws_log = logging.getLogger(__name__ + ".websockets")
_ws_log.setLevel(logging.WARNING)


def _dumps(payload) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _ids(value) -> list[str]:
    """A list of ids from a client message (anything else counts as none)."""
    return [str(v) for v in value] if isinstance(value, list) else []


class _Client:
    """One open connection: its subscription and its outgoing queue, which its sender thread writes out."""

    def __init__(self, ws: ServerConnection, channel: str):
        self.ws = ws
        self.channel = channel
        self.out: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.subscribed = False
        self.silenced = False
        self.assets: set[str] = set()          # market channel: the tokens it hears about
        self.custom = False                    # market channel: custom_feature_enabled
        self.api_key = ""                      # user channel: the authenticated key and its EOA
        self.address = ""
        self.markets: set[str] | None = None   # user channel: condition ids, None = all markets
        self.excluded: set[str] = set()        # user channel: unsubscribed while subscribed to all

    def wants_market(self, condition_id: str) -> bool:
        condition_id = condition_id.lower()
        if condition_id in self.excluded:
            return False
        return self.markets is None or condition_id in self.markets

    def send_loop(self) -> None:
        """Write the queued messages out until the None that ends the connection."""
        while (text := self.out.get()) is not None:
            try:
                self.ws.send(text)
            except Exception:   # closed or broken under us: the handler thread sees it and cleans up
                return

    def close(self, code: int) -> None:
        """End the connection with a close frame (``code``), as the venue going away does; then the socket, if
        the peer did not complete the closing handshake within CLOSE_TIMEOUT."""
        self.out.put(None)
        try:
            self.ws.close(code)
        except Exception:   # already closed or broken
            pass
        self.ws.close_socket()

    def kill(self) -> None:
        """End the connection as a network failure would: no close frame, just the TCP connection gone."""
        self.out.put(None)
        try:
            self.ws.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ws.close_socket()


class FeedServer:
    """The market and user channels of one simulated exchange (``start`` returns the ``ws://`` base url)."""

    def __init__(self, engine: Engine, keys: ApiKeys, accounts_of: Callable[[str], set[str]]):
        """``accounts_of(address)``: the accounts (lower case) an API key's EOA trades from (itself, the funder
        of its orders, its deposit wallet); the user channel sends the events of their orders."""
        self.engine = engine
        self.keys = keys
        self.accounts_of = accounts_of
        self._lock = threading.Lock()
        self._clients: set[_Client] = set()
        self._opened: Counter[str] = Counter()
        self._messages: Counter[str] = Counter()
        self._pings = 0
        self._market_live = False   # some market connection is subscribed to some token (the ticker runs)
        self._user_live = False
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:``port`` (0: a free one); returns ``ws://127.0.0.1:PORT``."""
        # No protocol-level pings (clients keep alive with the text PING, as on the venue) and no compression
        # (loopback: it would only add latency).
        self._server = serve(self._handle, "127.0.0.1", port, process_request=self._check_path,
                             compression=None, ping_interval=None, close_timeout=CLOSE_TIMEOUT, logger=_ws_log)
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._server.serve_forever, name="sim-ws", daemon=True)]
        if not isinstance(self.engine.clock, SimulatedClock):
            self._threads.append(threading.Thread(target=self._tick, name="sim-ws-ticker", daemon=True))
        for thread in self._threads:
            thread.start()
        self.engine.feed = self
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}"

    def stop(self) -> None:
        """Close every connection (code 1001, going away) and the listening socket; idempotent. Returns once the
        connections' handlers have ended (within about ``STOP_SECONDS``).

        The connections are closed here rather than left to ``Server.shutdown()``: websockets 15 (the version
        polymarket-client allows, below 16) only closes the listening socket there, and open connections would
        stay up answering PING (and keep the process alive: its handler threads are not daemons). A connection
        whose handshake completes while this runs is closed by its handler (it sees ``_stopping``)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        self.engine.feed = None
        server.shutdown()   # no new connections (on websockets >= 16 it closes the open ones too)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        with self._lock:
            clients = list(self._clients)
        closers = [threading.Thread(target=c.close, args=(GOING_AWAY,), name="sim-ws-close", daemon=True)
                   for c in clients]
        for thread in closers:   # in parallel: a peer that never answers the close costs CLOSE_TIMEOUT once
            thread.start()
        deadline = time.monotonic() + STOP_SECONDS
        for thread in closers:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline:   # the handlers' own clean-up (_forget) done
            with self._lock:
                if not self._clients:
                    break
            time.sleep(0.01)
        with self.engine.lock:
            with self._lock:
                self._clients.clear()
            self.engine.unwatch_books(set())
            self.engine.watch_users(False)

    def _tick(self) -> None:
        """Real clock only: keep the living market (and due delayed orders and confirmations) moving while
        someone listens, as the venue's books move without anyone asking."""
        while not self._stopping.wait(TICK_SECONDS):
            try:
                if self._market_live:
                    self.engine.advance()
                elif self._user_live:
                    self.engine.run_due()
            except Exception:
                log.exception("sim feed ticker")

    # -- connections ----------------------------------------------------------------------------

    @staticmethod
    def _path(request: Request) -> str:
        return request.path.split("?", 1)[0].rstrip("/")

    def _check_path(self, ws: ServerConnection, request: Request) -> Response | None:
        """Only the two channels exist: any other path is refused at the handshake (HTTP 404)."""
        if self._path(request) not in PATHS:
            return ws.respond(404, "no such channel: use /ws/market or /ws/user\n")
        return None

    def _handle(self, ws: ServerConnection) -> None:
        """One connection's handler thread: read the client's messages until the connection ends."""
        assert ws.request is not None   # the handshake is done
        client = _Client(ws, PATHS[self._path(ws.request)])
        sender = threading.Thread(target=client.send_loop, name=f"sim-ws-{client.channel}-send", daemon=True)
        with self._lock:
            stopping = self._stopping.is_set()   # stop() set it before listing the clients (under this lock)
            if not stopping:
                self._clients.add(client)
                self._opened[client.channel] += 1
        if stopping:   # the handshake ended while the server stops: going away at once
            client.close(GOING_AWAY)
            return
        sender.start()
        try:
            for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                try:
                    if not self._on_message(client, text):
                        break
                except Exception:   # a message the code did not foresee must not end the connection
                    log.exception("sim feed: message %r", text[:200])
        except ConnectionClosed:
            pass
        finally:
            self._forget(client)
            client.out.put(None)
            sender.join(timeout=1)

    def _forget(self, client: _Client) -> None:
        with self.engine.lock:
            with self._lock:
                self._clients.discard(client)
            self._sync_watch()

    def _sync_watch(self) -> None:
        """Tell the engine what is listened to now (call with the engine's lock held): books of no subscribed
        token are no longer diffed, user events no longer built without a user subscriber."""
        with self._lock:
            keep: set[str] = set()
            for c in self._clients:
                if c.channel == MARKET:
                    keep |= c.assets
            users = any(c.subscribed for c in self._clients if c.channel == USER)
        self.engine.unwatch_books(keep)
        self.engine.watch_users(users)
        self._market_live, self._user_live = bool(keep), users

    def _refuse(self, client: _Client, reason: str) -> bool:
        client.ws.close(POLICY_VIOLATION, reason)
        return False

    def _on_message(self, client: _Client, text: str) -> bool:
        """Handle one client message; False when the connection has been closed."""
        if text.strip() == "PING":
            with self._lock:
                self._pings += 1
            if not client.subscribed:
                return self._refuse(client, "PING before subscribe")
            client.out.put("PONG")   # even on a silenced connection: that is the failure it reproduces
            return True
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if not client.subscribed:
            if client.channel == MARKET:
                return self._first_market(client, msg)
            return self._first_user(client, msg)
        if not isinstance(msg, dict):
            return True   # malformed after the subscribe: ignored, as the venue does
        op = str(msg.get("operation") or "").lower()
        if client.channel == MARKET:
            if "custom_feature_enabled" in msg:
                client.custom = bool(msg["custom_feature_enabled"])
            if op == "subscribe":
                self._add_assets(client, _ids(msg.get("assets_ids")), snapshot=True)
            elif not op and str(msg.get("type", "")).lower() == MARKET:
                client.out.put(INVALID_OPERATION)   # the initial subscribe, twice (FACTS.md Part 0, 0.5)
            elif op == "unsubscribe":
                self._remove_assets(client, _ids(msg.get("assets_ids")))
        elif op in ("subscribe", "unsubscribe"):
            self._change_markets(client, {m.lower() for m in _ids(msg.get("markets"))}, op == "subscribe")
        return True

    # -- market channel -------------------------------------------------------------------------

    def _first_market(self, client: _Client, msg) -> bool:
        if not (isinstance(msg, dict) and str(msg.get("type", "")).lower() == MARKET
                and isinstance(msg.get("assets_ids"), list)):
            return self._refuse(client, 'subscribe first: {"type": "market", "assets_ids": [...]}')
        client.custom = bool(msg.get("custom_feature_enabled", False))
        self._add_assets(client, _ids(msg["assets_ids"]), snapshot=msg.get("initial_dump", True) is not False)
        return True

    def _add_assets(self, client: _Client, tokens: list[str], snapshot: bool) -> None:
        """Subscribe ``client`` to ``tokens``: their snapshots are queued (as one array) under the engine's lock,
        so they come before any change published after them. Tokens it already subscribes are ignored (no new
        snapshot), and so are unknown ones and those beyond ``MAX_ASSETS`` (FACTS.md Part 0, 0.5)."""
        with self.engine.lock:
            with self._lock:
                fresh: list[str] = []
                for token in dict.fromkeys(tokens):
                    if len(client.assets) + len(fresh) >= MAX_ASSETS:
                        break
                    if token not in client.assets and self.engine.market_by_token(token) is not None:
                        fresh.append(token)
            books = self.engine.watch_books(fresh)
            with self._lock:
                client.assets.update(b["asset_id"] for b in books)
                client.subscribed = True
                if snapshot and books and not client.silenced:
                    self._enqueue(client, _dumps(books), [b["event_type"] for b in books])
            self._market_live = self._market_live or bool(books)

    def _remove_assets(self, client: _Client, tokens: list[str]) -> None:
        with self.engine.lock:
            with self._lock:
                client.assets.difference_update(tokens)
            self._sync_watch()

    # -- user channel ---------------------------------------------------------------------------

    def _first_user(self, client: _Client, msg) -> bool:
        if not (isinstance(msg, dict) and str(msg.get("type", "")).lower() == USER):
            return self._refuse(client, 'subscribe first: {"type": "user", "auth": {...}, "markets": [...]}')
        auth = msg.get("auth")
        rec = self.keys.check(auth.get("apiKey"), auth.get("secret"), auth.get("passphrase")) \
            if isinstance(auth, dict) else None
        if rec is None:
            return self._refuse(client, "invalid auth: wrong or missing API credentials (apiKey, secret, passphrase)")
        markets = {m.lower() for m in _ids(msg.get("markets"))}
        with self.engine.lock:
            with self._lock:
                client.api_key, client.address = rec["apiKey"], rec["address"]
                client.markets = markets or None
                client.subscribed = True
            self._sync_watch()
        return True

    def _change_markets(self, client: _Client, markets: set[str], subscribe: bool) -> None:
        with self._lock:
            if subscribe:
                client.excluded -= markets
                if client.markets is not None:
                    client.markets |= markets
            elif client.markets is None:
                client.excluded |= markets
            else:
                client.markets -= markets

    # -- publishing -----------------------------------------------------------------------------

    def _enqueue(self, client: _Client, text: str, event_types: Iterable[str]) -> None:
        """Queue one message for ``client`` and count its events (call with this server's lock held)."""
        client.out.put(text)
        for event_type in event_types:
            self._messages[event_type] += 1

    def publish(self, market: list[MarketEvent], user: list[UserEvent]) -> None:
        """Queue one engine operation's messages, in order, for the connections they concern. Called under the
        engine's lock: it only queues (each message is serialized once, if anyone wants it)."""
        with self._lock:
            listeners = [c for c in self._clients if c.subscribed and not c.silenced]
            markets = [c for c in listeners if c.channel == MARKET]
            users = [c for c in listeners if c.channel == USER]
            for tokens, custom_only, payload in market:
                text = ""
                for c in markets:
                    if (c.custom or not custom_only) and any(t in c.assets for t in tokens):
                        text = text or _dumps(payload)
                        self._enqueue(c, text, (payload["event_type"],))
            if not (user and users):
                return
            accounts = {c: self.accounts_of(c.address) for c in users}
            for account, owner, payload in user:
                text = ""
                for c in users:
                    if (owner == c.api_key or account in accounts[c]) and c.wants_market(payload["market"]):
                        text = text or _dumps(payload)
                        self._enqueue(c, text, (payload["event_type"],))

    # -- fault controls and stats ---------------------------------------------------------------

    def _matching(self, channel: str | None) -> list[_Client]:
        if channel is not None and channel not in CHANNELS:
            raise ValueError(f"channel must be 'market', 'user' or None, not {channel!r}")
        return [c for c in self._clients if channel is None or c.channel == channel]

    def drop(self, channel: str | None = None) -> None:
        """Close every connection of ``channel`` (both when None) abruptly, as a network failure would."""
        with self._lock:
            victims = self._matching(channel)
            self._clients.difference_update(victims)
        for c in victims:
            c.kill()
        with self.engine.lock:
            self._sync_watch()

    def silence(self, channel: str | None = None) -> None:
        """The connections of ``channel`` open now send no more events (PING still gets PONG)."""
        with self._lock:
            for c in self._matching(channel):
                c.silenced = True

    def stop_subscription(self, token_id) -> None:
        """The open market connections stop sending anything about ``token_id`` (until subscribed again)."""
        with self.engine.lock:
            with self._lock:
                for c in self._matching(MARKET):
                    c.assets.discard(str(token_id))
            self._sync_watch()

    def stats(self) -> dict:
        """{"connections": open per channel, "opened": ever per channel, "messages": {event_type: n}, "pings"}."""
        with self._lock:
            open_now = Counter(c.channel for c in self._clients)
            return {"connections": {ch: open_now[ch] for ch in CHANNELS},
                    "opened": {ch: self._opened[ch] for ch in CHANNELS},
                    "messages": dict(self._messages), "pings": self._pings}
