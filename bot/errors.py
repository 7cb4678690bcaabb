"""The bot's own error types. The rest of the bot never sees SDK or HTTP-library exceptions."""
from __future__ import annotations


class BotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigError(BotError):
    """A config file or environment problem; the message names the file/variable, field and reason."""


class StateFileError(BotError):
    """positions.json cannot be read or written safely; the message names the file and the reason."""


class VenueError(BotError):
    """Something went wrong talking to the venue (live CLOB, Gamma, or the paper venue).

    ``endpoint`` names the call, ``status`` the HTTP status when there was one.
    """

    def __init__(self, message: str, *, endpoint: str = "", status: int | None = None):
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status

    def __str__(self) -> str:
        where = f" [{self.endpoint}]" if self.endpoint else ""
        code = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.message}{where}{code}"


class TemporaryVenueError(VenueError):
    """Worth retrying later: rate limit, engine restart (425), 5xx, cancel-only (503), transport error
    on a read. Not used for order placement whose outcome is unknown (see UnknownOutcomeError)."""


class OrderRejected(VenueError):
    """The venue refused the request for good (4xx with an error message): nothing happened."""

    @property
    def is_balance(self) -> bool:
        """True for 'not enough balance / allowance' (reserved shares, stale balance cache...)."""
        return "not enough balance" in self.message.lower()


class UnknownOutcome(VenueError):
    """An order was sent but we do not know whether the venue took it (timeout, 5xx on POST).
    The caller must look for the order before sending another."""


class MalformedResponse(VenueError):
    """The venue answered with a shape we cannot parse; logged with its endpoint and skipped."""
