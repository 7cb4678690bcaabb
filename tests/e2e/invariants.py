"""What must hold between the bot's positions and the venue after any run, however it went."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D

from py_clob_client_v2 import ClobClient

from bot.position_manager import BotState, PositionState

SHARE_TOL = D("0.02")


def venue_view(clob_url: str, private_key: str, address: str) -> dict:
    """The account as the venue sees it, through the SDK: open orders, trades, token balances."""
    client = ClobClient(clob_url, chain_id=137, key=private_key, funder=address)
    client.set_api_creds(client.create_or_derive_api_key())
    return {"open_orders": client.get_open_orders(), "trades": client.get_trades()}


def check(state: BotState, balances: dict, view: dict) -> dict:
    """Counts of violations: orphan orders, orphan shares, duplicate buys, balance mismatches, and positions still
    waiting for trades the venue has long settled or FAILED (``settling``: a position in that state; ``unconfirmed``:
    a fill record not confirmed although none of its order's trades is still MATCHED). Also ``failed_trades``: how
    many of the account's trades FAILED (ghost fills, FACTS.md Part 0, 0.2), a measure, not a violation."""
    active = state.active_positions()
    known_orders = {order_id for p in active for order_id in p.tp_order_ids}
    orphan_orders = [o["id"] for o in view["open_orders"] if o["id"] not in known_orders]
    by_token = defaultdict(list)
    for p in active:
        by_token[p.token_id].append(p)
    orphan_shares, mismatches = [], []
    for token, qty in balances["tokens"].items():
        qty = D(qty)
        holders = by_token.get(token, [])
        # what closed positions on the token could not sell (under the venue's 0.01 unit) is theirs, on the books
        remainders = sum((max(p.entry_shares - p.sold_shares, D(0)) for p in state.all_positions()
                          if p.token_id == token and not p.is_active), D(0))
        if qty - remainders >= D("0.01") and not holders:
            orphan_shares.append((token[:10], str(qty)))
    for p in active:
        if p.status == PositionState.OPENING:
            continue
        held = D(balances["tokens"].get(p.token_id, "0"))
        if abs(held - p.shares) > SHARE_TOL + p.shares * D("0.01"):
            mismatches.append((p.id, str(p.shares), str(held)))
    # every taker BUY on the venue belongs to exactly one position's entry
    buys = {t["taker_order_id"] for t in view["trades"] if t["trader_side"] == "TAKER" and t["side"] == "BUY"}
    entries = [p.entry_order_id for p in state.all_positions() if p.entry_order_id]
    adopted = [p for p in state.all_positions() if not p.entry_order_id and p.entry_shares > 0]
    duplicates = len(entries) - len(set(entries)) + max(0, len(buys) - len(set(entries)) - len(adopted))
    # a match is not a settlement: once the venue has settled or FAILED every trade of an order, the bot must have
    # confirmed its fills or taken them back (a position in ``settling`` waits for exactly that)
    matched = {oid for t in view["trades"] if str(t.get("status", "")).upper() == "MATCHED" for oid in _order_ids(t)}
    settling = [p.id for p in active if p.status == PositionState.SETTLING]
    unconfirmed = [(p.id, r.role.value, r.order_id) for p in active for r in p.orders
                   if not r.confirmed and r.filled > 0 and r.order_id not in matched]
    failed_trades = sum(1 for t in view["trades"] if str(t.get("status", "")).upper() == "FAILED")
    return {"orphan_orders": len(orphan_orders), "orphan_shares": len(orphan_shares), "duplicates": duplicates,
            "mismatches": len(mismatches), "settling": len(settling), "unconfirmed": len(unconfirmed),
            "failed_trades": failed_trades,
            "details": {"orders": orphan_orders, "shares": orphan_shares, "mismatches": mismatches,
                        "settling": settling, "unconfirmed": unconfirmed}}


def _order_ids(trade: dict) -> list[str]:
    """The account's order(s) in a trade: the taker's, or the maker orders listed (``maker_orders``)."""
    if str(trade.get("trader_side", "TAKER")).upper() == "TAKER":
        return [str(trade.get("taker_order_id", ""))]
    return [str(m.get("order_id", "")) for m in trade.get("maker_orders") or []]
