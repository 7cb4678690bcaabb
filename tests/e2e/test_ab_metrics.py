"""A/B measurement through the real SDK on bot/sim: what the bot charges to positions and modes adds up
to exactly what the simulated exchange counted; alerts reach a webhook; a dead webhook changes nothing."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bot.alerts import Alerter
from bot.position_manager import CloseReason, ExitMode, PositionState
from tests.e2e.conftest import Harness


def test_per_position_and_per_mode_calls_equal_the_simulators_counts(sim, tmp_path):
    a = sim.create_market("A?", yes_price=0.5, volatility=0)
    b = sim.create_market("B?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path, trading__ab_test_ratio=0.5, trading__ab_test_seed=1, capital__max_positions=2)
    sim.reset_request_counts()   # the venue's own start-up (API key) is not the bot's trading
    h.loop(2)
    assert {p.exit_mode for p in h.positions} == {ExitMode.LIMIT_ORDERS, ExitMode.MONITOR}
    h.no_new_trades()
    sim.set_price(a["token_ids"][0], 0.40)
    sim.set_price(b["token_ids"][0], 0.40)
    h.clock.advance(30)
    h.loop(2)
    assert all(p.status == PositionState.CLOSED and p.close_reason == CloseReason.STOP_LOSS for p in h.positions)
    sim_total = sim.request_counts()["total"]
    by_hour = h.bot.state.counters["api_calls_by_hour"]
    charged_modes = sum(n for modes in by_hour.values() for bucket in modes.values() for n in bucket.values())
    assert round(charged_modes, 6) == sim_total
    shared = sum(n for modes in by_hour.values() for n in modes.get("shared", {}).values())
    per_position = sum(p.metrics["api_calls"]["total"] for p in h.positions)
    assert round(per_position + shared, 6) == sim_total
    lim = next(p for p in h.positions if p.exit_mode == ExitMode.LIMIT_ORDERS)
    mon = next(p for p in h.positions if p.exit_mode == ExitMode.MONITOR)
    # Both stop-losses fire in one loop: a mass exit, whose one DELETE /orders (the TP) and one POST /orders (both
    # exit sells) are shared by the two positions, half each.
    assert lim.metrics["api_calls"]["orders"] == 2.5    # buy, TP, half the exit sells' batch
    assert lim.metrics["api_calls"]["cancels"] == 0.5   # half the batched cancel (its TP)
    assert mon.metrics["api_calls"]["orders"] == 1.5 and mon.metrics["api_calls"]["cancels"] == 0.5
    assert lim.metrics["trigger_bid"] == "0.39"


class Receiver:
    """A webhook on loopback that records what it receives."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def stop_loss_run(sim, tmp_path, url):
    m = sim.create_market("Alert?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path)
    h.bot.manage.alerter = Alerter(url, timeout_s=1)
    h.loop()
    h.no_new_trades()
    sim.set_price(m["token_ids"][0], 0.40)
    h.loop()
    return h


def test_webhook_gets_stop_loss_and_attention_alerts(sim, tmp_path):
    receiver = Receiver()
    try:
        h = stop_loss_run(sim, tmp_path, receiver.url)
        assert [r["event"] for r in receiver.received] == ["stop_loss"]
        body = receiver.received[0]
        assert body["text"] == body["content"] and "Alert?" in body["text"] and "pnl $-" in body["text"]
        h.bot.manage.pause("test pause")
        assert receiver.received[-1]["event"] == "pause" and "test pause" in receiver.received[-1]["text"]
    finally:
        receiver.close()


def test_dead_webhook_does_not_break_the_loop(sim, tmp_path):
    receiver = Receiver()
    dead = receiver.url
    receiver.close()   # nothing listens there any more
    h = stop_loss_run(sim, tmp_path, dead)
    pos = h.positions[0]
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert h.bot.manage.alerter.failed == 1 and h.bot.consecutive_failures == 0
