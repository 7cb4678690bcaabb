"""Named crash points for the crash tests: ``BOT_CRASHPOINTS=after_buy,before_sell`` makes the process
die (as SIGKILL would) the first time it passes one of them. In-process tests install a hook instead
(``set_hook``) that raises where the process would die. Unset in normal use: a no-op.

Points: before_send (an order's id is saved, the order not sent yet), after_buy, after_tp, after_cancel,
before_sell, after_sell (an answer arrived, not recorded yet), history_written (closed positions are in the
history, the state file not yet saved without them)."""
from __future__ import annotations

import os
from collections.abc import Callable

_ARMED = {p.strip() for p in os.environ.get("BOT_CRASHPOINTS", "").split(",") if p.strip()}
_hook: Callable[[str], None] | None = None


def set_hook(hook: Callable[[str], None] | None) -> None:
    """Call ``hook(name)`` at every crash point (tests: raise to simulate a kill there); None removes it."""
    global _hook
    _hook = hook


def crashpoint(name: str) -> None:
    """Die here if the crash test armed ``name``."""
    if _hook is not None:
        _hook(name)
    if name in _ARMED:
        os._exit(137)
