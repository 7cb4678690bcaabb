"""Deposit wallets (signature type 3, POLY_1271) through the REAL py-clob-client-v2 against bot/sim:
the sim verifies the ERC-7739 nested signature, the owner's CREATE2 wallet and its deployment."""
from __future__ import annotations

import pytest
import requests
from eth_account import Account
from eth_account.messages import encode_typed_data
from py_clob_client_v2 import (
    AssetType,
    BalanceAllowanceParams,
    ClobClient,
    OrderArgs,
    OrderType,
    PartialCreateOrderOptions,
)
from py_clob_client_v2.exceptions import PolyApiException

from bot.sim.auth import MAKER_NOT_ALLOWED, order_hash_of, order_typed_data
from bot.wallets import deposit_wallet_address

OPTS = PartialCreateOrderOptions(tick_size="0.01", neg_risk=False)


def deposit_client(sim, wallet: dict, funder: str | None = None) -> ClobClient:
    client = ClobClient(sim.clob_url, chain_id=137, key=wallet["private_key"], signature_type=3,
                        funder=funder or wallet["address"])
    client.set_api_creds(client.create_or_derive_api_key())
    return client


def bid(client, token, neg_risk=False, price=0.45, size=10):
    return client.create_order(OrderArgs(token_id=token, price=price, size=size, side="BUY"),
                               options=PartialCreateOrderOptions(tick_size="0.01", neg_risk=neg_risk))


def refused(client, signed) -> str:
    with pytest.raises(PolyApiException) as err:
        client.post_order(signed, OrderType.GTC)
    assert err.value.status_code == 400
    return err.value.error_msg["error"]


def test_a_deposit_wallet_order_is_accepted_and_trades_from_the_wallet(sim, market):
    wallet = sim.new_wallet(usdc=100, signature_type=3)
    assert wallet["address"] == deposit_wallet_address(wallet["owner"]) != wallet["owner"]
    client = deposit_client(sim, wallet)
    balance = client.get_balance_allowance(BalanceAllowanceParams(asset_type=AssetType.COLLATERAL))
    assert balance["balance"] == "100000000"   # read by signature_type 3: the wallet's, not the EOA's
    signed = bid(client, market["token_ids"][0])
    raw = bytes.fromhex(signed.signature.removeprefix("0x"))
    assert len(raw) == 317 and signed.maker == signed.signer == wallet["address"] and signed.signatureType == 3
    resp = client.post_order(signed, OrderType.GTC)
    expected = order_hash_of(encode_typed_data(full_message=order_typed_data(signed.__dict__, False)))
    assert resp["status"] == "live" and resp["orderID"] == "0x" + expected.hex()
    assert sim.balances(wallet["address"])["open_orders"] == 1
    assert sim.balances(wallet["owner"])["open_orders"] == 0
    assert [o["id"] for o in client.get_open_orders()] == [resp["orderID"]]


def test_neg_risk_orders_are_checked_against_the_neg_risk_exchange(sim):
    m = sim.create_market("Neg risk deposit?", yes_price=0.5, neg_risk=True, volatility=0)
    wallet = sim.new_wallet(usdc=100, signature_type=3)
    client = deposit_client(sim, wallet)
    assert refused(client, bid(client, m["token_ids"][0], neg_risk=False)) == "invalid signature"
    assert client.post_order(bid(client, m["token_ids"][0], neg_risk=True), OrderType.GTC)["status"] == "live"


@pytest.mark.parametrize("tamper", ["amount", "inner_signature", "app_domain", "contents_hash", "truncated",
                                    "contents_type", "not_hex"])
