"""Which ledgers of a chain may be deleted: the retention rule as a pure function.

A ledger goes when it holds nothing the log still offers (empty, or wholly before the log
start set by truncate_before), or when it is outside retention (older than retention_seconds,
or the log stays >= retention_bytes without it — either limit suffices, as in Kafka) AND every
cursor has consumed it. Only a prefix of the chain is ever deleted, so the log stays
contiguous, and the last ledger (the one being written) is never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from storage.managed_ledger.info import LedgerInfo
from storage.managed_ledger.position import Position


def ledgers_to_delete(
    ledgers: Sequence[LedgerInfo],
    *,
    now: float,
    retention_seconds: float | None,
    retention_bytes: int | None,
    log_start: Position | None = None,
    cursor_positions: Iterable[Position] = (),
    current_ledger_bytes: int = 0,
) -> list[LedgerInfo]:
    """The oldest-first ledgers to delete. current_ledger_bytes is the size of the last
    ledger, which stays whatever happens (and while open, the chain does not record it)."""
    slowest_cursor = min(cursor_positions, default=None)
    closed = ledgers[:-1]
    remaining_bytes = current_ledger_bytes + sum(ledger.size or 0 for ledger in closed)
    doomed: list[LedgerInfo] = []
    for ledger in closed:
        if not _may_delete(
            ledger, now, retention_seconds, retention_bytes, log_start, slowest_cursor,
            remaining_bytes,
        ):
            break
        doomed.append(ledger)
        remaining_bytes -= ledger.size or 0
    return doomed


def _may_delete(
    ledger: LedgerInfo,
    now: float,
    retention_seconds: float | None,
    retention_bytes: int | None,
    log_start: Position | None,
    slowest_cursor: Position | None,
    remaining_bytes: int,
) -> bool:
    if not ledger.is_closed:
        return False
    last = Position(ledger.ledger_id, ledger.last_entry_id)
    if ledger.entries == 0 or (log_start is not None and last < log_start):
        return True
    expired = retention_seconds is not None and ledger.closed + retention_seconds <= now
    oversize = retention_bytes is not None and remaining_bytes - ledger.size >= retention_bytes
    consumed = slowest_cursor is None or slowest_cursor >= last
    return (expired or oversize) and consumed
