from collections import Counter
from datetime import UTC, datetime

from bot.metrics import SHARED, CallMeter, kind_of
from bot.position_manager import BotState, ExitMode, Position

NOW = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)


class Source:
    def __init__(self):
        self.counts = Counter()

    def api_calls(self):
        return dict(self.counts)


def test_kinds():
    assert [kind_of(k) for k in ("POST /order", "DELETE /order", "GET /data/order/{id}", "POST /books")] == \
        ["orders", "cancels", "status_checks", "reads"]


def test_batched_reads_are_shared_and_modes_are_bucketed_per_hour():
    venue, gamma = Source(), Source()
    state = BotState()
    a = Position(token_id="a", exit_mode=ExitMode.LIMIT_ORDERS)
    b = Position(token_id="b", exit_mode=ExitMode.MONITOR)
    meter = CallMeter([venue, gamma], state)
    with meter.attribute([a, b], NOW):
        venue.counts["POST /books"] += 1
    with meter.attribute(a, NOW):
        venue.counts["DELETE /order"] += 1
        venue.counts["POST /order"] += 1
    with meter.attribute(None, NOW):
        gamma.counts["GAMMA GET /markets"] += 1
    assert a.metrics["api_calls"] == {"reads": 0.5, "total": 2.5, "cancels": 1, "orders": 1}
    assert b.metrics["api_calls"] == {"reads": 0.5, "total": 0.5}
    hour = state.counters["api_calls_by_hour"]["2026-11-24T12:00"]
    assert hour["limit_orders"] == {"POST /books": 0.5, "DELETE /order": 1, "POST /order": 1}
    assert hour["monitor"] == {"POST /books": 0.5} and hour[SHARED] == {"GAMMA GET /markets": 1}
    with meter.attribute(a, NOW):
        pass   # nothing asked: nothing charged
    assert a.metrics["api_calls"]["total"] == 2.5
