"""Position (ledger id, entry id) of an entry in a managed ledger, and the Entry read back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class Position:
    """Where an entry lives: ledgers are chained in increasing id order, so positions compare
    in log order. An entry id of -1 means "before the first entry of that ledger"."""

    ledger_id: int
    entry_id: int

    def __str__(self) -> str:
        return f"{self.ledger_id}:{self.entry_id}"


@dataclass(slots=True)
class Entry:
    """One entry of the log: its position, the caller's index given at append, the data."""

    position: Position
    index: int
    data: bytes
