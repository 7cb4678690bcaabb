"""The official unified Polymarket SDK, ``polymarket-client`` (pinned in requirements.txt): the only module that
imports it.

What the bot takes from the SDK is Polymarket's own knowledge: the contracts of each kind of market, which
signature type a wallet address means, API-key (L1) and request (L2) authentication, how an order is built and
signed for the CTF exchanges (V1 markets, EIP-712 domain "2") or for ExchangeV3 (Protocol V2 markets, domain "3",
chosen by the asset id as the SDK does), and the exact paths, queries and bodies of the requests.

What it does not take is the SDK's parsing of the venue's answers: the venue's own answers do not always parse with
it (docs/unified-sdk.md: trades with ``fee_rate_bps: ""``, a ``null`` order lookup, HTTP-200 refusals that fail a
whole batch...), and a refusal must stay a refusal, a lost answer "unknown: look it up by its id". So requests go
out over one httpx client of the live venue's (its timeout, its request counter) and come back as JSON, and every
SDK exception becomes one of the bot's (``signing_error``) or an ``HttpError`` the live venue classifies.

Some of what is used is private to the SDK (``polymarket._internal``, ``polymarket.clients.secure._...``): all of
it is imported in the block below, and tests/test_venue_sdk.py fails loudly, naming what moved, when an upgrade
breaks one. The SDK's place_* methods are never used: on an allowance refusal they send an on-chain approval.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from polymarket import SecureClient

# Private parts (_internal, _make_...) are checked by tests/test_venue_sdk.py against the pinned polymarket-client.
from polymarket._internal.actions.account import (
    build_balance_allowance_request,
    build_get_order_request,
    build_list_account_trades_request,
    build_list_open_orders_request,
    build_update_balance_allowance_request,
)
from polymarket._internal.actions.auth import build_l1_auth_headers, parse_api_key_creds
from polymarket._internal.actions.orders.cancel import build_cancel_order_request, build_cancel_orders_request
from polymarket._internal.actions.orders.context import resolve_order_exchange_address
from polymarket._internal.actions.orders.market_data import MarketInfo as _SdkMarket
from polymarket._internal.actions.orders.market_data import PlatformFeeInfo
from polymarket._internal.actions.orders.post import build_post_order_request, build_post_orders_request
from polymarket._internal.environment import PRODUCTION_CONFIG, create_environment
from polymarket._internal.l1_auth import sign_api_key_auth
from polymarket._internal.protocol import is_v2_position_id
from polymarket._internal.wallet import classify_account
from polymarket.clients._transport import SyncTransport
from polymarket.clients.secure import _make_l2_header_resolver_sync
from polymarket.errors import PolymarketError
from polymarket.models.clob.api_key import ApiKeyCreds

#: The version this module was written and recorded against (docs/unified-sdk.md).
SDK_PIN = "0.14.0"
#: Polygon mainnet: the only chain polymarket-client 0.14.0 has a configuration for.
CHAIN_ID = 137
#: Signature type of each kind of wallet (the venue's numbering, which api.signature_type uses).
SIGNATURE_TYPES = {"EOA": 0, "POLY_PROXY": 1, "GNOSIS_SAFE": 2, "DEPOSIT_WALLET": 3}
WALLET_NAMES = {0: "the key's own address (EOA)", 1: "a Polymarket proxy wallet", 2: "a Gnosis Safe",
                3: "a deposit wallet"}
#: Orders per POST /orders (the venue's documented maximum; the SDK's builder checks it too).
MAX_ORDERS_PER_POST = 15

_DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
_ORDER_TYPEHASH = keccak(b"Order(uint256 salt,address maker,address signer,uint256 tokenId,uint256 makerAmount,"
                         b"uint256 takerAmount,uint8 side,uint8 signatureType,uint256 timestamp,bytes32 metadata,"
                         b"bytes32 builder)")
_EXCHANGE_NAME = keccak(b"Polymarket CTF Exchange")


class HttpError(Exception):
    """A request that got no usable answer: ``status`` None for a transport error (nothing known about what the venue
    did), else the HTTP status; ``text`` the venue's words (its ``error`` / ``errorMsg``) or what went wrong."""

    def __init__(self, text: str, status: int | None = None, cause: str = ""):
        super().__init__(text)
        self.text = text
        self.status = status
        self.cause = cause


