"""Bytes-bounded cache of the most recently appended entries of one managed ledger.

It always holds a contiguous tail of the log (every confirmed entry is added in order, the
oldest are evicted first), so a read whose start is inside the cache is answered completely
from memory: tailing consumers need no storage-node round trip.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from storage.managed_ledger.position import Entry, Position

# Rough per-entry bookkeeping cost (objects, list slot) counted against the byte budget so
# that many tiny entries cannot grow the cache far beyond it.
ENTRY_OVERHEAD_BYTES = 64


def _position_of(entry: Entry) -> Position:
    return entry.position


def _index_of(entry: Entry) -> int:
    return entry.index


class ReadBatch:
    """Collects the entries of one read within its limits: at most max_entries, and at most
    max_bytes of data except that the first entry is always taken (as Kafka fetches do)."""

    def __init__(self, max_entries: int, max_bytes: int | None) -> None:
        self.entries: list[Entry] = []
        self.room = max_entries
        self.budget = max_bytes
        self.full = max_entries <= 0

    def extend(self, entries: Iterable[Entry]) -> int:
        """Take entries in order while they fit; returns how many were taken."""
        taken = 0
        for entry in entries:
            if self.full:
                break
            size = entry.size
            if self.budget is not None:
                if self.entries and size > self.budget:
                    self.full = True
                    break
                self.budget -= size
            self.entries.append(entry)
            taken += 1
            self.room -= 1
            self.full = self.room <= 0 or (self.budget is not None and self.budget <= 0)
        return taken


class EntryCache:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: list[Entry] = []
        self._head = 0  # entries[:head] are evicted; compacted lazily to keep eviction O(1)
        self._bytes = 0

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries) - self._head

    @property
    def first_position(self) -> Position | None:
        return self._entries[self._head].position if len(self) else None

    def add(self, entry: Entry) -> None:
        """Append the newest confirmed entry (positions must increase)."""
        if self._max_bytes <= 0:
            return
        self._entries.append(entry)
        self._bytes += entry.size + ENTRY_OVERHEAD_BYTES
        self._shrink_to(self._max_bytes)

    def read(self, start: Position, max_entries: int, max_bytes: int | None) -> list[Entry] | None:
        """Entries from start (or the next one after it) onward, or None when the cache does
        not cover start, i.e. older entries may exist that only storage has.

        max_bytes counts entry data and is soft: the first entry is returned even if larger.
        """
        first = self.first_position
        if first is None or start < first:
            return None
        i = bisect_left(self._entries, start, lo=self._head, key=_position_of)
        batch = ReadBatch(max_entries, max_bytes)
        batch.extend(self._entries[i : i + max_entries])
        return batch.entries

    def last_at_or_below(self, index: int) -> Entry | None:
        """The last cached entry whose index <= index, if the cache alone can tell: None when
        index lies before the first cached entry."""
        i = bisect_right(self._entries, index, lo=self._head, key=_index_of)
        return self._entries[i - 1] if i > self._head else None

    def evict_before(self, position: Position) -> None:
        """Drop entries older than position (their ledgers were deleted or truncated)."""
        while len(self) and self._entries[self._head].position < position:
            self._drop_oldest()
        self._compact()

    def resize(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._shrink_to(max_bytes)

    def clear(self) -> None:
        self._entries.clear()
        self._head = 0
        self._bytes = 0

    def _shrink_to(self, max_bytes: int) -> None:
        while self._bytes > max_bytes and len(self):
            self._drop_oldest()
        self._compact()

    def _drop_oldest(self) -> None:
        entry = self._entries[self._head]
        self._entries[self._head] = None  # type: ignore[call-overload]  # free the data now
        self._head += 1
        self._bytes -= entry.size + ENTRY_OVERHEAD_BYTES

    def _compact(self) -> None:
        if self._head and self._head * 2 >= len(self._entries):
            del self._entries[: self._head]
            self._head = 0
