"""bot/venue/sdk.py, the one module that imports the unified SDK (polymarket-client): the SDK internals it relies on
are there (a loud failure naming what moved when an upgrade breaks one), order ids computed independently match, the
wallet setup is checked before anything is sent, and signing sends no request."""
from __future__ import annotations

import importlib
import re
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import scanner
from bot.venue import sdk
from bot.wallets import deposit_wallet_address

ROOT = Path(__file__).resolve().parents[1]
CTF = "0xE111180000d2663C0091e4f400237545B87B996B"
NEG_RISK = "0xe2222d279d744050d28e00520010520000310F59"
EXCHANGE_V3 = "0xe3333700cA9d93003F00f0F71f8515005F6c00Aa"
V1_TOKEN = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
V2_TOKEN = str((0x01AB << 104) | 7)   # bits 40..103 zero: a Protocol V2 position id
CREDS = ("k", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=", "p")


def test_the_installed_sdk_is_the_pinned_one():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert pins.get("polymarket-client") == sdk.SDK_PIN, "requirements.txt must pin polymarket-client==SDK_PIN"
    assert sdk.installed_version() == sdk.SDK_PIN, (
        f"polymarket-client {sdk.installed_version()} is installed, bot/venue/sdk.py was written against "
        f"{sdk.SDK_PIN}: reinstall from requirements.txt")


def test_every_sdk_internal_the_bot_uses_is_still_there():
    """bot/venue/sdk.py imports private parts of the SDK (the only way to point it at another host, to sign without
    its own network reads, to build the exact request bodies). An upgrade that moves one must fail here, by name."""
    source = (ROOT / "bot" / "venue" / "sdk.py").read_text()
    used = re.findall(r"^from (polymarket[\w.]*) import \(?([^)]*?)\)?$", source, re.M | re.S)
    assert used, "no polymarket imports found in bot/venue/sdk.py"
    missing = []
    for module, names in used:
        for name in re.findall(r"(\w+)(?: as \w+)?", names.replace("\n", " ")):
            if name == "as":
                continue
            try:
                if not hasattr(importlib.import_module(module), name):
                    missing.append(f"{module}.{name}")
            except ImportError:
                missing.append(module)
    assert not missing, (f"polymarket-client {sdk.installed_version()} lacks {', '.join(sorted(set(missing)))}, which "
                         f"bot/venue/sdk.py uses (written against {sdk.SDK_PIN}): keep the pin, or find where the new "
                         "release moved them and update bot/venue/sdk.py and docs/unified-sdk.md")


@given(st.integers(min_value=0, max_value=2**256 - 1))
def test_the_scanners_v2_rule_is_the_sdks(value):
    token = str(value)
    assert scanner.is_v2_id(token) == sdk.is_v2_id(token)


def test_the_scanners_v2_rule_on_known_ids():
    assert sdk.is_v2_id(V2_TOKEN) and scanner.is_v2_id(V2_TOKEN)
    assert not sdk.is_v2_id(V1_TOKEN) and not scanner.is_v2_id(V1_TOKEN)
    assert not scanner.is_v2_id("not a number") and not scanner.is_v2_id("-5")


# -- sessions without the network ---------------------------------------------------------------------------------

class NoNetwork(httpx.BaseTransport):
    def __init__(self):
        self.requests: list[str] = []

    def handle_request(self, request):
        self.requests.append(f"{request.method} {request.url.path}")
        raise httpx.ConnectError("no network in this test")


class Market(NoNetwork):
    """Answers the one read the SDK's order builder makes by itself (the market, before it refuses a BUY whose
    encoded price could exceed the cap): through the venue's client, counted."""

    def __init__(self, tick: str):
        super().__init__()
        self.tick = tick

    def handle_request(self, request):
        self.requests.append(f"{request.method} {request.url.path}")
        if request.url.path.startswith("/clob-markets/"):
            return httpx.Response(200, json={"t": [{"t": V1_TOKEN, "o": "Yes"}], "mts": float(self.tick), "nr": False,
                                             "fd": {"r": 0, "e": 0}})
        raise httpx.ConnectError("no network in this test")


def session(signature_type=0, deposit=False, key=None, transport=None):
    acct = Account.from_key(key) if key else Account.create()
    funder = deposit_wallet_address(acct.address) if deposit else acct.address
    net = transport or NoNetwork()
    s = sdk.Session("http://venue.test", private_key=acct.key.hex(), funder=funder, signature_type=signature_type,
                    transport=net)
    s.use_credentials(*CREDS)
    for token in (V1_TOKEN, V2_TOKEN):
        s.know_market([token], "0x" + ("ab" if token == V1_TOKEN else "cd") * 32, D("0.01"), False, D("0.02"), 1)
    return s, net, acct


ORDER_FIELDS = [{"name": n, "type": t} for n, t in (
    ("salt", "uint256"), ("maker", "address"), ("signer", "address"), ("tokenId", "uint256"),
    ("makerAmount", "uint256"), ("takerAmount", "uint256"), ("side", "uint8"), ("signatureType", "uint8"),
    ("timestamp", "uint256"), ("metadata", "bytes32"), ("builder", "bytes32"))]
DOMAIN_FIELDS = [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                 {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}]


def eip712_id(order, version: str, exchange: str) -> str:
    """The order id by eth_account's EIP-712 encoder, not by the code under test."""
    message = {"salt": order.salt, "maker": order.maker, "signer": order.signer, "tokenId": int(order.token_id),
               "makerAmount": order.maker_amount, "takerAmount": order.taker_amount,
               "side": 0 if order.side == "BUY" else 1, "signatureType": order.signature_type,
               "timestamp": order.timestamp, "metadata": bytes.fromhex(order.metadata[2:]),
               "builder": bytes.fromhex(order.builder[2:])}
    typed = {"types": {"EIP712Domain": DOMAIN_FIELDS, "Order": ORDER_FIELDS}, "primaryType": "Order",
             "domain": {"name": "Polymarket CTF Exchange", "version": version, "chainId": 137,
                        "verifyingContract": exchange}, "message": message}
    s = encode_typed_data(full_message=typed)
    return "0x" + keccak(b"\x19" + s.version + s.header + s.body).hex()


@pytest.mark.parametrize("deposit", [False, True], ids=["eoa", "deposit_wallet"])
@pytest.mark.parametrize("token, neg_risk, version, exchange", [
    (V1_TOKEN, False, "2", CTF), (V1_TOKEN, True, "2", NEG_RISK), (V2_TOKEN, False, "3", EXCHANGE_V3),
    (V2_TOKEN, True, "3", EXCHANGE_V3)], ids=["v1", "v1_neg_risk", "v2", "v2_neg_risk"])
def test_order_ids_are_the_eip712_hash_under_the_domain_of_the_markets_kind(deposit, token, neg_risk, version,
                                                                            exchange):
    s, net, acct = session(signature_type=3 if deposit else 0, deposit=deposit)
    limit = s.sign_limit(token, D("0.55"), D("10"), "SELL", neg_risk)
    market = s.sign_market(token, "BUY", D("5"), D("0.6"), neg_risk)
    for signed in (limit, market):
        assert signed.order_id == eip712_id(signed.order, version, exchange)
        assert signed.order.signature_type == (3 if deposit else 0)
    assert limit.order.maker == s.funder and limit.order.order_type == "GTC" and market.order.order_type == "FAK"
    assert net.requests == []   # signing read nothing: the market was told (know_market)


def test_amounts_are_exact_decimals_not_floats():
    s, _, _ = session()
    sell = s.sign_limit(V1_TOKEN, D("0.29"), D("8.2"), "SELL", False)
    assert (sell.order.maker_amount, sell.order.taker_amount) == (8_200_000, 2_378_000)
    buy = s.sign_market(V1_TOKEN, "BUY", D("4.35"), D("0.58"), False)
    assert buy.order.maker_amount == 4_350_000 and buy.order.taker_amount * D("0.58") <= D(4_350_000)


def test_a_price_off_the_tick_is_a_signing_error_that_sends_nothing():
    s, net, _ = session()
    with pytest.raises(sdk.SigningError, match="tick"):
        s.sign_limit(V1_TOKEN, D("0.555"), D("10"), "SELL", False)


def test_a_signature_type_that_contradicts_the_wallet_is_refused_before_anything_is_sent():
    acct = Account.create()
    wallet = deposit_wallet_address(acct.address)
    with pytest.raises(ValueError,
                       match=r"api.signature_type is 0 .* is a deposit wallet .* set api.signature_type to 3"):
        sdk.Session("http://venue.test", private_key=acct.key.hex(), funder=wallet, signature_type=0,
                    transport=NoNetwork())
    with pytest.raises(ValueError, match=r"set api.signature_type to 0"):
        sdk.Session("http://venue.test", private_key=acct.key.hex(), funder=acct.address, signature_type=3,
                    transport=NoNetwork())
    stranger = Account.create().address
    with pytest.raises(ValueError, match="is not the key's address"):
        sdk.Session("http://venue.test", private_key=acct.key.hex(), funder=stranger, signature_type=0,
                    transport=NoNetwork())
    with pytest.raises(ValueError, match="not an address"):
        sdk.Session("http://venue.test", private_key=acct.key.hex(), funder="0x123", signature_type=0,
                    transport=NoNetwork())


def test_only_polygon_mainnet():
    with pytest.raises(ValueError, match="api.chain_id 80002"):
        sdk.Session("http://venue.test", chain_id=80002, transport=NoNetwork())


def test_the_secret_is_in_no_request_header_or_error():
    s, net, _ = session()
    with pytest.raises(sdk.HttpError) as err:
        s.get("/data/orders", auth="l2")
    assert CREDS[1] not in str(err.value) and err.value.status is None


# -- what the SDK encodes is exactly the value the bot meant, inside [tick, 1 - tick] --------------------------

TICKS = ["0.1", "0.01", "0.005", "0.0025", "0.001", "0.0001"]   # every tick the SDK knows (its rounding table)
BASE = D(10) ** 6
SESSIONS: dict[str, tuple[sdk.Session, Market]] = {}


@settings(max_examples=300, deadline=None)
@given(tick=st.sampled_from(TICKS), step=st.integers(min_value=1, max_value=9999),
       cents=st.integers(min_value=100, max_value=10**7))
def test_the_sdk_encodes_exactly_the_intended_prices_and_sizes(tick, step, cents):
    """Every price on the grid (0.01 and 0.99 included) and sizes with two decimals: a resting SELL (the TP) and a
    marketable SELL (exits) carry exactly the shares and the price x shares; a marketable BUY (entries) exactly the
    USDC, its price decoded by the venue no worse than the cap on any tick grid. (py-clob-client-v2's float rounding
    lost a unit on ~5 % of these: the bot nudged floats; the unified SDK takes Decimals.)"""
    from bot.money import snap_price

    t = D(tick)
    price = snap_price(step * t, t)
    size = D(cents) / 100
    if tick not in SESSIONS:   # (one session a tick: building one is most of an example's time)
        net = Market(tick)
        SESSIONS[tick] = (session(transport=net)[0], net)
        SESSIONS[tick][0].know_market([V1_TOKEN], "0x" + "ab" * 32, t, False, D(0), 0)
    s, net = SESSIONS[tick]
    limit = s.sign_limit(V1_TOKEN, price, size, "SELL", False).order
    assert (limit.maker_amount, limit.taker_amount) == (size * BASE, size * price * BASE)
    sell = s.sign_market(V1_TOKEN, "SELL", size, price, False).order
    assert (sell.maker_amount, sell.taker_amount) == (size * BASE, size * price * BASE)
    try:
        buy = s.sign_market(V1_TOKEN, "BUY", size, price, False).order
    except sdk.SigningError as exc:   # (refused rather than a BUY whose encoded price could exceed the cap)
        assert "max_price" in str(exc) and net.requests[-1].startswith("GET /clob-markets/")
        return
    assert buy.maker_amount == size * BASE and buy.taker_amount > 0
    assert D(buy.maker_amount) / D(buy.taker_amount) < price + D("0.0001")   # never a finer tick above the cap
