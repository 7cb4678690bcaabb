from types import SimpleNamespace

import requests

from bot.alerts import Alerter
from bot.logger import register_secret


class Session:
    def __init__(self, status=200, error=None):
        self.status, self.error, self.posts = status, error, []

    def post(self, url, json=None, timeout=None):
        self.posts.append((url, json))
        if self.error:
            raise self.error
        return SimpleNamespace(status_code=self.status)


def test_one_body_for_slack_discord_and_telegram():
    s = Session()
    assert Alerter("https://hooks.example/x", session=s).send("stop_loss", "sold 10 @ 0.4")
    url, body = s.posts[0]
    assert body["text"] == body["content"] == "[polymarket-bot] stop_loss: sold 10 @ 0.4"
    assert body["event"] == "stop_loss"


def test_failures_are_counted_not_raised():
    a = Alerter("https://hooks.example/x", session=Session(error=requests.ConnectionError("down")))
    assert a.send("pause", "x") is False and a.failed == 1
    b = Alerter("https://hooks.example/x", session=Session(status=500))
    assert b.send("pause", "x") is False and b.failed == 1
    assert Alerter(None).send("pause", "x") is False


def test_secrets_never_leave_in_an_alert():
    secret = "0x" + "7e" * 32
    register_secret(secret)
    s = Session()
    Alerter("https://hooks.example/x", session=s).send("needs_attention", f"oops {secret}")
    assert secret not in s.posts[0][1]["text"] and "***" in s.posts[0][1]["text"]
