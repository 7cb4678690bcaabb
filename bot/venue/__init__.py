"""Venues the trader talks to: the live CLOB (bot.venue.live) and the paper venue for dry-run
(bot.venue.paper). Both implement :class:`bot.venue.base.Venue`."""
from typing import TYPE_CHECKING

from bot.venue.base import (
    Book,
    CancelResult,
    Fill,
    MarketInfo,
    OrderState,
    OrderStatus,
    Venue,
)

__all__ = ["Book", "CancelResult", "Fill", "MarketInfo", "OrderState", "OrderStatus", "Venue"]

if TYPE_CHECKING:   # not imported at run time: the live venue loads the SDK
    from bot.venue.live import LiveVenue
    from bot.venue.paper import PaperVenue

    def _implementations(live: LiveVenue, paper: PaperVenue) -> tuple[Venue, Venue]:
        """Never called: mypy checks here that both venues implement the Venue protocol."""
        return live, paper
