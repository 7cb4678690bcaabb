"""Paper and live never mix: which venue a run trades on, and the refusal to manage another venue's
positions (a paper position taken as live would send a real sell for shares never bought)."""
from __future__ import annotations

from pathlib import Path

from bot.errors import StateFileError
from bot.lifecycle import VenueRecorded, apply
from bot.position_manager import BotState, Position


def venue_identity(venue: object) -> tuple[str | None, str | None]:
    """("paper", None) or ("live", the wallet that holds the funds): where positions opened now live."""
    kind = getattr(venue, "name", None)
    return kind, (getattr(venue, "funder", None) if kind == "live" else None)


def same_venue(pos: Position, kind: str | None, wallet: str | None) -> bool:
    return _same(pos.venue, pos.wallet, kind, wallet)


def _same(venue: str | None, pos_wallet: str | None, kind: str | None, wallet: str | None) -> bool:
    if venue is None or kind is None:
        return True
    if venue != kind:
        return False
    return kind != "live" or not pos_wallet or not wallet or pos_wallet.lower() == wallet.lower()


def stamp(state: BotState, kind: str | None, wallet: str | None) -> None:
    """New positions, and those from a file older than the field, live where this run trades."""
    if kind is not None:
        for pos in state.positions:
            if pos.venue is None:
                apply(pos, VenueRecorded(kind, wallet), pos.updated_at)


def refuse_other_venues_positions(state: BotState, kind: str | None, wallet: str | None, path: Path) -> None:
    """Positions recorded on another venue (paper vs live, or another wallet) are refused before anything
    is sent, with what to do."""
    # (venue, wallet, id, active): the state file's positions, then the history's (one row per venue)
    foreign = [(p.venue, p.wallet, p.id, p.is_active) for p in state.positions if not same_venue(p, kind, wallet)]
    count = len(foreign)
    for v, w, n, pid in state.history.venues() if state.history is not None else []:
        if not _same(v, w, kind, wallet):
            foreign.append((v, w, pid, False))
            count += n
    if not foreign:
        return

    def where(k: str | None, w: str | None) -> str:
        return "paper orders (dry-run)" if k == "paper" else f"{k} (wallet {w or 'unknown'})"

    first_venue, first_wallet, first_id, _ = foreign[0]
    active = sum(1 for f in foreign if f[3])
    if kind == "live" and first_venue == "paper":
        todo = (f"to trade live with a fresh state, move {path} (and {path}.paper.json, {path}.history.sqlite) "
                f"away, e.g. `mv {path} {path}.dry-run`; to go on paper trading, run with --dry-run or "
                "bot.dry_run: true")
    elif kind == "paper":
        todo = ("to manage them, run live (bot.dry_run: false, without --dry-run); to paper trade, give the "
                "dry run its own file (bot.positions_file)")
    else:
        todo = (f"run with the wallet that holds them (POLY_PRIVATE_KEY / POLY_FUNDER_ADDRESS), or move {path} "
                "(and its history, {path}.history.sqlite) away to start afresh with this wallet")
    raise StateFileError(
        f"{path}: {count} position(s) ({active} active) belong to {where(first_venue, first_wallet)}, "
        f"e.g. id {first_id}, but this run trades {where(kind, wallet)}. The bot does not "
        f"manage another venue's positions: {todo}")
