"""Named crash points for the crash test: ``BOT_CRASHPOINTS=after_buy,before_sell`` makes the process
die (as SIGKILL would) the first time it passes one of them. Unset in normal use: a no-op."""
from __future__ import annotations

import os

_ARMED = {p.strip() for p in os.environ.get("BOT_CRASHPOINTS", "").split(",") if p.strip()}


def crashpoint(name: str) -> None:
    """Die here if the crash test armed ``name``."""
    if name in _ARMED:
        os._exit(137)
