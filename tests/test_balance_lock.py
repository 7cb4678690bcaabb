"""Balance locks (FACTS.md Part 0, 0.4): warned and alerted once, entries wait, exits never do."""
from bot.balance_lock import PROBE_AFTER_S, TP_PROBE_S, BalanceLock
from bot.clock import SimulatedClock


def test_a_lock_is_told_once_blocks_entries_and_ends_when_an_order_goes_through():
    clock, alerts = SimulatedClock(), []
    lock = BalanceLock(clock, lambda event, message: alerts.append((event, message)))
    assert not lock.active and not lock.blocks_entries()
    lock.refused("the exit sell of p1")
    assert not lock.active and not alerts   # one refusal may be the balance cache lagging a fill
    lock.refused("the exit sell of p1")
    assert lock.active and lock.blocks_entries() and len(alerts) == 1 and "balance lock" in alerts[0][1]
    lock.went_through()
    assert not lock.active and not lock.blocks_entries()
    assert alerts[-1] == ("balance_lock", "over: orders go through again")


def test_with_nothing_sent_an_entry_probes_the_lock_after_a_while():
    clock = SimulatedClock()
    lock = BalanceLock(clock)
    lock.refused("an entry BUY")
    lock.refused("an entry BUY")
    clock.advance(PROBE_AFTER_S - 1)
    assert lock.blocks_entries()
    clock.advance(2)
    assert not lock.blocks_entries() and lock.active   # one entry may try; refused again, the lock holds
    lock.refused("an entry BUY")
    assert lock.blocks_entries()


def test_a_waiting_take_profit_probes_the_lock_sooner_than_an_entry():
    clock = SimulatedClock()
    lock = BalanceLock(clock)
    assert lock.may_place_tp()
    lock.refused("the TP of p1")
    lock.refused("the TP of p1")
    assert not lock.may_place_tp()
    clock.advance(TP_PROBE_S)
    assert lock.may_place_tp() and lock.blocks_entries()
