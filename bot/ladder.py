"""The take-profit ladder: a position's take-profit split into rungs, each selling a part of the position at its
own price (``strategy.take_profit_ladder``).

A position's rungs are fixed when its entry fills (``plan_ladder``: prices on the tick, sizes in the venue's
0.01 shares, every rung and the last at least the market's minimum order size: a smaller one merges into the
next). What a rung has sold is derived from the position's order records (a record carries its rung: ``rung_left``):
a fill that FAILED takes itself back, and the rung is due again. In ``limit_orders`` mode each rung rests as its own
SELL; their sizes never add up to more than the position holds (open sells reserve the shares: FACTS.md Part 0).
In ``monitor`` mode the bot sells up to the highest rung the bid reached (``rung_exit_size``) and keeps the rest.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from bot.money import fmt, is_dust, price_ceiling, round_shares
from bot.orders import OrderRecord, Role
from bot.position_manager import ExitMode, Position, Rung


@dataclass(frozen=True)
class LadderPlan:
    rungs: list[Rung]
    notes: list[str]   # rungs merged (for the log and ``status``)


def plan_ladder(spec: Sequence[tuple[Decimal, Decimal]], entry_price: Decimal, shares: Decimal, tick: Decimal,
                min_size: Decimal) -> LadderPlan:
    """The rungs of a position of ``shares`` bought at ``entry_price``: ``spec`` is [(profit_pct, share)] (shares
    adding up to 1). Sizes are floored to 0.01 shares, the last rung taking what is left, so they add up to exactly
    what the position can sell. Rungs whose prices meet on the tick are one rung; a rung under ``min_size`` merges
    into the next (the last one into the one before); a position too small for two rungs gets one."""
    total = round_shares(shares)
    notes: list[str] = []
    sized: list[tuple[Decimal, Decimal, Decimal]] = []
    for i, (pct, share) in enumerate(spec):
        price = price_ceiling(entry_price * (1 + pct), tick)
        size = total - sum((s for _, _, s in sized), Decimal(0)) if i == len(spec) - 1 else round_shares(total * share)
        if sized and sized[-1][1] == price:   # on the same tick as the rung before: one order
            notes.append(f"rungs {i} and {i + 1} are both at {fmt(price)} on the tick: one rung")
            sized[-1] = (sized[-1][0], price, sized[-1][2] + size)
        else:
            sized.append((pct, price, size))
    kept: list[Rung] = []
    carry = Decimal(0)
    for i, (pct, price, size) in enumerate(sized):
        size += carry
        if size < min_size and i < len(sized) - 1:
            notes.append(f"rung at {fmt(price)} ({fmt(size)} shares) is under the market's minimum of "
                         f"{fmt(min_size)} shares: merged into the next")
            carry = size
            continue
        carry = Decimal(0)
        if size < min_size and kept:
            last = kept.pop()
            notes.append(f"last rung at {fmt(price)} ({fmt(size)} shares) is under the market's minimum of "
                         f"{fmt(min_size)} shares: merged into the rung at {fmt(last.price)}")
            kept.append(Rung(pct=last.pct, price=last.price, shares=last.shares + size))
        else:
            kept.append(Rung(pct=pct, price=price, shares=size))
    if len(kept) == 1 and len(spec) > 1:
        notes.append(f"{fmt(total)} shares are too few for two rungs of at least {fmt(min_size)}: one TP at "
                     f"{fmt(kept[0].price)}")
    return LadderPlan(kept, notes)


def remaining(rec: OrderRecord) -> Decimal:
    """Shares a resting sell still offers (its matched shares, settled or FAILED, are no longer on the book)."""
    return max((rec.size or Decimal(0)) - rec.filled - rec.failed, Decimal(0))


def rung_left(pos: Position) -> list[Decimal]:
    """What each rung still has to sell. A resting rung's fills are its own (a rung's order that carried the part of
    a lower rung under the minimum fills that part too: what it sold beyond its own shares goes to the rungs below);
    a monitored sale up to a rung covers the rungs in order, lowest first."""
    left = [rung.shares for rung in pos.tp_ladder]
    pool = Decimal(0)
    for r in pos.orders:
        if r.rung is None or not 0 <= r.rung < len(left):
            continue
        if r.role == Role.TP:
            left[r.rung] -= r.filled
        else:
            pool += r.filled
    pool += sum((-x for x in left if x < 0), Decimal(0))
    out = []
    for x in left:
        take = min(max(x, Decimal(0)), pool)
        pool -= take
        out.append(max(x, Decimal(0)) - take)
    return out


def next_rung(pos: Position) -> int | None:
    """The first rung not yet sold in full; None when every rung is sold or the position has no ladder."""
    return next((i for i, x in enumerate(rung_left(pos)) if not is_dust(x)), None)


def next_target(pos: Position) -> Decimal | None:
    """The take-profit price the position aims at now: the next rung's, or its single TP."""
    if not pos.tp_ladder:
        return pos.tp_price
    i = next_rung(pos)
    return pos.tp_ladder[i].price if i is not None else None


