"""CompactedLog: a key → value table kept durable as a managed ledger of change entries.

Every `write(changes)` appends one entry (a batch of key/value changes, a None value deleting
the key) and fires once that entry is durable; the in-memory table (`live`) then reflects it.
Opening replays the ledger from its first entry, latest value per key winning, as Kafka
compacts `__consumer_offsets`.

Replay stays bounded by snapshots: once the changes written since the last snapshot outnumber
the live keys (and at least `snapshot_min_changes`), the table is written out as a snapshot —
one or more "snapshot part" entries appended back to back — and, once the last part is
durable, the ledger is truncated before the first part. Replay treats a snapshot as "the whole
table from here on", but only once all its parts were read in order: a snapshot cut short by
a crash (or a failed append) is ignored and the entries before it still count.

A snapshot covers the writes still in flight when it is taken (they precede it in the log),
so no acknowledged change is ever lost by truncation.

Entry layout (big-endian):
    format version u8 (1) | kind u8 (0 changes, 1 snapshot part) | crc32c u32 of the body |
    snapshot id u32 | part index u32 | part count u32 | body
    body = change count u32, then per change: key length u32, key,
           value length i32 (-1 = delete), value
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import crc32c
from twisted.internet import defer
from twisted.python.failure import Failure

from storage.managed_ledger import ManagedLedger, Position

log = logging.getLogger(__name__)

Change = tuple[bytes, bytes | None]

ENTRY_FORMAT_VERSION = 1
KIND_CHANGES = 0
KIND_SNAPSHOT_PART = 1
_HEADER = struct.Struct(">BBIIII")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")

DEFAULT_SNAPSHOT_MIN_CHANGES = 1000
DEFAULT_SNAPSHOT_PART_BYTES = 1024 * 1024
READ_BATCH_ENTRIES = 256
READ_BATCH_BYTES = 8 * 1024 * 1024


class CompactedLogError(Exception):
    """The log cannot be used: an entry is damaged, or a write failed (reopen to go on)."""


@dataclass(frozen=True)
class EntryHeader:
    kind: int
    snapshot_id: int = 0
    part_index: int = 0
    part_count: int = 0


def encode_entry(header: EntryHeader, changes: Sequence[Change]) -> bytes:
    body = bytearray(_U32.pack(len(changes)))
    for key, value in changes:
        body += _U32.pack(len(key))
        body += key
        if value is None:
            body += _I32.pack(-1)
        else:
            body += _I32.pack(len(value))
            body += value
    checksum = crc32c.crc32c(body)
    return _HEADER.pack(ENTRY_FORMAT_VERSION, header.kind, checksum, header.snapshot_id,
                        header.part_index, header.part_count) + bytes(body)


def decode_entry(data: bytes, where: str) -> tuple[EntryHeader, list[Change]]:
    """Raises CompactedLogError naming `where` if the entry is damaged or unknown."""
    if len(data) < _HEADER.size:
        raise CompactedLogError(f"{where}: entry of {len(data)} bytes is shorter than its header")
    version, kind, checksum, snapshot_id, part_index, part_count = _HEADER.unpack_from(data)
    if version != ENTRY_FORMAT_VERSION:
        raise CompactedLogError(f"{where}: entry format version {version} is not {ENTRY_FORMAT_VERSION}")
    if kind not in (KIND_CHANGES, KIND_SNAPSHOT_PART):
        raise CompactedLogError(f"{where}: entry of unknown kind {kind}")
    body = memoryview(data)[_HEADER.size:]
    if crc32c.crc32c(body) != checksum:
        raise CompactedLogError(f"{where}: entry checksum mismatch (damaged entry)")
    changes: list[Change] = []
    offset = 0

    def take(size: int) -> bytes:
        nonlocal offset
        if size < 0 or offset + size > len(body):
            raise CompactedLogError(f"{where}: entry body is truncated")
        chunk = bytes(body[offset:offset + size])
        offset += size
        return chunk

    (count,) = _U32.unpack(take(4))
    for _ in range(count):
        (key_length,) = _U32.unpack(take(4))
        key = take(key_length)
        (value_length,) = _I32.unpack(take(4))
        changes.append((key, None if value_length == -1 else take(value_length)))
    if offset != len(body):
        raise CompactedLogError(f"{where}: {len(body) - offset} trailing bytes after the changes")
    return EntryHeader(kind, snapshot_id, part_index, part_count), changes


def apply_changes(table: dict[bytes, bytes], changes: Sequence[Change]) -> None:
    for key, value in changes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


@dataclass
class _SnapshotInProgress:
    """A snapshot being read back during replay."""

    snapshot_id: int
    part_count: int
    next_part: int = 0
    table: dict[bytes, bytes] = field(default_factory=dict)


class CompactedLog:
    def __init__(self, ledger: ManagedLedger, *,
                 snapshot_min_changes: int = DEFAULT_SNAPSHOT_MIN_CHANGES,
                 snapshot_part_bytes: int = DEFAULT_SNAPSHOT_PART_BYTES) -> None:
        self.ledger = ledger
        self._snapshot_min_changes = snapshot_min_changes
        self._snapshot_part_bytes = snapshot_part_bytes
        self._live: dict[bytes, bytes] = {}
        self._in_flight: deque[Sequence[Change]] = deque()
        self._next_index = 0
        self._changes_since_snapshot = 0
        self._snapshot_running = False
        self._next_snapshot_id = 1
        self._failure: CompactedLogError | None = None
        self.snapshots_completed = 0

    def __repr__(self) -> str:
        return f"<CompactedLog {self.ledger.name}>"

    @property
    def live(self) -> Mapping[bytes, bytes]:
        """The table as of the last durable write (read-only view)."""
        return MappingProxyType(self._live)

    @property
    def failed(self) -> bool:
        return self._failure is not None

    @property
    def changes_since_snapshot(self) -> int:
        return self._changes_since_snapshot

    # -- replay ------------------------------------------------------------------------------

    async def load(self) -> Mapping[bytes, bytes]:
        """Replay the ledger into the table; CompactedLogError if an entry is damaged."""
        table: dict[bytes, bytes] = {}
        snapshot: _SnapshotInProgress | None = None
        changes_since_snapshot = 0
        last_index = -1
        position = self.ledger.first_position
        while True:
            entries = await self.ledger.read(position, READ_BATCH_ENTRIES, READ_BATCH_BYTES)
            if not entries:
                break
            for entry in entries:
                header, changes = decode_entry(entry.data, f"{self.ledger.name} entry {entry.position}")
                last_index = max(last_index, entry.index)
                if header.kind == KIND_CHANGES:
                    snapshot = None  # parts are written back to back: this one was cut short
                    apply_changes(table, changes)
                    changes_since_snapshot += len(changes)
                    continue
                snapshot = self._replay_snapshot_part(snapshot, header, changes)
                if snapshot is not None and snapshot.next_part == snapshot.part_count:
                    table, snapshot, changes_since_snapshot = snapshot.table, None, 0
                self._next_snapshot_id = max(self._next_snapshot_id, header.snapshot_id + 1)
            last = entries[-1].position
            position = Position(last.ledger_id, last.entry_id + 1)
        self._live = table
        self._next_index = last_index + 1
        self._changes_since_snapshot = changes_since_snapshot
        return self.live

    @staticmethod
    def _replay_snapshot_part(snapshot: _SnapshotInProgress | None, header: EntryHeader,
                              changes: list[Change]) -> _SnapshotInProgress | None:
        if header.part_index == 0:
            snapshot = _SnapshotInProgress(header.snapshot_id, header.part_count)
        elif (snapshot is None or snapshot.snapshot_id != header.snapshot_id
              or snapshot.next_part != header.part_index):
            return None  # a part of a snapshot whose earlier parts are missing: ignore it
        apply_changes(snapshot.table, changes)
        snapshot.next_part += 1
        return snapshot

    # -- writing -----------------------------------------------------------------------------

    def write(self, changes: Sequence[Change]) -> defer.Deferred[None]:
        """Append one batch of changes; fires once durable (then `live` includes them).
        Fails with CompactedLogError once any write has failed (the owner must reopen)."""
        if self._failure is not None:
            return defer.fail(self._failure)
        changes = list(changes)
        data = encode_entry(EntryHeader(KIND_CHANGES), changes)
        done: defer.Deferred[None] = defer.Deferred()
        self._in_flight.append(changes)
        appended = self._append(data)
        appended.addCallbacks(self._write_done, self._write_failed,
                              callbackArgs=(changes, done), errbackArgs=(done,))
        self._changes_since_snapshot += len(changes)
        if (not self._snapshot_running
                and self._changes_since_snapshot >= max(self._snapshot_min_changes, len(self._live))):
            # A failed snapshot fails the log (already logged); nobody waits on this one.
            self._start_snapshot().addErrback(lambda _: None)
        return done

    def _append(self, data: bytes) -> defer.Deferred[Position]:
        index = self._next_index
        self._next_index += 1
        return self.ledger.append(data, index)

    def _write_done(self, _position: Position, changes: Sequence[Change],
                    done: defer.Deferred[None]) -> None:
        finished = self._in_flight.popleft()
        assert finished is changes, "managed-ledger appends complete in order"
        apply_changes(self._live, changes)
        done.callback(None)

    def _write_failed(self, failure: Failure, done: defer.Deferred[None]) -> None:
        self._in_flight.popleft()
        self._fail(failure)
        done.errback(self._failure)

    def _fail(self, failure: Failure) -> None:
        if self._failure is None:
            log.warning("%r: write failed, the log must be reopened: %s", self,
                        failure.getErrorMessage())
            self._failure = CompactedLogError(f"{self.ledger.name}: write failed: "
                                              f"{failure.getErrorMessage()}")
            self._failure.__cause__ = failure.value

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> defer.Deferred[None]:
        """Write a snapshot now (normally automatic); fires once the ledger is truncated."""
        if self._failure is not None:
            return defer.fail(self._failure)
        return self._start_snapshot()

    def _start_snapshot(self) -> defer.Deferred[None]:
        self._snapshot_running = True
        self._changes_since_snapshot = 0
        table = dict(self._live)
        for changes in self._in_flight:  # earlier in the log than the snapshot: include them
            apply_changes(table, changes)
        snapshot_id = self._next_snapshot_id
        self._next_snapshot_id += 1
        parts = self._split(list(table.items()))
        appends = [
            self._append(encode_entry(EntryHeader(KIND_SNAPSHOT_PART, snapshot_id, index,
                                                  len(parts)), part))
            for index, part in enumerate(parts)
        ]
        written = defer.gatherResults(appends, consumeErrors=True)
        done = defer.ensureDeferred(self._finish_snapshot(written))
        done.addErrback(self._snapshot_failed)
        done.addBoth(self._snapshot_ended)
        return done

    def _split(self, items: list[Change]) -> list[list[Change]]:
        parts: list[list[Change]] = [[]]
        size = 0
        for key, value in items:
            item_size = len(key) + len(value or b"") + 8
            if parts[-1] and size + item_size > self._snapshot_part_bytes:
                parts.append([])
                size = 0
            parts[-1].append((key, value))
            size += item_size
        return parts

    async def _finish_snapshot(self, written: defer.Deferred[list[Position]]) -> None:
        positions = await written
        await self.ledger.truncate_before(positions[0])
        self.snapshots_completed += 1
        log.debug("%r: snapshot of %d keys written, ledger truncated before %s", self,
                  len(self._live), positions[0])

    def _snapshot_failed(self, failure: Failure) -> None:
        if isinstance(failure.value, defer.FirstError):
            failure = failure.value.subFailure
        self._fail(failure)
        raise self._failure  # type: ignore[misc]

    def _snapshot_ended(self, result: object) -> object:
        self._snapshot_running = False
        return result

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Finish the writes in flight and release the ledger."""
        await self.ledger.close()
