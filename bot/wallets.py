"""Polymarket deposit wallets (signature type 3, POLY_1271): where an owner's wallet lives.

A deposit wallet is a proxy contract that Polymarket's relayer deploys with CREATE2 from the deposit-wallet
factory, so its address follows from the owner's EOA alone. Two proxy shapes have been used: an ERC-1967
beacon proxy (the current one, for accounts made since the factory got a beacon) and, before that, an
ERC-1967 (UUPS) proxy. Both are Solady ``LibClone`` proxies carrying immutable args
``abi.encode(factory, bytes32(owner))``, and the CREATE2 salt is ``keccak256(args)``.

Used by ``doctor`` (is POLY_FUNDER_ADDRESS this key's deposit wallet?) and by ``bot/sim`` (which wallets
may trade for which owner). No network and no SDK here.
"""
from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

#: Polygon mainnet (chain 137) contracts of the deposit-wallet flow.
DEPOSIT_WALLET_FACTORY = "0x00000000000Fb5C9ADea0298D729A0CB3823Cc07"
DEPOSIT_WALLET_BEACON = "0x7A18EDfe055488A3128f01F563e5B479D92ffc3a"
DEPOSIT_WALLET_IMPLEMENTATION = "0x58CA52ebe0DadfdF531Cde7062e76746de4Db1eB"
#: Polymarket's relayer: ``GET /deployed?address=...&type=WALLET`` says whether a wallet exists on chain.
RELAYER_HOST = "https://relayer-v2.polymarket.com"

# Solady LibClone creation code around the target address (beacon or implementation) and the args.
_ERC1967_TAIL = bytes.fromhex(
    "6009"
    "5155f3363d3d373d3d363d7f360894a13ba1a3210667c828492db98dca3e2076"
    "cc3735a920a3ca505d382bbc545af43d6000803e6038573d6000fd5b3d6000f3")
_BEACON_TAIL = bytes.fromhex(
    "60195155f3363d3d373d3d363d602036600436635c60da"
    "1b60e01b36527fa3f0ad74e5423aebfd80d3ef4346578335a9a72aeaee59ff6c"
    "b3582b35133d50545afa5036515af43d6000803e604d573d6000fd5b3d6000f3")
_ERC1967_HEAD = 0x61003D3D8160233D3973
_BEACON_HEAD = 0x6100523D8160233D3973


def _address_bytes(address: str) -> bytes:
    raw = bytes.fromhex(to_checksum_address(address)[2:])
    assert len(raw) == 20
    return raw


def _immutable_args(owner: str, factory: str) -> bytes:
    return abi_encode(["address", "bytes32"], [to_checksum_address(factory), _address_bytes(owner).rjust(32, b"\0")])


def _init_code(head: int, target: str, tail: bytes, args: bytes) -> bytes:
    # The head's PUSH2 (0x61) operand is the runtime length, which grows with the args.
    return (head + (len(args) << 56)).to_bytes(10, "big") + _address_bytes(target) + tail + args


def create2_address(deployer: str, salt: bytes, init_code: bytes) -> str:
    digest = keccak(b"\xff" + _address_bytes(deployer) + salt + keccak(init_code))
    return to_checksum_address(digest[12:])


def deposit_wallet_address(owner: str, factory: str = DEPOSIT_WALLET_FACTORY,
                           beacon: str = DEPOSIT_WALLET_BEACON) -> str:
    """The owner's deposit wallet as deployed today (beacon proxy): the address polymarket.com shows."""
    args = _immutable_args(owner, factory)
    return create2_address(factory, keccak(args), _init_code(_BEACON_HEAD, beacon, _BEACON_TAIL, args))


def legacy_deposit_wallet_address(owner: str, factory: str = DEPOSIT_WALLET_FACTORY,
                                  implementation: str = DEPOSIT_WALLET_IMPLEMENTATION) -> str:
    """The owner's deposit wallet in the earlier (UUPS proxy) form, still valid where it was deployed."""
    args = _immutable_args(owner, factory)
    return create2_address(factory, keccak(args), _init_code(_ERC1967_HEAD, implementation, _ERC1967_TAIL, args))


def deposit_wallet_addresses(owner: str) -> tuple[str, str]:
    """Both addresses a deposit wallet of ``owner`` can have: (current, legacy)."""
    return deposit_wallet_address(owner), legacy_deposit_wallet_address(owner)


def is_deposit_wallet_of(wallet: str, owner: str) -> bool:
    try:
        wallet = to_checksum_address(wallet)
    except ValueError:
        return False
    return wallet in deposit_wallet_addresses(owner)