def reached_rung(pos: Position, bid: Decimal) -> int | None:
    """Monitor mode: the highest rung at or below ``bid`` not sold yet (a jump through two rungs sells both)."""
    first = next_rung(pos)
    if first is None or bid < pos.tp_ladder[first].price:
        return None
    return max(i for i in range(first, len(pos.tp_ladder)) if pos.tp_ladder[i].price <= bid)


def rung_exit_size(pos: Position, rung: int) -> Decimal:
    """Monitor mode: the shares a sale for rungs up to ``rung`` sells: what they still lack, at least the market's
    minimum, and everything when the shares left after it would be fewer than the minimum (no remainder that no
    order could carry) or when it is the last rung."""
    held = round_shares(pos.shares)
    if rung >= len(pos.tp_ladder) - 1:
        return held
    size = max(round_shares(sum(rung_left(pos)[:rung + 1], Decimal(0))), pos.min_order_size)
    return held if held - size < pos.min_order_size else size


def rung_exit_done(pos: Position, rung: int) -> bool:
    """Whether a monitored sale for rungs up to ``rung`` has sold what it set out to."""
    return is_dust(pos.shares) or is_dust(sum(rung_left(pos)[:rung + 1], Decimal(0)))


@dataclass(frozen=True)
class RungOrder:
    rung: int
    price: Decimal
    size: Decimal


def rungs_to_place(pos: Position) -> list[RungOrder]:
    """``limit_orders`` mode: the rung orders to rest now (those not resting and not sold), in order. Their sizes
    and those resting add up to at most what the position holds; a part under the market's minimum (a rung whose
    order went away partly filled) merges into the next rung to place, or, the last, into the one before."""
    resting = {r.rung for r in pos.live_tps}
    free = round_shares(pos.shares) - sum((remaining(r) for r in pos.live_tps), Decimal(0))
    out: list[RungOrder] = []
    carry = Decimal(0)
    for i, (rung, left) in enumerate(zip(pos.tp_ladder, rung_left(pos), strict=True)):
        if i in resting:
            continue
        if is_dust(left) and is_dust(carry):
            continue
        size = round_shares(min(left + carry, free - sum((o.size for o in out), Decimal(0))))
        if size <= 0:
            break
        if size < pos.min_order_size and i < len(pos.tp_ladder) - 1:
            carry = size
            continue
        carry = Decimal(0)
        if size < pos.min_order_size and out:
            out[-1] = RungOrder(out[-1].rung, out[-1].price, out[-1].size + size)
        else:
            out.append(RungOrder(i, rung.price, size))
    # A part under the minimum that found no rung to join is not sent (the venue would refuse it, and the position
    # would fall back to monitoring): the stop-loss and the time exit still cover it. Only a whole position under
    # the minimum is tried as one TP, as a single TP is.
    whole = not pos.live_tps and len(out) == 1
    return [o for o in out if o.size >= pos.min_order_size or whole]


def ladder_text(pos: Position) -> str:
    """The ladder in one line for ``status``: each rung's price and shares, and where it stands."""
    resting = {r.rung: r for r in pos.live_tps}
    parts = []
    for i, (rung, left) in enumerate(zip(pos.tp_ladder, rung_left(pos), strict=True)):
        if is_dust(left):
            where = "sold"
        elif i in resting:
            where = f"resting {fmt(remaining(resting[i]))}"
        else:
            where = "watched" if pos.exit_mode == ExitMode.MONITOR else "to place"
        parts.append(f"{fmt(rung.price)} x{fmt(rung.shares)} {where}")
    return " | ".join(parts)


def tps_missing(pos: Position) -> bool:
    """``limit_orders`` mode: whether a TP order should be placed now (none rests; for a ladder: a rung is neither
    resting nor sold)."""
    return bool(rungs_to_place(pos)) if pos.tp_ladder else pos.live_tp is None


def rungs_filled(pos: Position) -> list[int]:
    """The rungs recorded as filled (a measurement in the position's metrics; one edited into nonsense counts none)."""
    done = pos.metrics.get("rungs_filled")
    if not isinstance(done, list):
        return []
    return [x for x in done if isinstance(x, int) and not isinstance(x, bool)]
