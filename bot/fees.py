"""Taker fees: what the venue keeps when an order takes liquidity.

Polymarket's fee curve is per market (``fd`` in ``/clob-markets``): fee in shares = shares * rate *
(p * (1 - p)) ** exponent, taken in shares on a BUY (the account receives fewer shares) and, valued at
the price, in USDC on a SELL (the account receives less USDC than the answer's amount). Makers pay none.
Realized P&L is the wallet's P&L only if the bot subtracts the same fee the venue does, so the paper
venue and the bot's booking both use this one function.
"""
from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from bot.money import USDC_QUANTUM

ONE = Decimal(1)


def taker_fee_shares(shares: Decimal, price: Decimal, rate: Decimal, exponent: int) -> Decimal:
    """The fee of one taker fill, in shares (rounded down to the venue's 6 decimals, as it settles)."""
    if rate <= 0 or shares <= 0 or not (0 < price < 1):
        return Decimal(0)
    return (shares * rate * (price * (ONE - price)) ** exponent).quantize(USDC_QUANTUM, rounding=ROUND_DOWN)


def taker_fee_usdc(shares: Decimal, price: Decimal, rate: Decimal, exponent: int) -> Decimal:
    """The same fee valued in USDC at the fill price (what a taker SELL receives less)."""
    fee = taker_fee_shares(shares, price, rate, exponent)
    return (fee * price).quantize(USDC_QUANTUM, rounding=ROUND_DOWN)
