"""Logging: a concise console line per event, a full log file, and secrets scrubbed everywhere."""
from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import BotConfig

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
MASK = "***"


def register_secret(value: str | None) -> None:
    """Never let ``value`` (nor its form without 0x) reach a log line or a logged traceback."""
    if not value or len(value) < 6:
        return
    with _secrets_lock:
        _secrets.add(value)
        if value.lower().startswith("0x"):
            _secrets.add(value[2:])


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ***."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats, then scrubs the whole text (message, arguments, exception and stack)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


#: The name of the handlers get_logger adds (and replaces when called again).
_BOT_HANDLER = "bot.get_logger"


def get_logger(config: BotConfig | None = None, name: str = "bot") -> logging.Logger:
    """The bot's logger: console (stderr) and, if configured, a log file. Idempotent."""
    logger = logging.getLogger(name)
    level = getattr(logging, config.bot.log_level) if config is not None else logging.INFO
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        if handler.get_name() == _BOT_HANDLER:
            logger.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(RedactingFormatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    console.set_name(_BOT_HANDLER)
    logger.addHandler(console)
    log_file = config.bot.log_file if config is not None else None
    if config is not None and log_file:
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            from bot.errors import ConfigError

            src = config.source_path or "config"
            raise ConfigError(f"{src}: bot.log_file: {log_file} cannot be opened for writing "
                              f"({exc.strerror or exc})") from None
        fh.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        fh.set_name(_BOT_HANDLER)
        logger.addHandler(fh)
    # The SDK logs every non-200 at ERROR (expected refusals included) and httpx every request at INFO.
    logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logger
