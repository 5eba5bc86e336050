"""The node's in-memory picture of its journal: ledgers, their entry index, and how
much of each segment is still live.

The same `apply` builds it at startup (from index files and scans) and keeps it
current while the node runs, so a restarted node ends up exactly where the
running one was.

Rules the state enforces:
- An entry's location is recorded only once its record is durable.
- A deleted ledger leaves a tombstone; adds that reach a tombstoned ledger are
  ignored (their bytes are dead), so a delete is never undone by a late add.
- A tombstone is kept while any segment still holds records of that ledger:
  it is what stops those records from coming back on restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from storage.node.records import RecordInfo, RecordKind


class Location(NamedTuple):
    segment: int
    offset: int
    length: int  # record header + payload


# A node holds the location of every entry it stores, so these are its most numerous
# objects. They are kept as plain (segment, offset, length) tuples: CPython's cyclic garbage
# collector stops tracking a plain tuple of ints, never a NamedTuple, and every object it
# tracks lengthens each full collection, a pause of the whole process.
StoredLocation = tuple[int, int, int]


class LedgerState:
    """What the node holds of one ledger."""

    __slots__ = ("entries", "last_add_confirmed", "last_entry_id", "fenced", "fence_segment")

    def __init__(self) -> None:
        self.entries: dict[int, StoredLocation] = {}
        self.last_add_confirmed = -1  # highest LAC piggybacked on an add
        self.last_entry_id = -1
        self.fenced = False
        self.fence_segment = -1  # segment holding the newest FENCE record


@dataclass
class SegmentUsage:
    """Space accounting of one segment file."""
    number: int
    entry_bytes: int = 0  # all entry records written to it
    live_bytes: int = 0  # entry records the index still points to
    ledgers: set[int] = field(default_factory=set)  # ledgers with entry records in it
    indexed: bool = False  # its index file is written (it is sealed and may be collected)

    @property
    def dead_bytes(self) -> int:
        return self.entry_bytes - self.live_bytes


class NodeState:
    def __init__(self) -> None:
        self.ledgers: dict[int, LedgerState] = {}
        self.segments: dict[int, SegmentUsage] = {}
        self.tombstones: dict[int, int] = {}  # deleted ledger -> segment of its DELETE record

    def segment(self, number: int) -> SegmentUsage:
        usage = self.segments.get(number)
        if usage is None:
            usage = self.segments[number] = SegmentUsage(number)
        return usage

    def apply(self, segment: int, record: RecordInfo) -> None:
        """Account for a durable record of `segment`."""
        if record.kind == RecordKind.ADD:
            self.apply_add(segment, record)
        elif record.kind == RecordKind.FENCE:
            self.apply_fence(segment, record.ledger_id)
        elif record.kind == RecordKind.DELETE:
            self.apply_delete(segment, record.ledger_id)
        else:
            self.segment(segment)  # an unknown kind written by a newer node: keep the file

    def apply_add(self, segment: int, record: RecordInfo) -> None:
        usage = self.segment(segment)
        usage.entry_bytes += record.length
        usage.ledgers.add(record.ledger_id)
        if record.ledger_id in self.tombstones:
            return
        usage.live_bytes += record.length
        ledger = self.ledgers.get(record.ledger_id)
        if ledger is None:
            ledger = self.ledgers[record.ledger_id] = LedgerState()
        previous = ledger.entries.get(record.entry_id)
        if previous is not None:
            previous_segment, _, previous_length = previous
            self.segments[previous_segment].live_bytes -= previous_length
        ledger.entries[record.entry_id] = (segment, record.offset, record.length)
        if record.entry_id > ledger.last_entry_id:
            ledger.last_entry_id = record.entry_id
        if record.last_add_confirmed > ledger.last_add_confirmed:
            ledger.last_add_confirmed = record.last_add_confirmed

    def apply_fence(self, segment: int, ledger_id: int) -> None:
        self.segment(segment)
        if ledger_id in self.tombstones:
            return
        ledger = self.ledgers.get(ledger_id)
        if ledger is None:
            ledger = self.ledgers[ledger_id] = LedgerState()
        ledger.fenced = True
        ledger.fence_segment = segment

    def apply_delete(self, segment: int, ledger_id: int) -> None:
        self.segment(segment)
        ledger = self.ledgers.pop(ledger_id, None)
        if ledger is not None:
            for segment_number, _, length in ledger.entries.values():
                self.segments[segment_number].live_bytes -= length
        self.tombstones[ledger_id] = segment

    def location(self, ledger_id: int, entry_id: int) -> Location | None:
        ledger = self.ledgers.get(ledger_id)
        stored = None if ledger is None else ledger.entries.get(entry_id)
        return None if stored is None else Location._make(stored)

    def tombstone_needed(self, ledger_id: int, ignoring_segment: int) -> bool:
        """Whether a segment other than `ignoring_segment` still holds records of the
        deleted ledger (and so its DELETE record must outlive `ignoring_segment`)."""
        return any(ledger_id in usage.ledgers for number, usage in self.segments.items()
                   if number != ignoring_segment)

    def forget_segment(self, number: int) -> None:
        """The segment's file is gone: drop its accounting, and every tombstone whose
        DELETE record is gone and whose ledger no segment holds records of any more."""
        del self.segments[number]
        for ledger_id, delete_segment in list(self.tombstones.items()):
            if delete_segment not in self.segments and not self.tombstone_needed(ledger_id, -1):
                del self.tombstones[ledger_id]
