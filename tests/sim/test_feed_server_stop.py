"""Stopping the simulator closes its WebSocket connections itself (code 1001), whatever the websockets version:
websockets 15 (the one polymarket-client allows) only closes the listening socket in ``Server.shutdown()``, which
left open connections answering PING after the sim had stopped, and the process waiting on their threads."""
from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from bot.sim import SimExchange
from bot.sim.feeds import CLOSE_TIMEOUT, GOING_AWAY


def _left_over(before: set[threading.Thread]) -> list[str]:
    """Threads started since ``before`` that still run and would keep the process alive, or are the sim's feeds'."""
    return [t.name for t in threading.enumerate()
            if t not in before and t.is_alive() and (not t.daemon or t.name.startswith("sim-ws"))]


def test_stop_closes_every_connection_with_going_away():
    before = set(threading.enumerate())
    sim = SimExchange(seed=1).start()
    market = sim.create_market("Stop?", volatility=0)
    with ExitStack() as stack:
        stack.callback(sim.stop)   # (idempotent) if an assertion fails before the stop under test
        clients = [stack.enter_context(connect(sim.ws_url + "/ws/market", ping_interval=None)) for _ in range(3)]
        for ws in clients[:2]:   # two subscribed, one never says anything
            ws.send(json.dumps({"type": "market", "assets_ids": market["token_ids"]}))
            ws.recv(timeout=2)
        assert sim.feed_stats()["connections"]["market"] == 3
        started = time.monotonic()
        sim.stop()
        assert time.monotonic() - started < 2
        for ws in clients:
            with pytest.raises(ConnectionClosed) as closed:
                ws.send("PING")
                ws.recv(timeout=2)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == GOING_AWAY
        assert sim.feed_stats()["connections"] == {"market": 0, "user": 0}
        deadline = time.monotonic() + 2
        while _left_over(before) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _left_over(before) == []
        sim.stop()   # idempotent


def test_a_peer_that_never_answers_the_close_does_not_hold_up_stop():
    sim = SimExchange(seed=1).start()
    host, port = sim.ws_url.removeprefix("ws://").split(":")
    raw = socket.create_connection((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall((f"GET /ws/market HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    try:
        assert raw.recv(4096).startswith(b"HTTP/1.1 101")
        deadline = time.monotonic() + 2
        while sim.feed_stats()["connections"]["market"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        sim.stop()   # the close frame goes unanswered: the socket is closed after CLOSE_TIMEOUT
        assert time.monotonic() - started < CLOSE_TIMEOUT + 1.5
        assert sim.feed_stats()["connections"]["market"] == 0
        raw.settimeout(2)
        data = b""
        while chunk := raw.recv(4096):
            data += chunk
        assert data[:1] == b"\x88"   # it did get the close frame first
    finally:
        raw.close()
        sim.stop()