class BadAnswer(ValueError):
    """An answer that is not JSON (a proxy's HTML page, a cut body)."""


class SigningError(Exception):
    """The SDK would not build or sign an order (a price off the tick, an amount that rounds to nothing...): nothing
    was sent."""


@dataclass(frozen=True)
class Signed:
    """A signed order, ready to post: its id (the EIP-712 order hash the venue answers as orderID) and the SDK's
    order object (opaque outside this module)."""

    order_id: str
    order: Any


def is_v2_id(token_id: str) -> bool:
    """Whether ``token_id`` is a Protocol V2 position id (the SDK's rule: bits 40..103 zero), which the SDK signs for
    ExchangeV3 and whose balance is read as CONDITIONAL-V2."""
    return bool(is_v2_position_id(str(token_id)))


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or f"HTTP {response.status_code} without a body"
    if isinstance(body, dict):
        for key in ("error", "errorMsg", "message"):
            if body.get(key):
                return str(body[key])
    return json.dumps(body)[:300]


def _config(host: str, chain_id: int):
    if chain_id != CHAIN_ID:
        raise ValueError(f"api.chain_id {chain_id}: polymarket-client {SDK_PIN} (the official SDK this bot trades "
                         f"through) has contracts for Polygon mainnet ({CHAIN_ID}) only")
    host = host.rstrip("/")
    # A venue other than production (bot/sim) gets production's contracts (which the sim verifies orders against)
    # with its own URLs: the SDK's only way to reach another host (docs/unified-sdk.md).
    config = dataclasses.replace(PRODUCTION_CONFIG, clob_url=host, data_url=host, rpc_url=host)
    return config, create_environment(name="bot", config=config)


