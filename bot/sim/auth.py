"""Authentication as the venue checks it: L1 (EIP-712 ClobAuth), L2 (HMAC), and signed V2 orders.

Nothing is assumed: the L1 signer is recovered, the L2 HMAC recomputed over
``timestamp + METHOD + path-without-query + raw body``, and every order's EIP-712 signature recovered
with the domain of the exchange the market settles on and matched to the API key:
- a CTF (V1) market: "Polymarket CTF Exchange" version "2" on the CTF exchange, or on the neg-risk exchange
  for neg-risk markets;
- a Protocol V2 market: version "3" on ExchangeV3, neg-risk or not (FACTS.md Part 0, 0.8: V2 orders settle
  through ExchangeV3 with EIP-712 domain version "3"; the unified SDK's ``resolve_order_exchange_address``).
The Order struct is the same for both. An order signed for the other kind's domain recovers another signer and
is refused with the venue's "invalid signature".
A deposit-wallet order (type 3, POLY_1271) is checked as the wallet's ERC-1271 ``isValidSignature`` would
check its ERC-7739 nested signature, after the venue's own check that the wallet is the API key owner's
deployed deposit wallet (see ``verify_poly_1271``); its wrapper carries the exchange domain of the market's
kind as well.
The order id is the EIP-712 digest of the order under that domain, as on Polymarket.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

from bot.wallets import is_deposit_wallet_of

CHAIN_ID = 137
EXCHANGE_V2 = "0xE111180000d2663C0091e4f400237545B87B996B"
NEG_RISK_EXCHANGE_V2 = "0xe2222d279d744050d28e00520010520000310F59"
#: Protocol V2 markets' exchange (FACTS.md Part 0, 0.8; the unified SDK's ``environments.py`` ``exchange_v3``).
EXCHANGE_V3 = "0xe3333700cA9d93003F00f0F71f8515005F6c00Aa"
EXCHANGE_NAME = "Polymarket CTF Exchange"
CLOB_AUTH_MESSAGE = "This message attests that I control the given wallet"
ORDER_FIELDS = [
    {"name": "salt", "type": "uint256"}, {"name": "maker", "type": "address"},
    {"name": "signer", "type": "address"}, {"name": "tokenId", "type": "uint256"},
    {"name": "makerAmount", "type": "uint256"}, {"name": "takerAmount", "type": "uint256"},
    {"name": "side", "type": "uint8"}, {"name": "signatureType", "type": "uint8"},
    {"name": "timestamp", "type": "uint256"}, {"name": "metadata", "type": "bytes32"},
    {"name": "builder", "type": "bytes32"},
]
ORDER_TYPE = ("Order(uint256 salt,address maker,address signer,uint256 tokenId,uint256 makerAmount,"
              "uint256 takerAmount,uint8 side,uint8 signatureType,uint256 timestamp,bytes32 metadata,bytes32 builder)")
#: ERC-7739 TypedDataSign over an Order, as the deposit wallet (Solady ERC1271) rebuilds it.
TYPED_DATA_SIGN_TYPEHASH = keccak(text="TypedDataSign(Order contents,string name,string version,uint256 chainId,"
                                       "address verifyingContract,bytes32 salt)" + ORDER_TYPE)
DEPOSIT_WALLET_DOMAIN = ("DepositWallet", "1")
#: A session signer's signature is wrapped (ERC-6492 style) and ends with these 32 bytes.
SESSION_SIGNER_SUFFIX = bytes.fromhex("6492" * 16)
INVALID_SIGNATURE = "invalid signature"
MAKER_NOT_ALLOWED = "maker address not allowed, please use the deposit wallet flow"
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

    def check(self, api_key, secret, passphrase) -> dict | None:
        """The key record of these exact credentials (as the user channel's ``auth`` carries them), else None."""
        rec = self._by_key.get(api_key) if isinstance(api_key, str) else None
        if rec is None or not isinstance(secret, str) or not isinstance(passphrase, str):
            return None
        if not (hmac.compare_digest(secret.encode(), rec["secret"].encode())
                and hmac.compare_digest(passphrase.encode(), rec["passphrase"].encode())):
            return None
        return rec

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


def order_domain(neg_risk: bool, v2: bool = False, chain_id: int = CHAIN_ID) -> dict:
    """The EIP-712 domain an order of a market is signed for (FACTS.md Part 0, 0.8): a Protocol V2 market's
    (``v2``) is version "3" on ExchangeV3 whatever its neg-risk flag; a CTF (V1) market's is version "2" on the
    CTF exchange, or on the neg-risk exchange for a neg-risk market."""
    if v2:
        return {"name": EXCHANGE_NAME, "version": "3", "chainId": chain_id, "verifyingContract": EXCHANGE_V3}
    return {"name": EXCHANGE_NAME, "version": "2", "chainId": chain_id,
            "verifyingContract": NEG_RISK_EXCHANGE_V2 if neg_risk else EXCHANGE_V2}


def order_typed_data(order: dict, neg_risk: bool, chain_id: int = CHAIN_ID, v2: bool = False) -> dict:
    """The EIP-712 typed data of a wire order, as the exchange contracts hash it: the domain of the exchange the
    market settles on (``order_domain``: version "2" on the CTF or neg-risk exchange, version "3" on ExchangeV3
    for a Protocol V2 market, FACTS.md Part 0, 0.8), and the order's fields (the same Order struct for both) with
    side 0 = BUY, 1 = SELL."""
    side = order["side"]
    side_int = {"BUY": 0, "SELL": 1}.get(str(side).upper(), side)
    return {
        "primaryType": "Order",
        "types": {"EIP712Domain": DOMAIN_FIELDS, "Order": ORDER_FIELDS},
        "domain": order_domain(neg_risk, v2, chain_id),
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


def order_hash_of(signable) -> bytes:
    """keccak256(0x1901 ‖ domainSeparator ‖ structHash) of an encoded typed-data message."""
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def verify_order(order: dict, neg_risk: bool, api_address: str, chain_id: int = CHAIN_ID,
                 deployed_wallets=None, v2: bool = False) -> str:
    """Check a wire order's signature; returns its order hash (the order id). AuthError(400) if bad.

    ``v2``: the market is a Protocol V2 one, whose orders are signed for ExchangeV3's domain (version "3"); a V1
    market's for the CTF or neg-risk exchange's (version "2"). An order signed for the other kind's domain is
    refused with "invalid signature" (FACTS.md Part 0, 0.8; see ``order_domain``).
    ``deployed_wallets``: the set of deposit-wallet addresses (lower case) deployed on the simulated chain,
    needed for type-3 orders only."""
    try:
        typed = order_typed_data(order, neg_risk, chain_id, v2)
        signable = encode_typed_data(full_message=typed)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuthError(f"invalid order payload: {exc}", 400) from None
    order_hash = order_hash_of(signable)
    signer = typed["message"]["signer"]
    sig_type = typed["message"]["signatureType"]
    if sig_type == 3:
        verify_poly_1271(typed, order_hash, str(order.get("signature") or ""), api_address, chain_id,
                         deployed_wallets or set())
        return "0x" + order_hash.hex()
    if signer.lower() != api_address.lower():
        raise AuthError("the order signer address has to be the address of the API KEY", 400)
    if sig_type == 0 and typed["message"]["maker"].lower() != signer.lower():
        raise AuthError("the order maker address has to be the signer for an EOA order", 400)
    try:
        recovered = Account.recover_message(signable, signature=order["signature"])
    except Exception:
        raise AuthError(INVALID_SIGNATURE, 400) from None
    if recovered.lower() != signer.lower():
        raise AuthError(INVALID_SIGNATURE, 400)
    return "0x" + order_hash.hex()


def verify_poly_1271(typed: dict, order_hash: bytes, signature: str, api_address: str, chain_id: int,
                     deployed_wallets) -> str:
    """A deposit-wallet order (signature type 3). Returns the owner EOA that signed it.

    The venue first checks that the maker may trade for this API key: maker == signer == the deposit wallet
    that the key's EOA owns (its CREATE2 address) and that wallet is deployed; otherwise "maker address not
    allowed, please use the deposit wallet flow". Then the wallet's ERC-1271 check of the ERC-7739 nested
    signature ``sig65 ‖ appDomainSeparator ‖ contentsHash ‖ contentsType ‖ uint16 len(contentsType)``:
    ``keccak(0x1901 ‖ appSep ‖ contentsHash)`` must be the order hash (so appSep is the domain of the exchange the
    market uses: version "3" on ExchangeV3 for a Protocol V2 market, FACTS.md Part 0, 0.8; and contentsHash this
    very order), and sig65 must recover, over the TypedDataSign struct bound to
    the wallet's own domain ("DepositWallet", "1", chain id, the wallet, salt 0), to the wallet's owner;
    otherwise "invalid signature". Session signers (signatures ending with 0x6492...) are not modelled.
    """
    msg = typed["message"]
    wallet, maker = msg["signer"], msg["maker"]
    if (maker.lower() != wallet.lower() or not is_deposit_wallet_of(wallet, api_address)
            or wallet.lower() not in deployed_wallets):
        raise AuthError(MAKER_NOT_ALLOWED, 400)
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
    except ValueError:
        raise AuthError(INVALID_SIGNATURE, 400) from None
    if len(raw) < 65 + 64 + 2 or raw.endswith(SESSION_SIGNER_SUFFIX):
        raise AuthError(INVALID_SIGNATURE, 400)
    type_len = int.from_bytes(raw[-2:], "big")
    if len(raw) != 65 + 64 + type_len + 2:
        raise AuthError(INVALID_SIGNATURE, 400)
    inner, app_separator, contents = raw[:65], raw[65:97], raw[97:129]
    contents_type = raw[129:129 + type_len]
    if contents_type != ORDER_TYPE.encode() or keccak(b"\x19\x01" + app_separator + contents) != order_hash:
        raise AuthError(INVALID_SIGNATURE, 400)
    name, version = DEPOSIT_WALLET_DOMAIN
    struct_hash = keccak(abi_encode(
        ["bytes32", "bytes32", "bytes32", "bytes32", "uint256", "address", "bytes32"],
        [TYPED_DATA_SIGN_TYPEHASH, contents, keccak(text=name), keccak(text=version), chain_id,
         to_checksum_address(wallet), b"\0" * 32]))
    try:
        owner = Account._recover_hash(keccak(b"\x19\x01" + app_separator + struct_hash), signature=inner)
    except Exception:
        raise AuthError(INVALID_SIGNATURE, 400) from None
    if owner.lower() != api_address.lower():
        raise AuthError(INVALID_SIGNATURE, 400)
    return owner
