"""Transactions as one partition sees them: open transactions, the last stable offset, and
the aborted transactions a read_committed consumer must drop. No I/O.

A transaction opens in a partition with its producer's first transactional batch and ends
with a marker (a control batch, commit or abort) that the transaction coordinator writes.
The last stable offset (LSO) is the first offset of the oldest transaction not yet ended by
a durable marker (or the high watermark when none is open): read_committed consumers read
only below it. For every aborted transaction the partition remembers (producer id, first
offset, marker offset), so a fetch can list the aborted transactions overlapping what it
returns.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class AbortedTransaction:
    last_offset: int  # the abort marker's offset (sort key)
    producer_id: int
    first_offset: int


class TransactionIndex:
    def __init__(self) -> None:
        self._open: dict[int, int] = {}  # producer id -> first offset of its open transaction
        self._ending: dict[int, tuple[int, int, bool]] = {}  # marker offset -> (pid, first, commit)
        self._aborted: list[AbortedTransaction] = []

    def open_transactions(self) -> dict[int, int]:
        return dict(self._open)

    def on_data_batch(self, producer_id: int, base_offset: int) -> None:
        """A transactional data batch was given `base_offset`."""
        self._open.setdefault(producer_id, base_offset)

    def on_marker_assigned(self, producer_id: int, marker_offset: int, commit: bool) -> None:
        """A marker was given an offset; the transaction stays unstable until it is durable."""
        first = self._open.pop(producer_id, None)
        if first is not None:
            self._ending[marker_offset] = (producer_id, first, commit)

    def on_marker_durable(self, marker_offset: int) -> None:
        ending = self._ending.pop(marker_offset, None)
        if ending is None:
            return
        producer_id, first, commit = ending
        if not commit:
            bisect.insort(self._aborted, AbortedTransaction(marker_offset, producer_id, first))

    def on_marker_failed(self, marker_offset: int) -> None:
        """The marker never became durable: the transaction is open again."""
        ending = self._ending.pop(marker_offset, None)
        if ending is not None:
            producer_id, first, _ = ending
            self._open.setdefault(producer_id, first)

    def last_stable_offset(self, high_watermark: int) -> int:
        firsts = list(self._open.values()) + [first for _, first, _ in self._ending.values()]
        return min([high_watermark, *firsts])

    def aborted_overlapping(self, first_offset: int, last_offset: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of aborted transactions overlapping the range."""
        start = bisect.bisect_left(self._aborted, AbortedTransaction(first_offset, -1, -1))
        return [(t.producer_id, t.first_offset) for t in self._aborted[start:]
                if t.first_offset <= last_offset]

    def forget_before(self, log_start_offset: int) -> None:
        """Drop aborted transactions that ended before the log start."""
        keep = bisect.bisect_left(self._aborted, AbortedTransaction(log_start_offset, -1, -1))
        del self._aborted[:keep]

    def snapshot(self, durable_end: int) -> dict[str, Any]:
        """The index as of offset `durable_end` (what is in flight is left out)."""
        # Markers not yet durable: after a restart their transactions are still open.
        open_transactions = dict(self._open)
        for producer_id, first, _ in self._ending.values():
            open_transactions.setdefault(producer_id, first)
        return {
            "open": {str(pid): first for pid, first in open_transactions.items()
                     if first < durable_end},
            "aborted": [[t.producer_id, t.first_offset, t.last_offset] for t in self._aborted],
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> TransactionIndex:
        index = cls()
        index._open = {int(pid): int(first) for pid, first in snapshot.get("open", {}).items()}
        index._aborted = sorted(AbortedTransaction(int(last), int(pid), int(first))
                                for pid, first, last in snapshot.get("aborted", []))
        return index
