"""Reading a managed ledger's chain from storage: range reads across ledgers and find(index).

The managed ledger answers what it can from its tail cache; everything older comes through
here, from the ledgers' storage nodes via the ledger client. `find` narrows to one ledger by
the first index the chain records per ledger, then binary-searches inside it by reading
entry headers (remembering the indexes it probed).

A read with a byte budget cannot know the size of the entry after the last one that fits,
so it reads one more than it returns (with ~1 MB entries and 1 MiB fetches: two read for one
returned). Those entries read but not returned are kept as the read-ahead: a catch-up reader
asks for exactly them next, and gets them without another storage read.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from storage.ledger.errors import CorruptEntryError as LedgerCorruptEntryError
from storage.ledger.errors import LedgerError
from storage.ledger.errors import NoSuchLedgerError as NoSuchLedgerIdError
from storage.managed_ledger.cache import EntryCache, ReadBatch
from storage.managed_ledger.entry_format import HEADER_SIZE, decode_entry, decode_index
from storage.managed_ledger.errors import CorruptEntryError, ManagedLedgerError
from storage.managed_ledger.position import Entry, Position

if TYPE_CHECKING:
    from storage.ledger import LedgerClient, ReadHandle, WriteHandle

# Largest number of entries asked from the ledger client in one read call.
MAX_ENTRIES_PER_STORAGE_READ = 256
# Closed-ledger read handles kept open for readers, least recently used dropped first.
MAX_READ_HANDLES = 32
# (ledger id, entry id) -> index pairs remembered from find()'s binary-search probes.
MAX_REMEMBERED_INDEXES = 4096
# Entries read from storage but not returned, kept for the next read if at most this large.
MAX_READ_AHEAD_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LedgerRange:
    """One ledger of the chain as readers see it: its confirmed entries and their bytes."""

    ledger_id: int
    entries: int
    size: int
    first_index: int | None


class ChainView(Protocol):
    """What the reader needs to know of the managed ledger it reads."""

    name: str

    def ranges(self) -> list[LedgerRange]: ...
    def first_entry_of(self, ledger_id: int) -> int: ...
    def current_writer(self) -> WriteHandle | None: ...

    @property
    def first_position(self) -> Position: ...
    @property
    def last_confirmed_position(self) -> Position: ...


class ChainReader:
    def __init__(self, chain: ChainView, ledgers: LedgerClient, cache: EntryCache) -> None:
        self._chain = chain
        self._ledgers = ledgers
        self._cache = cache
        self._read_handles: OrderedDict[int, ReadHandle] = OrderedDict()
        self._remembered_indexes: dict[tuple[int, int], int] = {}
        self._read_ahead: list[Entry] = []  # consecutive entries read past a byte budget

    async def read(self, start: Position, max_entries: int, max_bytes: int | None) -> list[Entry]:
        """Entries from start onward across ledgers (see ManagedLedger.read)."""
        batch = ReadBatch(max_entries, max_bytes)
        position = start
        while not batch.full:
            located = self._locate(position)
            if located is None:
                break
            ledger, first = located
            cached = self._cache.read(Position(ledger.ledger_id, first), batch.room, None)
            if cached is not None:
                batch.extend(cached)  # the cache holds the whole rest of the log
                break
            entries = self._take_read_ahead(Position(ledger.ledger_id, first))
            if not entries:
                count = min(ledger.entries - first, batch.room,
                            _batch_size(ledger, batch.budget))
                try:
                    entries = await self._read_entries(ledger.ledger_id, first, count)
                except NoSuchLedgerIdError:
                    if any(item.ledger_id == ledger.ledger_id for item in self._chain.ranges()):
                        raise
                    position = self._chain.first_position  # deleted by retention meanwhile
                    continue
            taken = batch.extend(entries)
            self._keep_read_ahead(entries[taken:])
            position = Position(ledger.ledger_id, first + len(entries))
        return batch.entries

    async def _read_entries(self, ledger_id: int, first: int, count: int) -> list[Entry]:
        stored = await self.read_ledger(ledger_id, first, first + count - 1)
        entries = []
        for entry_id, raw in enumerate(stored, start=first):
            entry_position = Position(ledger_id, entry_id)
            index, data = decode_entry(raw, self._describe(entry_position))
            entries.append(Entry(entry_position, index, data))
        return entries

    def _take_read_ahead(self, position: Position) -> list[Entry]:
        """The read-ahead if it starts at `position` (what the read does not take is kept
        again)."""
        ahead = self._read_ahead
        if not ahead or ahead[0].position != position:
            return []
        self._read_ahead = []
        return ahead

    def _keep_read_ahead(self, entries: list[Entry]) -> None:
        if entries and sum(entry.size for entry in entries) <= MAX_READ_AHEAD_BYTES:
            self._read_ahead = entries

    def _locate(self, position: Position) -> tuple[LedgerRange, int] | None:
        """The ledger and first entry id holding the first entry at or after position."""
        for ledger in self._chain.ranges():
            if ledger.ledger_id < position.ledger_id:
                continue
            first = self._chain.first_entry_of(ledger.ledger_id)
            if ledger.ledger_id == position.ledger_id:
                first = max(first, position.entry_id)
            if first < ledger.entries:
                return ledger, first
        return None

    async def find(self, index: int) -> Position | None:
        """Position of the last entry whose index <= index (see ManagedLedger.find)."""
        chain = self._chain
        first = chain.first_position
        if first > chain.last_confirmed_position:
            return None
        cached_first = self._cache.first_position
        if cached_first is not None and cached_first >= first:
            cached = self._cache.last_at_or_below(index)
            if cached is not None:
                return cached.position
        candidates = [ledger for ledger in chain.ranges()
                      if chain.first_entry_of(ledger.ledger_id) < ledger.entries]
        chosen = None
        for ledger in reversed(candidates):
            first_index = ledger.first_index
            if first_index is None:
                first_index = await self.read_index(ledger.ledger_id, 0)
            if first_index <= index:
                chosen = ledger
                break
        if chosen is None:
            return None
        low = chain.first_entry_of(chosen.ledger_id)
        high = chosen.entries - 1
        if await self.read_index(chosen.ledger_id, low) > index:
            return None  # the ledger was cut by truncate_before above the target
        while low < high:
            middle = (low + high + 1) // 2
            if await self.read_index(chosen.ledger_id, middle) <= index:
                low = middle
            else:
                high = middle - 1
        return Position(chosen.ledger_id, low)

    async def read_index(self, ledger_id: int, entry_id: int) -> int:
        """The index stored with one entry."""
        key = (ledger_id, entry_id)
        known = self._remembered_indexes.get(key)
        if known is not None:
            return known
        entries = self._cache.read(Position(ledger_id, entry_id), 1, None)
        if entries and entries[0].position == Position(ledger_id, entry_id):
            return entries[0].index
        raw = (await self.read_ledger(ledger_id, entry_id, entry_id))[0]
        index = decode_index(raw, self._describe(Position(ledger_id, entry_id)))
        if len(self._remembered_indexes) >= MAX_REMEMBERED_INDEXES:
            self._remembered_indexes.clear()
        self._remembered_indexes[key] = index
        return index

    async def read_ledger(self, ledger_id: int, first: int, last: int) -> list[bytes]:
        """Stored entries first..last of one ledger; ledger errors become managed-ledger
        errors naming what was read (NoSuchLedgerError passes: callers handle deletion)."""
        try:
            writer = self._chain.current_writer()
            if writer is not None and ledger_id == writer.ledger_id:
                return await writer.read(first, last)
            handle = await self._read_handle(ledger_id)
            return await handle.read(first, last)
        except NoSuchLedgerIdError:
            raise
        except LedgerError as exc:
            what = f"{self._chain.name}: ledger {ledger_id} entries {first}..{last}: {exc}"
            if isinstance(exc, LedgerCorruptEntryError):
                raise CorruptEntryError(what) from exc
            raise ManagedLedgerError(f"reading {what}") from exc

    async def _read_handle(self, ledger_id: int) -> ReadHandle:
        handle = self._read_handles.get(ledger_id)
        if handle is not None:
            self._read_handles.move_to_end(ledger_id)
            return handle
        handle = await self._ledgers.open_ledger(ledger_id, recovery=False)
        self._read_handles[ledger_id] = handle
        while len(self._read_handles) > MAX_READ_HANDLES:
            _, evicted = self._read_handles.popitem(last=False)
            evicted.close()
        return handle

    def forget(self, ledger_id: int) -> None:
        """Drop what is kept about a ledger that left the chain."""
        if self._read_ahead and self._read_ahead[0].position.ledger_id == ledger_id:
            self._read_ahead = []
        handle = self._read_handles.pop(ledger_id, None)
        if handle is not None:
            handle.close()
        for key in [key for key in self._remembered_indexes if key[0] == ledger_id]:
            del self._remembered_indexes[key]

    def _describe(self, position: Position) -> str:
        return f"entry {position} of managed ledger {self._chain.name}"


def _batch_size(ledger: LedgerRange, budget: int | None) -> int:
    """Entries to ask for at once: all allowed without a byte budget, else about as many as
    the budget holds at the ledger's average entry size."""
    if budget is None:
        return MAX_ENTRIES_PER_STORAGE_READ
    if not ledger.entries:
        return 1
    average = max(1, ledger.size // ledger.entries - HEADER_SIZE)
    return max(1, min(MAX_ENTRIES_PER_STORAGE_READ, budget // average + 1))


async def ledger_length(handle: Any, entries: int) -> int:
    """Bytes stored in a sealed ledger: its metadata knows; read the entries otherwise."""
    length = getattr(getattr(handle, "metadata", None), "length", None)
    if isinstance(length, int) and (length or not entries):
        return length
    total = 0
    for first in range(0, entries, MAX_ENTRIES_PER_STORAGE_READ):
        last = min(entries, first + MAX_ENTRIES_PER_STORAGE_READ) - 1
        total += sum(len(raw) for raw in await handle.read(first, last))
    return total