def test_a_tampered_signature_is_refused(sim, market, tamper):
    wallet = sim.new_wallet(usdc=100, signature_type=3)
    client = deposit_client(sim, wallet)
    signed = bid(client, market["token_ids"][0])
    raw = bytearray(bytes.fromhex(signed.signature.removeprefix("0x")))
    if tamper == "amount":
        signed.takerAmount = str(int(signed.takerAmount) + 1_000_000)   # one more share for the same money
    else:
        spot = {"inner_signature": 10, "app_domain": 70, "contents_hash": 100, "contents_type": 140}.get(tamper)
        if spot is not None:
            raw[spot] ^= 1
        if tamper == "truncated":
            raw = raw[:-3] + raw[-2:]
        signed.signature = "0x" + raw.hex() + ("zz" if tamper == "not_hex" else "")
    assert refused(client, signed) == "invalid signature"
    assert sim.balances(wallet["address"])["open_orders"] == 0


def test_another_owners_wallet_is_not_allowed(sim, market):
    victim = sim.new_wallet(usdc=100, signature_type=3)
    thief = sim.new_wallet(usdc=0, signature_type=3)
    client = deposit_client(sim, thief, funder=victim["address"])
    assert refused(client, bid(client, market["token_ids"][0])) == MAKER_NOT_ALLOWED
    assert sim.balances(victim["address"])["open_orders"] == 0


def test_a_wallet_that_is_not_the_owners_create2_address_is_not_allowed(sim, market):
    owner = sim.new_wallet(usdc=0, signature_type=0)
    lookalike = Account.create().address   # signs fine, but it is no deposit wallet of this owner
    sim.fund(lookalike, usdc=100)
    client = deposit_client(sim, owner, funder=lookalike)
    assert refused(client, bid(client, market["token_ids"][0])) == MAKER_NOT_ALLOWED


def test_an_undeployed_wallet_is_not_allowed_until_deployed(sim, market):
    wallet = sim.new_wallet(usdc=100, signature_type=3, deployed=False)
    client = deposit_client(sim, wallet)
    assert requests.get(f"{sim.relayer_url}/deployed", params={"address": wallet["address"], "type": "WALLET"}).json() \
        == {"deployed": False}
    assert refused(client, bid(client, market["token_ids"][0])) == MAKER_NOT_ALLOWED
    sim.deploy_deposit_wallet(wallet["address"])
    deployed = requests.get(f"{sim.relayer_url}/deployed", params={"address": wallet["address"]}).json()
    assert deployed == {"deployed": True}
    assert client.post_order(bid(client, market["token_ids"][0]), OrderType.GTC)["status"] == "live"


def test_an_eoa_order_from_the_owner_still_works_and_type_0_rules_stand(sim, market):
    wallet = sim.new_wallet(usdc=100, signature_type=3)
    sim.fund(wallet["owner"], usdc=50)
    eoa = ClobClient(sim.clob_url, chain_id=137, key=wallet["private_key"], signature_type=0)
    eoa.set_api_creds(eoa.create_or_derive_api_key())
    assert eoa.post_order(bid(eoa, market["token_ids"][0]), OrderType.GTC)["status"] == "live"
    assert sim.balances(wallet["owner"])["open_orders"] == 1


def test_control_route_creates_and_deploys_deposit_wallets(sim):
    owner = Account.create().address
    made = requests.post(f"{sim.clob_url}/_sim/deposit_wallets", json={"owner": owner, "deployed": False}).json()
    assert made == {"address": deposit_wallet_address(owner)}
    deployed = lambda: requests.get(f"{sim.clob_url}/deployed", params={"address": made["address"]}).json()  # noqa: E731
    assert deployed() == {"deployed": False}
    ok = requests.post(f"{sim.clob_url}/_sim/deposit_wallets/deploy", json={"address": made["address"]})
    assert ok.status_code == 200 and deployed() == {"deployed": True}
    assert requests.post(f"{sim.clob_url}/_sim/deposit_wallets/deploy",
                         json={"address": Account.create().address}).status_code == 404
    assert requests.post(f"{sim.clob_url}/_sim/deposit_wallets", json={"owner": "0x12"}).status_code == 400
    requests.post(f"{sim.clob_url}/_sim/fund", json={"address": made["address"], "usdc": 7})
    assert sim.balances(made["address"])["usdc"] == "7"
    assert sim.new_deposit_wallet(owner) == made   # the same owner always gets the same wallet
