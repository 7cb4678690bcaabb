"""Authentication as the venue checks it: L1 (EIP-712 ClobAuth), L2 (HMAC), and signed V2 orders.

Nothing is assumed: the L1 signer is recovered, the L2 HMAC recomputed over
``timestamp + METHOD + path-without-query + raw body``, and every order's EIP-712 signature recovered
with the market's exchange (the neg-risk exchange for neg-risk markets) and matched to the API key.
The order id is the EIP-712 digest of the order, as on Polymarket.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

CHAIN_ID = 137
EXCHANGE_V2 = "0xE111180000d2663C0091e4f400237545B87B996B"
NEG_RISK_EXCHANGE_V2 = "0xe2222d279d744050d28e00520010520000310F59"
CLOB_AUTH_MESSAGE = "This message attests that I control the given wallet"
ORDER_FIELDS = [
    {"name": "salt", "type": "uint256"}, {"name": "maker", "type": "address"},
    {"name": "signer", "type": "address"}, {"name": "tokenId", "type": "uint256"},
    {"name": "makerAmount", "type": "uint256"}, {"name": "takerAmount", "type": "uint256"},
    {"name": "side", "type": "uint8"}, {"name": "signatureType", "type": "uint8"},
    {"name": "timestamp", "type": "uint256"}, {"name": "metadata", "type": "bytes32"},
    {"name": "builder", "type": "bytes32"},
]
DOMAIN_FIELDS = [
    {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
]


class AuthError(Exception):
    """Authentication failed: ``status`` is 401 for headers, 400 for an order's signature."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.message = message
        self.status = status


def _recover(typed: dict, signature: str) -> str:
    return Account.recover_message(encode_typed_data(full_message=typed), signature=signature)


def verify_l1(headers, chain_id: int = CHAIN_ID) -> tuple[str, int]:
    """Recover the ClobAuth signer; returns (address, nonce). AuthError when it does not match."""
    try:
        address = to_checksum_address(headers["POLY_ADDRESS"])
        timestamp = headers["POLY_TIMESTAMP"]
        nonce = int(headers.get("POLY_NONCE") or 0)
        signature = headers["POLY_SIGNATURE"]
    except (KeyError, TypeError, ValueError):
        raise AuthError("Invalid L1 Request headers") from None
    typed = {
        "primaryType": "ClobAuth",
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                   {"name": "chainId", "type": "uint256"}],
                  "ClobAuth": [{"name": "address", "type": "address"}, {"name": "timestamp", "type": "string"},
                               {"name": "nonce", "type": "uint256"}, {"name": "message", "type": "string"}]},
        "domain": {"name": "ClobAuthDomain", "version": "1", "chainId": chain_id},
        "message": {"address": address, "timestamp": str(timestamp), "nonce": nonce, "message": CLOB_AUTH_MESSAGE},
    }
    try:
        signer = _recover(typed, signature)
    except Exception:
        raise AuthError("Invalid L1 Request headers") from None
    if signer.lower() != address.lower():
        raise AuthError("Invalid L1 Request headers")
    return address, nonce


class ApiKeys:
    """Deterministic API credentials per (address, nonce), and the L2 check."""

    def __init__(self, seed: int = 0):
        self._seed = f"sim-{seed}".encode()
        self._by_key: dict[str, dict] = {}

    def creds_for(self, address: str, nonce: int) -> dict:
        material = hashlib.sha256(self._seed + address.lower().encode() + str(nonce).encode()).digest()
        api_key = str(uuid.UUID(bytes=material[:16], version=4))
        secret = base64.urlsafe_b64encode(hashlib.sha256(material + b"secret").digest()).decode()
        passphrase = hashlib.sha256(material + b"pass").hexdigest()[:32]
        creds = {"apiKey": api_key, "secret": secret, "passphrase": passphrase}
        self._by_key[api_key] = {**creds, "address": address.lower()}
        return creds

    def verify_l2(self, headers, method: str, path: str, body: bytes) -> dict:
        """Recompute the HMAC; returns the key record ({apiKey, secret, passphrase, address})."""
        key = headers.get("POLY_API_KEY")
        rec = self._by_key.get(key or "")
        if rec is None:
            raise AuthError("Unauthorized/Invalid api key")
        if headers.get("POLY_PASSPHRASE") != rec["passphrase"]:
            raise AuthError("Unauthorized/Invalid api key")
        if (headers.get("POLY_ADDRESS") or "").lower() != rec["address"]:
            raise AuthError("Unauthorized/Invalid api key")
        timestamp = headers.get("POLY_TIMESTAMP") or ""
        message = f"{timestamp}{method}{path}"
        if body:
            message += body.decode("utf-8").replace("'", '"')
        digest = hmac.new(base64.urlsafe_b64decode(rec["secret"]), message.encode("utf-8"), hashlib.sha256).digest()
        expected = base64.urlsafe_b64encode(digest).decode()
        if not hmac.compare_digest(expected, headers.get("POLY_SIGNATURE") or ""):
            raise AuthError("Unauthorized/Invalid api key")
        return rec


def order_typed_data(order: dict, neg_risk: bool, chain_id: int = CHAIN_ID) -> dict:
    """The EIP-712 typed data of a wire V2 order (FACTS Part 1 §6.1)."""
    side = order["side"]
    side_int = {"BUY": 0, "SELL": 1}.get(str(side).upper(), side)
    return {
        "primaryType": "Order",
        "types": {"EIP712Domain": DOMAIN_FIELDS, "Order": ORDER_FIELDS},
        "domain": {"name": "Polymarket CTF Exchange", "version": "2", "chainId": chain_id,
                   "verifyingContract": NEG_RISK_EXCHANGE_V2 if neg_risk else EXCHANGE_V2},
        "message": {
            "salt": int(order["salt"]), "maker": to_checksum_address(order["maker"]),
            "signer": to_checksum_address(order["signer"]), "tokenId": int(order["tokenId"]),
            "makerAmount": int(order["makerAmount"]), "takerAmount": int(order["takerAmount"]),
            "side": int(side_int), "signatureType": int(order["signatureType"]),
            "timestamp": int(order["timestamp"]),
            "metadata": bytes.fromhex(str(order["metadata"]).replace("0x", "").zfill(64)),
            "builder": bytes.fromhex(str(order["builder"]).replace("0x", "").zfill(64)),
        },
    }


def verify_order(order: dict, neg_risk: bool, api_address: str, chain_id: int = CHAIN_ID) -> str:
    """Check a wire order's signature; returns its order hash (the order id). AuthError(400) if bad."""
    try:
        typed = order_typed_data(order, neg_risk, chain_id)
        signable = encode_typed_data(full_message=typed)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuthError(f"invalid order payload: {exc}", 400) from None
    order_hash = "0x" + keccak(b"\x19" + signable.version + signable.header + signable.body).hex()
    signer = typed["message"]["signer"]
    if signer.lower() != api_address.lower():
        raise AuthError("the order signer address has to be the address of the API KEY", 400)
    sig_type = typed["message"]["signatureType"]
    if sig_type == 0 and typed["message"]["maker"].lower() != signer.lower():
        raise AuthError("the order maker address has to be the signer for an EOA order", 400)
    if sig_type == 3:
        return order_hash  # POLY_1271 (ERC-7739 nested) signatures are not verified here: see README of bot/sim
    try:
        recovered = Account.recover_message(signable, signature=order["signature"])
    except Exception:
        raise AuthError("invalid signature", 400) from None
    if recovered.lower() != signer.lower():
        raise AuthError("invalid signature", 400)
    return order_hash
