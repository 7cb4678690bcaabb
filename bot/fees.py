"""Taker fees on CLOB V2: what the venue charges an order that takes liquidity.

fee (USDC, pUSD) = shares * rate * (p * (1 - p)) ** exponent, per trade at the trade's price, with ``rate`` and
``exponent`` from the market's fee curve (``fd`` in ``/clob-markets``), floored to 5 decimals. It is paid in USDC
on BUY and SELL alike: a taker BUY receives every share it bought and pays the fee on top of the notional, a
taker SELL receives the notional less the fee. Makers pay none. (FACTS.md Part 0, 0.1: the SDK's
``adjust_market_buy_amount``, NautilusTrader's ``compute_commission``, a live fill in py-clob-client-v2 issue
107. The V1 rule, a BUY's fee taken in shares, ended with the V2 cutover of 2026-04-28.)

Realized P&L is the wallet's only if the bot charges the same fee as the venue, so the paper venue, the live
venue's booking and the entry's sizing all use this one function.
"""
from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

ONE = Decimal(1)
#: The venue's fee precision: 5 decimals, rounded down.
FEE_QUANTUM = Decimal("0.00001")


def taker_fee(shares: Decimal, price: Decimal, rate: Decimal, exponent: int) -> Decimal:
    """The USDC fee of one taker trade of ``shares`` at ``price`` (0 off the curve or for a maker)."""
    if rate <= 0 or shares <= 0 or not (0 < price < 1):
        return Decimal(0)
    return (shares * rate * (price * (ONE - price)) ** exponent).quantize(FEE_QUANTUM, rounding=ROUND_DOWN)


def fee_per_usdc(prices: tuple[Decimal, ...], rate: Decimal, exponent: int) -> Decimal:
    """The largest fee per dollar of notional a taker pays at any of ``prices`` (the ask and the buy's cap):
    what a BUY must keep aside on top of what it spends on shares."""
    if rate <= 0:
        return Decimal(0)
    return max((rate * (p * (ONE - p)) ** exponent / p for p in prices if 0 < p < 1), default=Decimal(0))
