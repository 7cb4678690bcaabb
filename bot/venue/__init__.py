"""Venues the trader talks to: the live CLOB (bot.venue.live) and the paper venue for dry-run
(bot.venue.paper). Both implement :class:`bot.venue.base.Venue`."""
from bot.venue.base import (  # noqa: F401
    Book,
    CancelResult,
    Fill,
    MarketInfo,
    OrderState,
    OrderStatus,
    Venue,
)
