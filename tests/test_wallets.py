"""Deposit-wallet addresses: the CREATE2 derivation against vectors from polymarket-client 0.14
(``derive_beacon_deposit_wallet_address`` / ``derive_uups_deposit_wallet_address``, production config)."""
from __future__ import annotations

import pytest

from bot.wallets import (
    deposit_wallet_address,
    deposit_wallet_addresses,
    is_deposit_wallet_of,
    legacy_deposit_wallet_address,
)

VECTORS = [  # owner (key 0x11..11 / 0x22..22), current (beacon) wallet, legacy (UUPS) wallet
    ("0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A", "0x8154deDBDAAA46c07453E47b5b6C0Ff60B8542b9",
     "0x7a57144fAfde87F5cE4a880D570BAe58eeBC83f2"),
    ("0x1563915e194D8CfBA1943570603F7606A3115508", "0x4A4C012A0da602EC81f816C5d498289315d4347d",
     "0xFfDeeE9bed6F3cF96f508547E9DC5aa5AaEB88f6"),
]


@pytest.mark.parametrize("owner,current,legacy", VECTORS)
def test_derivation_matches_polymarket_client(owner, current, legacy):
    assert deposit_wallet_address(owner) == current
    assert deposit_wallet_address(owner.lower()) == current
    assert legacy_deposit_wallet_address(owner) == legacy
    assert deposit_wallet_addresses(owner) == (current, legacy)
    assert is_deposit_wallet_of(current.lower(), owner) and is_deposit_wallet_of(legacy, owner)


def test_other_addresses_are_not_the_owners_wallet():
    (a, wallet_a, _), (b, wallet_b, _) = VECTORS
    assert not is_deposit_wallet_of(wallet_b, a) and not is_deposit_wallet_of(a, a)
    assert not is_deposit_wallet_of("0x12", a)
