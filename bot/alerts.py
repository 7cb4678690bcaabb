"""Alerts to a webhook (Slack, Discord, or a Telegram bot's sendMessage URL with ?chat_id=...).

One JSON body serves all three: Slack reads ``text``, Discord ``content``, Telegram ``text`` (with
``chat_id`` from the URL's query). A failing webhook is logged and never stops the bot.
"""
from __future__ import annotations

import logging

import requests

from bot.logger import redact

log = logging.getLogger("bot.alerts")


class Alerter:
    """Sends one-line alerts; a no-op without a URL."""

    def __init__(self, url: str | None, timeout_s: float = 3.0, session: requests.Session | None = None):
        self.url = url
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.sent = 0
        self.failed = 0

    def send(self, event: str, message: str) -> bool:
        """Post ``message``; True when the webhook accepted it."""
        if not self.url:
            return False
        text = redact(f"[polymarket-bot] {event}: {message}")
        try:
            resp = self.session.post(self.url, json={"text": text, "content": text, "event": event},
                                     timeout=self.timeout_s)
            ok = 200 <= resp.status_code < 300
        except requests.RequestException as exc:
            log.warning("Alert webhook unreachable (%s): %s", type(exc).__name__, event)
            self.failed += 1
            return False
        if not ok:
            log.warning("Alert webhook answered HTTP %s for %s", resp.status_code, event)
            self.failed += 1
            return False
        self.sent += 1
        return True
