"""Balance locks: the venue refusing every order of the account for "not enough balance / allowance" while the
balance and allowances read right (a server-side "sum of matched orders" that stops decrementing, until the
venue resets it; FACTS.md Part 0, 0.4: py-clob-client issues 287 and 342).

For a TP/SL bot that is a stop-loss that cannot sell. What the bot does: it warns and alerts once, keeps every
exit retrying with backoff (the stop-loss keeps protecting and re-anchoring as ever; exits are never paused),
and opens no new position until an order goes through again, or, when nothing is being sent, until
``PROBE_AFTER_S`` after the last refusal (then one entry is tried: it is the probe).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from bot.clock import Clock

log = logging.getLogger("bot.balance_lock")

#: With no order going through, a new entry is tried this long after the last refusal (the venue resets its
#: counter at some point; an entry refused again keeps the lock).
PROBE_AFTER_S = 300.0
#: A take-profit that waits out a lock is tried again this often (it is a probe too; meanwhile it is watched).
TP_PROBE_S = 30.0
#: Refusals in a row (with the balance there, no order going through between them) that make a lock: one alone
#: may be the venue's balance cache lagging a fill.
LOCK_STRIKES = 2


class BalanceLock:
    """Whether the account looks balance-locked: ``refused`` when an order was refused for balance although a
    balance read just before showed enough, ``went_through`` when the venue took an order."""

    def __init__(self, clock: Clock, alert: Callable[[str, str], object] | None = None):
        self.clock = clock
        self.alert = alert or (lambda event, message: None)
        self.since: float | None = None
        self.last_refusal: float | None = None
        self.refusals = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def refused(self, what: str) -> None:
        """An order (``what`` says which) was refused for balance while the balance read showed enough; the
        LOCK_STRIKES-th in a row declares the lock."""
        now = self.clock.time()
        self.refusals += 1
        self.last_refusal = now
        if self.since is None and self.refusals >= LOCK_STRIKES:
            self.since = now
            note = (f"the venue refuses orders for 'not enough balance / allowance' while the balance reads right "
                    f"({what}): a balance lock on the venue's side. Exits keep retrying with backoff and stop-losses "
                    "stay watched; no new position opens until an order goes through")
            log.warning("BALANCE LOCK: %s", note)
            self.alert("balance_lock", note)

    def went_through(self) -> None:
        """The venue took an order: the lock, if any, is over."""
        if self.since is not None:
            log.warning("Balance lock over after %.0f s and %d refused order(s): an order went through",
                        self.clock.time() - self.since, self.refusals)
            self.alert("balance_lock", "over: orders go through again")
        self.since = self.last_refusal = None
        self.refusals = 0

    def blocks_entries(self) -> bool:
        """True while new positions must wait (a lock seen, and its last refusal less than PROBE_AFTER_S ago)."""
        return self.since is not None and self.last_refusal is not None \
            and self.clock.time() - self.last_refusal < PROBE_AFTER_S

    def may_place_tp(self) -> bool:
        """Whether a TP that waits may be tried now: no lock, or TP_PROBE_S since the last refusal."""
        return self.since is None or self.last_refusal is None or self.clock.time() - self.last_refusal >= TP_PROBE_S
