import logging

from bot.config import default_config, with_overrides
from bot.logger import get_logger, redact, register_secret

SECRET = "0x" + "5f" * 32


def test_secret_is_scrubbed_from_messages_and_tracebacks(tmp_path):
    cfg = with_overrides(default_config(), bot__log_file=str(tmp_path / "logs" / "bot.log"))
    log = get_logger(cfg, name="bot.test_redact")
    register_secret(SECRET)
    log.info("key is %s", SECRET)
    try:
        raise ValueError(f"bad key {SECRET[2:]}")
    except ValueError:
        log.exception("failed")
    for h in log.handlers:
        h.flush()
    text = (tmp_path / "logs" / "bot.log").read_text()
    assert SECRET not in text and SECRET[2:] not in text
    assert text.count("***") == 2 and "ValueError" in text
    assert redact(f"a {SECRET} b") == "a *** b"


def test_get_logger_is_idempotent(tmp_path):
    cfg = with_overrides(default_config(), bot__log_file=None)
    a = get_logger(cfg, name="bot.test_idem")
    b = get_logger(cfg, name="bot.test_idem")
    assert a is b and len(b.handlers) == 1
    assert logging.getLogger("py_clob_client_v2").level == logging.CRITICAL


def test_a_log_file_that_cannot_be_opened_is_a_config_error(tmp_path):
    import pytest

    from bot.errors import ConfigError

    (tmp_path / "afile").write_text("x")
    cfg = with_overrides(default_config(), bot__log_file=str(tmp_path / "afile" / "bot.log"))
    with pytest.raises(ConfigError, match=r"bot.log_file: .*afile/bot.log cannot be opened for writing"):
        get_logger(cfg, name="bot.test_bad_log")