class Session:
    """One CLOB and, with a private key, one account on it: requests (public, L1- or L2-authenticated) over the live
    venue's httpx client, and orders signed by the SDK."""

    def __init__(self, host: str, chain_id: int = CHAIN_ID, timeout_s: float = 5.0,
                 on_request: Callable[[httpx.Request], None] | None = None, private_key: str | None = None,
                 funder: str | None = None, signature_type: int | None = None,
                 transport: httpx.BaseTransport | None = None):
        self.host = host.rstrip("/")
        self.config, self._environment = _config(self.host, chain_id)
        hooks = {"request": [on_request]} if on_request else {}
        self.http = httpx.Client(base_url=self.host, http2=transport is None, timeout=httpx.Timeout(timeout_s),
                                 transport=transport, event_hooks=hooks)
        self._signer = Account.from_key(private_key) if private_key else None
        self.address: str | None = self._signer.address if self._signer else None
        self.funder: str | None = None
        self.signature_type = int(signature_type or 0)
        self._wallet_type: Any = "EOA"      # the SDK's names (Literal types)
        self._signer_type: Any = "OWNER"
        self._client: SecureClient | None = None
        self._l2: Callable[[str, str, str | None], Any] | None = None
        self.creds: tuple[str, str, str] | None = None
        self._ticks: dict[str, Decimal] = {}   # token -> the tick the bot read (know_market)
        if self._signer is not None:
            self._classify(funder)

    def _classify(self, funder: str | None) -> None:
        """The wallet the orders are made for, and its signature type as the SDK derives it from the address (the SDK
        has no signature-type argument): it must be the type api.signature_type says."""
        assert self.address is not None
        try:
            wallet = to_checksum_address(funder or self.address)
        except ValueError:
            raise ValueError(f"POLY_FUNDER_ADDRESS {funder!r} is not an address") from None
        account = classify_account(signer=self.address, wallet=wallet, config=self.config.wallet_derivation)
        derived = SIGNATURE_TYPES.get(account.wallet_type, 3)
        if account.signer_type == "OWNER" and derived != self.signature_type:
            raise ValueError(
                f"api.signature_type is {self.signature_type} ({WALLET_NAMES.get(self.signature_type, '?')}), but "
                f"POLY_FUNDER_ADDRESS {wallet} is {WALLET_NAMES[derived]} of the key's address {self.address}: set "
                f"api.signature_type to {derived}; run python main_bot.py doctor")
        if account.signer_type != "OWNER" and self.signature_type != 3:
            raise ValueError(
                f"POLY_FUNDER_ADDRESS {wallet} is not the key's address {self.address} nor its proxy wallet, Safe or "
                f"deposit wallet (api.signature_type {self.signature_type}): set POLY_FUNDER_ADDRESS to the wallet "
                "polymarket.com shows for this key; run python main_bot.py doctor")
        self.funder = wallet
        self._wallet_type = account.wallet_type
        self._signer_type = account.signer_type

    # -- requests ---------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: dict | None = None, body: object = None,
                auth: str = "") -> Any:
        """Send one request and return its JSON. ``auth``: "" public, "l2" the API key's HMAC headers, or a dict of
        headers (L1). Raises HttpError (no usable answer) or BadAnswer (not JSON)."""
        content = None if body is None else json.dumps(body, separators=(",", ":"))
        headers: dict[str, str] = {}
        if content is not None:
            headers["Content-Type"] = "application/json"
        if auth == "l2":
            if self._l2 is None:
                raise HttpError(f"{method} {path} needs the account's API credentials, and this venue has none")
            headers.update(self._l2(method, path, content))   # the HMAC covers the path without the query
        try:
            response = self.http.request(method, path, params=params or None, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise HttpError(str(exc) or type(exc).__name__, None, type(exc).__name__) from None
        if not response.is_success:
            raise HttpError(_error_text(response), response.status_code)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise BadAnswer(f"the answer is not JSON: {response.text[:200]!r}") from None

    def get(self, path: str, params: dict | None = None, auth: str = "") -> Any:
        return self.request("GET", path, params=params, auth=auth)

    # -- credentials --------------------------------------------------------------------------------------------

    def derive_credentials(self) -> tuple[str, str, str]:
        """Create the key's API credentials (POST /auth/api-key, L1), or derive the existing ones when the venue says
        they exist (a 400, as the SDK does)."""
        assert self._signer is not None
        signature = sign_api_key_auth(self._signer, chain_id=self.config.chain_id, timestamp=int(time.time()))
        headers = build_l1_auth_headers(signature)
        try:
            raw = self._l1("POST", "/auth/api-key", headers)
        except HttpError as exc:
            if exc.status != 400:
                raise
            raw = self._l1("GET", "/auth/derive-api-key", headers)
        try:
            creds = parse_api_key_creds(raw)
        except PolymarketError as exc:
            raise BadAnswer(f"API credentials: {exc}") from None
        return creds.key, creds.secret, creds.passphrase

    def _l1(self, method: str, path: str, headers: dict[str, str]) -> Any:
        try:
            response = self.http.request(method, path, headers=headers)
        except httpx.HTTPError as exc:
            raise HttpError(str(exc) or type(exc).__name__, None, type(exc).__name__) from None
        if not response.is_success:
            raise HttpError(_error_text(response), response.status_code)
        try:
            return response.json()
        except ValueError:
            raise BadAnswer(f"the answer is not JSON: {response.text[:200]!r}") from None

    def use_credentials(self, key: str, secret: str, passphrase: str) -> None:
        """Sign requests (L2) and orders with these credentials from now on."""
        assert self._signer is not None and self.funder is not None
        creds = ApiKeyCreds(key=key, secret=secret, passphrase=passphrase)
        self.creds = (key, secret, passphrase)
        self._l2 = _make_l2_header_resolver_sync(self._signer, creds)
        # Built, not created: SecureClient.create would deploy a missing deposit wallet on chain by itself, and ask the
        # venue for credentials through a client of its own. Nothing here sends a request.
        self._client = SecureClient._construct_for_wallet(
            signer=self._signer, wallet=self.funder, wallet_type=self._wallet_type, signer_type=self._signer_type,
            environment=self._environment, config=self.config, credentials=creds, api_key=None, logger=None,
            on_rate_limit_update=None)
        # What the order builder still reads by itself (the market again, before it refuses a BUY whose encoded price
        # could exceed its cap) goes over the venue's client too: counted, with the bot's timeout.
        object.__setattr__(self._client._ctx, "clob", SyncTransport(base_url=self.host, client=self.http))

    # -- orders -------------------------------------------------------------------------------------------------

    def know_market(self, token_ids: Sequence[str], condition_id: str, tick_size: Decimal, neg_risk: bool,
                    fee_rate: Decimal, fee_exponent: int) -> None:
        """Tell the SDK's order builder what the bot read about a market (tick, neg-risk, fee curve), so that signing
        sends no request of its own (it would read /markets-by-token and /clob-markets again, every 10 minutes)."""
        if self._client is None:
            return
        cache = self._client._ctx.order_metadata
        tokens: Any = frozenset(token_ids)
        cid: Any = condition_id
        market = _SdkMarket(fee_info=PlatformFeeInfo(rate=Decimal(fee_rate), exponent=Decimal(fee_exponent)),
                            neg_risk=bool(neg_risk), tick_size=Decimal(tick_size), token_ids=tokens)
        for token in tokens:
            cache._conditions.set(token, cid)
            self._ticks[token] = Decimal(tick_size)
        cache._markets.set(cid, market)

    def sign_limit(self, token_id: str, price: Decimal, shares: Decimal, side: Any, neg_risk: bool) -> Signed:
        """A GTC limit order, signed."""
        return self._sign(lambda c: c.create_limit_order(token_id=token_id, price=price, size=shares, side=side),
                          token_id, neg_risk, price)

    def sign_market(self, token_id: str, side: str, amount: Decimal, worst_price: Decimal, neg_risk: bool) -> Signed:
        """A fill-and-kill order: ``amount`` USDC to spend (BUY) or shares to sell (SELL); ``worst_price`` the cap of a
        BUY or the floor of a SELL (the SDK's "protected" market order: it reads no book)."""
        if side == "BUY":
            create = lambda c: c.create_market_order(token_id=token_id, side="BUY", amount=amount,  # noqa: E731
                                                     max_price=worst_price, order_type="FAK")
        else:
            create = lambda c: c.create_market_order(token_id=token_id, side="SELL", shares=amount,  # noqa: E731
                                                      min_price=worst_price, order_type="FAK")
        return self._sign(create, token_id, neg_risk, worst_price)

    def _sign(self, create: Callable[[SecureClient], Any], token_id: str, neg_risk: bool,
              price: Decimal | None = None) -> Signed:
        if self._client is None:
            raise SigningError("this venue has no private key to sign orders with")
        tick = self._ticks.get(token_id)
        if price is not None and tick is not None and (price % tick != 0 or not tick <= price <= 1 - tick):
            # Checked here: the SDK would read the market again (through a client of its own) before refusing.
            raise SigningError(f"price {price} is not on the tick size {tick} grid of token {token_id}")
        try:
            order = create(self._client)
        except (PolymarketError, ArithmeticError, ValueError) as exc:
            raise SigningError(f"{type(exc).__name__}: {exc}") from None
        return Signed(self.order_id(order, neg_risk), order)

    def order_id(self, order: Any, neg_risk: bool) -> str:
        """The order's id: keccak(0x1901 ‖ domain separator ‖ struct hash) under the domain the SDK signed it for
        (ExchangeV3 and version "3" for a V2 position id, else the CTF or neg-risk exchange and version "2")."""
        token = str(order.token_id)
        exchange = resolve_order_exchange_address(self.config, asset_id=token, neg_risk=neg_risk)
        version = b"3" if is_v2_id(token) else b"2"
        domain = keccak(abi_encode(["bytes32", "bytes32", "bytes32", "uint256", "address"],
                                   [_DOMAIN_TYPEHASH, _EXCHANGE_NAME, keccak(version), self.config.chain_id,
                                    to_checksum_address(exchange)]))
        struct = keccak(abi_encode(
            ["bytes32", "uint256", "address", "address", "uint256", "uint256", "uint256", "uint8", "uint8", "uint256",
             "bytes32", "bytes32"],
            [_ORDER_TYPEHASH, int(order.salt), to_checksum_address(order.maker), to_checksum_address(order.signer),
             int(token), int(order.maker_amount), int(order.taker_amount), 0 if order.side == "BUY" else 1,
             int(order.signature_type), int(order.timestamp), _bytes32(order.metadata), _bytes32(order.builder)]))
        return "0x" + keccak(b"\x19\x01" + domain + struct).hex()

    def post_order(self, signed: Signed) -> Any:
        """POST /order, the body exactly as the SDK's post_order builds it."""
        assert self.creds is not None
        path, body = build_post_order_request(signed.order, owner_api_key=self.creds[0])
        return self.request("POST", path, body=body, auth="l2")

    def post_orders(self, signed: Sequence[Signed]) -> Any:
        """POST /orders (MAX_ORDERS_PER_POST at most), the body as the SDK's post_orders builds it."""
        assert self.creds is not None
        path, body = build_post_orders_request([s.order for s in signed], owner_api_key=self.creds[0])
        return self.request("POST", path, body=body, auth="l2")

    def cancel(self, order_ids: Sequence[str], many: bool = False) -> Any:
        """DELETE /order for one id, DELETE /orders (``many``) for a list of them."""
        body: Any
        if not many:
            path, body = build_cancel_order_request(order_id=order_ids[0])
        else:
            path, body = build_cancel_orders_request(order_ids=list(order_ids))
        return self.request("DELETE", path, body=body, auth="l2")

    # -- account reads ------------------------------------------------------------------------------------------

    def get_order(self, order_id: str) -> Any:
        path, params = build_get_order_request(order_id=order_id)
        return self.get(path, params, auth="l2")

    def open_orders_page(self, cursor: str | None) -> Any:
        path, params = build_list_open_orders_request(cursor=cursor)
        return self.get(path, params, auth="l2")

    def trades_page(self, token_id: str, cursor: str | None) -> Any:
        path, params = build_list_account_trades_request(asset_id=token_id, cursor=cursor)
        return self.get(path, params, auth="l2")

    def balance(self, token_id: str | None, update: bool = False) -> Any:
        """GET /balance-allowance (or /update first when ``update``): pUSD without a token, else the token's shares
        as CONDITIONAL (CTF) or CONDITIONAL-V2 (a V2 position id: FACTS.md Part 0, 0.8)."""
        asset_type: Any = "COLLATERAL"
        if token_id is not None:
            asset_type = "CONDITIONAL-V2" if is_v2_id(token_id) else "CONDITIONAL"
        build = build_update_balance_allowance_request if update else build_balance_allowance_request
        path, params = build(asset_type=asset_type, token_id=token_id, signature_type=self.signature_type)
        return self.get(path, params, auth="l2")

    def contracts(self) -> dict[str, str]:
        """The contracts an account trades through, by the SDK's configuration (doctor checks their approvals)."""
        c = self.config
        # The current neg-risk adapter is the config's neg_risk_collateral_adapter (the one the SDK's own list of
        # trading approvals names); its neg_risk_adapter is the CLOB V1 one, retired on 2026-07-17 (docs' contracts
        # page: "deprecated"; the SDKs stopped approving it that day).
        return {"ctf_exchange": c.standard_exchange, "neg_risk_exchange": c.neg_risk_exchange,
                "neg_risk_adapter": c.neg_risk_collateral_adapter, "old_neg_risk_adapter": c.neg_risk_adapter,
                "exchange_v3": c.exchange_v3,
                "auto_redeem_operator": c.auto_redeem_operator, "conditional_tokens": c.conditional_tokens,
                "position_manager": c.position_manager, "collateral_token": c.collateral_token, "rpc_url": c.rpc_url}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.http.close()


def _bytes32(value: str) -> bytes:
    return bytes.fromhex(str(value).removeprefix("0x").zfill(64))


def installed_version() -> str:
    """polymarket-client's installed version."""
    from importlib.metadata import version

    return version("polymarket-client")


__all__ = ["BadAnswer", "HttpError", "Session", "Signed", "SigningError", "is_v2_id"]
