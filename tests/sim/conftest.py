"""Fixtures for the simulator's tests: a started SimExchange and SDK clients on throwaway wallets."""
from __future__ import annotations

import logging

import pytest
from py_clob_client_v2 import ClobClient

from bot.sim import SimExchange


@pytest.fixture(autouse=True)
def quiet_sdk():
    logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)


@pytest.fixture
def sim():
    with SimExchange(seed=5, page_size=3) as exchange:
        yield exchange


def sdk_client(sim: SimExchange, usdc: float = 100) -> tuple[ClobClient, dict]:
    """A fresh SDK client (its caches never expire) with L2 credentials, on a funded wallet."""
    wallet = sim.new_wallet(usdc=usdc)
    client = ClobClient(sim.clob_url, chain_id=137, key=wallet["private_key"], signature_type=0,
                        funder=wallet["address"])
    client.set_api_creds(client.create_or_derive_api_key())
    return client, wallet


@pytest.fixture
def market(sim):
    return sim.create_market("Will the sim behave?", yes_price=0.5, volatility=0)
