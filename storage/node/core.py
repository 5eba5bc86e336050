"""StorageNode: a storage node without sockets.

It keeps ledger entries in a group-committed journal whose segment files double
as the entry log (each byte is written once), an in-memory index (ledger,
entry) → (segment, offset, length) checkpointed per sealed segment, fencing
and delete records in the same journal, and a garbage collector that reclaims
the space of deleted ledgers.

The TCP server (server.py) and the in-process client (client.py) both call it.
Everything here runs on the reactor thread; file I/O runs in thread pools.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer, task, threads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from storage.node.api import MAX_LIST_ENTRIES, LacResult, encode_entry_bitmap
from storage.node.buffers import Payload, payload_length
from storage.node.entry_reads import EntryReads
from storage.node.errors import (
    InvalidRequestError,
    JournalFailedError,
    LedgerFencedError,
    NoSuchEntryError,
    NoSuchLedgerError,
    StorageFormatError,
    StorageNodeError,
)
from storage.node.files import fsync_directory
from storage.node.garbage import (
    GarbageReport,
    plan_collection,
    records_to_carry_over,
)
from storage.node.journal import Journal, index_path, segment_path
from storage.node.records import (
    RecordInfo,
    RecordKind,
    encode_record_header,
    read_record_info,
)
from storage.node.recovery import RecoveryStats, recover_journal
from storage.node.segment_index import MAX_SEGMENT_OFFSET, write_segment_index
from storage.node.segment_reader import SegmentReaders
from storage.node.state import Location, NodeState

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DATA_FORMAT = "kop-storage-node 1\n"
"""Contents of the FORMAT file marking a data directory; a different one is refused."""


@dataclass(frozen=True)
class StorageNodeConfig:
    segment_bytes: int = 64 * MiB  # a segment is sealed (and checkpointed) at this size
    read_threads: int = 2
    gc_interval_seconds: float | None = 60.0  # None: collect only when asked
    compaction_threshold: float = 0.5  # compact sealed segments less live than this fraction

    def __post_init__(self) -> None:
        if not 4096 <= self.segment_bytes <= MAX_SEGMENT_OFFSET // 2:
            raise ValueError(f"segment_bytes {self.segment_bytes} outside [4096, "
                             f"{MAX_SEGMENT_OFFSET // 2}]")
        if not 0 <= self.compaction_threshold < 1:
            raise ValueError("compaction_threshold must be in [0, 1)")


def _lock_data_dir(data_dir: Path) -> int:
    """Hold an exclusive lock on the data directory for the node's lifetime; the OS
    drops it when the process dies, even by SIGKILL."""
    fd = os.open(data_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageNodeError(f"{data_dir} is in use by another storage node") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _check_format(data_dir: Path) -> None:
    marker = data_dir / "FORMAT"
    if not marker.exists():
        if any(path.name not in ("LOCK", "journal") for path in data_dir.iterdir()):
            raise StorageFormatError(f"{data_dir} holds files but no FORMAT marker: not a kop "
                                     "storage node directory")
        marker.write_text(DATA_FORMAT)
        fsync_directory(data_dir)
        return
    found = marker.read_text(errors="replace")
    if found != DATA_FORMAT:
        raise StorageFormatError(f"{marker} says {found.strip()!r}; this node reads "
                                 f"{DATA_FORMAT.strip()!r}")


def _read_records(fd: int, locations: list[Location]) -> list[bytes]:
    return [os.pread(fd, location.length, location.offset) for location in locations]


def _remove_segment_files(directory: Path, segment: int) -> int:
    path = segment_path(directory, segment)
    size = path.stat().st_size
    index_path(directory, segment).unlink(missing_ok=True)
    path.unlink()
    fsync_directory(directory)
    return size


class StorageNode:
    """One storage node's data directory. Create with `await StorageNode.open(dir)`."""

    def __init__(self, data_dir: Path, config: StorageNodeConfig, reactor, lock_fd: int,
                 state: NodeState, next_segment: int, recovery_stats: RecoveryStats) -> None:
        self.data_dir = data_dir
        self.config = config
        self.recovery_stats = recovery_stats
        self._reactor = reactor
        self._lock_fd = lock_fd
        self._journal_dir = data_dir / "journal"
        self._state = state
        self._journal = Journal(self._journal_dir, next_segment, config.segment_bytes,
                                self._segment_sealed, self._journal_failed, reactor)
        self._failure_listeners: list[Callable[[StorageNodeError], None]] = []
        self._readers = SegmentReaders(self._journal_dir)
        self._pool = ThreadPool(1, config.read_threads, name="kop-node-io")
        self._entry_reads = EntryReads(reactor, self._pool, self._readers)
        # Records of segments not yet indexed, as plain tuples of ints (see StoredLocation).
        self._unindexed: dict[int, list[tuple[int, ...]]] = {}
        self._index_writes: set[defer.Deferred] = set()
        self._gc_lock = defer.DeferredLock()
        self._gc_loop: task.LoopingCall | None = None
        self._pool_trigger = None
        self._closed = False

    @classmethod
    def open(cls, data_dir: str | os.PathLike, config: StorageNodeConfig | None = None,
             reactor=None) -> defer.Deferred[StorageNode]:
        """Recover the node in `data_dir` (created if missing) and start it."""
        if reactor is None:
            from twisted.internet import reactor
        return defer.ensureDeferred(cls._open(Path(data_dir), config or StorageNodeConfig(),
                                              reactor))

    @classmethod
    async def _open(cls, data_dir: Path, config: StorageNodeConfig, reactor) -> StorageNode:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock_data_dir(data_dir)
        try:
            _check_format(data_dir)
            recovered = await threads.deferToThread(recover_journal, data_dir / "journal")
        except BaseException:
            os.close(lock_fd)
            raise
        node = cls(data_dir, config, reactor, lock_fd, recovered.state, recovered.next_segment,
                   recovered.stats)
        node._start()
        return node

    def _start(self) -> None:
        self._journal.start()
        self._pool.start()
        self._pool_trigger = self._reactor.addSystemEventTrigger("during", "shutdown",
                                                                 self._pool.stop)
        if self.config.gc_interval_seconds:
            self._gc_loop = task.LoopingCall(self._collect_garbage_logging_errors)
            self._gc_loop.clock = self._reactor
            self._gc_loop.start(self.config.gc_interval_seconds, now=False)
        stats = self.recovery_stats
        log.info("storage node %s open: %d ledgers, %d segments (%d from index files, %d "
                 "scanned, %d torn bytes truncated)", self.data_dir, len(self._state.ledgers),
                 len(self._state.segments), stats.segments_from_index, stats.segments_scanned,
                 stats.torn_bytes_truncated)

    # --- the node operations --------------------------------------------------------------------

    def add_entry(self, ledger_id: int, entry_id: int, last_add_confirmed: int,
                  payload: Payload, *, recovery: bool = False) -> defer.Deferred[None]:
        """Store an entry (bytes, or parts written one after the other); fires once it is
        fsync'd. A fenced ledger refuses ordinary adds."""
        try:
            self._check_open()
            if entry_id < 0:
                raise InvalidRequestError(f"entry id {entry_id} is negative")
            if ledger_id in self._state.tombstones:
                raise NoSuchLedgerError(f"ledger {ledger_id} was deleted on this node")
            ledger = self._state.ledgers.get(ledger_id)
            if ledger is not None and ledger.fenced and not recovery:
                raise LedgerFencedError(f"ledger {ledger_id} is fenced on this node")
            header = encode_record_header(RecordKind.ADD, ledger_id, entry_id,
                                          last_add_confirmed, payload)
            segment, record, durable = self._append(RecordKind.ADD, ledger_id, entry_id,
                                                    last_add_confirmed, header, payload)
        except StorageNodeError as error:
            return defer.fail(error)
        durable.addCallback(self._entry_durable, segment, record)
        return durable

    def _entry_durable(self, _: None, segment: int, record: RecordInfo) -> None:
        self._state.apply_add(segment, record)

    def read_entry(self, ledger_id: int, entry_id: int, *,
                   fence: bool = False) -> defer.Deferred[memoryview]:
        """The entry's payload, checked against its CRC. fence=True fences the ledger first.
        Reads asked for in one reactor turn share a thread hop (see entry_reads)."""
        if fence:
            return defer.ensureDeferred(self._fence_then_read(ledger_id, entry_id))
        try:
            location = self._entry_location(ledger_id, entry_id)
        except StorageNodeError as error:
            return defer.fail(error)
        return self._entry_reads.read(location, ledger_id, entry_id)

    async def _fence_then_read(self, ledger_id: int, entry_id: int) -> memoryview:
        self._check_open()
        await self._fence(ledger_id)
        location = self._entry_location(ledger_id, entry_id)
        return await self._entry_reads.read(location, ledger_id, entry_id)

    def _entry_location(self, ledger_id: int, entry_id: int) -> Location:
        self._check_open()
        if ledger_id not in self._state.ledgers:
            raise NoSuchLedgerError(f"no ledger {ledger_id} on this node")
        location = self._state.location(ledger_id, entry_id)
        if location is None:
            raise NoSuchEntryError(f"no entry {entry_id} of ledger {ledger_id} on this node")
        return location

    def read_last_add_confirmed(self, ledger_id: int, *,
                                fence: bool = False) -> defer.Deferred[LacResult]:
        """The highest LAC and entry id held for the ledger. fence=True fences it first,
        which also makes an unknown ledger known (empty, fenced)."""
        return defer.ensureDeferred(self._read_last_add_confirmed(ledger_id, fence))

    async def _read_last_add_confirmed(self, ledger_id: int, fence: bool) -> LacResult:
        self._check_open()
        if fence:
            await self._fence(ledger_id)
        ledger = self._state.ledgers.get(ledger_id)
        if ledger is None:
            raise NoSuchLedgerError(f"no ledger {ledger_id} on this node")
        return LacResult(ledger.last_add_confirmed, ledger.last_entry_id)

    async def _fence(self, ledger_id: int) -> None:
        """Fence the ledger: ordinary adds are refused from now on; returns once the fence
        is durable. Every add accepted before it is durable by then too (journal order)."""
        if ledger_id in self._state.tombstones:
            raise NoSuchLedgerError(f"ledger {ledger_id} was deleted on this node")
        header = encode_record_header(RecordKind.FENCE, ledger_id, -1, -1)
        segment, _, durable = self._append(RecordKind.FENCE, ledger_id, -1, -1, header)
        self._state.apply_fence(segment, ledger_id)
        await durable

    def delete_ledger(self, ledger_id: int) -> defer.Deferred[None]:
        """Forget the ledger (durably); its space is reclaimed by garbage collection."""
        return defer.ensureDeferred(self._delete_ledger(ledger_id))

    async def _delete_ledger(self, ledger_id: int) -> None:
        self._check_open()
        header = encode_record_header(RecordKind.DELETE, ledger_id, -1, -1)
        segment, _, durable = self._append(RecordKind.DELETE, ledger_id, -1, -1, header)
        self._state.apply_delete(segment, ledger_id)
        await durable

    def list_entries(self, ledger_id: int, first_entry_id: int,
                     count: int) -> defer.Deferred[bytes]:
        """Bitmap of the entries first_entry_id .. + count - 1 this node holds (durably)."""
        try:
            self._check_open()
            if first_entry_id < 0 or not 1 <= count <= MAX_LIST_ENTRIES:
                raise InvalidRequestError(
                    f"cannot list {count} entries from {first_entry_id}: need a first entry "
                    f">= 0 and 1 to {MAX_LIST_ENTRIES} entries")
            ledger = self._state.ledgers.get(ledger_id)
            if ledger is None:
                raise NoSuchLedgerError(f"no ledger {ledger_id} on this node")
        except StorageNodeError as error:
            return defer.fail(error)
        entries = ledger.entries
        if count < len(entries):
            held = (e for e in range(first_entry_id, first_entry_id + count) if e in entries)
        else:
            held = iter(entries)
        return defer.succeed(encode_entry_bitmap(held, first_entry_id, count))

    def add_failure_listener(self, callback: Callable[[StorageNodeError], None]) -> None:
        """Call `callback(error)` if the node fails for good (its journal cannot be
        written); it then refuses every write until restarted."""
        self._failure_listeners.append(callback)

    def _journal_failed(self, error: JournalFailedError) -> None:
        for callback in self._failure_listeners:
            callback(error)

    def ledger_ids(self) -> list[int]:
        """Ledgers this node holds anything of (for tools and tests)."""
        return sorted(self._state.ledgers)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageNodeError(f"storage node {self.data_dir} is closed")

    def _append(self, kind: RecordKind, ledger_id: int, entry_id: int, last_add_confirmed: int,
                header: bytes, payload: Payload = b"") -> tuple[int, RecordInfo, defer.Deferred]:
        """Journal a record and remember it for its segment's index file."""
        segment, offset, durable = self._journal.append(header, payload)
        fields = (int(kind), ledger_id, entry_id, last_add_confirmed, offset,
                  len(header) + payload_length(payload))
        records = self._unindexed.get(segment)
        if records is None:
            records = self._unindexed[segment] = []
        records.append(fields)
        return segment, RecordInfo._make(fields), durable

    # --- checkpoints ------------------------------------------------------------------------------

    def _segment_sealed(self, segment: int, end_offset: int) -> None:
        """Every record of `segment` is durable: write its index file (in a thread)."""
        records = self._unindexed.pop(segment, [])
        written = threads.deferToThreadPool(self._reactor, self._pool, write_segment_index,
                                             index_path(self._journal_dir, segment), segment,
                                             end_offset, records)
        self._index_writes.add(written)

        def done(result: object) -> None:
            self._index_writes.discard(written)
            if isinstance(result, Failure):
                log.error("could not write the index of segment %d (a restart will scan it): %s",
                          segment, result.getErrorMessage())
            elif segment in self._state.segments:
                self._state.segments[segment].indexed = True

        written.addBoth(done)

    # --- garbage collection -----------------------------------------------------------------------

    def collect_garbage(self) -> defer.Deferred[GarbageReport]:
        """Remove sealed segments with nothing live, after compacting mostly dead ones."""
        return defer.ensureDeferred(self._collect_garbage())

    async def _collect_garbage(self) -> GarbageReport:
        await self._gc_lock.acquire()
        try:
            self._check_open()
            # Segments sealed just now become collectable once their index file is written.
            await defer.DeferredList(list(self._index_writes))
            report = GarbageReport()
            plan = plan_collection(self._state, self._journal.active_segment,
                                   self.config.compaction_threshold, self.config.segment_bytes)
            for segment in plan.compact:
                report.entries_relocated += await self._relocate_live_entries(segment)
            for segment in plan.remove + plan.compact:
                usage = self._state.segments.get(segment)
                if usage is not None and usage.live_bytes == 0:
                    report.bytes_reclaimed += await self._remove_segment(segment)
                    report.segments_removed.append(segment)
            if report.segments_removed:
                log.info("garbage collection removed %d segments (%d bytes), relocated %d "
                         "entries", len(report.segments_removed), report.bytes_reclaimed,
                         report.entries_relocated)
            return report
        finally:
            self._gc_lock.release()

    async def _collect_garbage_logging_errors(self) -> None:
        try:
            await self._collect_garbage()
        except Exception:
            log.exception("garbage collection failed")

    async def _relocate_live_entries(self, segment: int) -> int:
        """Copy the segment's live entry records, byte for byte, to the journal head."""
        live: list[tuple[int, int, Location]] = []
        for ledger_id in self._state.segments[segment].ledgers:
            ledger = self._state.ledgers.get(ledger_id)
            if ledger is not None:
                live += [(ledger_id, entry_id, Location._make(location))
                         for entry_id, location in ledger.entries.items()
                         if location[0] == segment]
        handle = self._readers.acquire(segment)
        try:
            raws = await threads.deferToThreadPool(self._reactor, self._pool, _read_records,
                                                   handle.fd, [loc for _, _, loc in live])
        finally:
            self._readers.release(handle)
        copies = []
        for (ledger_id, entry_id, location), raw in zip(live, raws, strict=True):
            if self._state.location(ledger_id, entry_id) != location:
                continue  # deleted while we read
            info = read_record_info(raw)
            lac = info.last_add_confirmed if info is not None else -1
            new_segment, record, durable = self._append(RecordKind.ADD, ledger_id, entry_id,
                                                        lac, raw)
            durable.addCallback(self._entry_durable, new_segment, record)
            copies.append(durable)
        await defer.gatherResults(copies, consumeErrors=True)
        return len(copies)

    async def _remove_segment(self, segment: int) -> int:
        """Re-journal the FENCE/DELETE records that must outlive the segment, then delete it."""
        carried = []
        for kind, ledger_id in records_to_carry_over(self._state, segment):
            header = encode_record_header(kind, ledger_id, -1, -1)
            new_segment, _, durable = self._append(kind, ledger_id, -1, -1, header)
            if kind == RecordKind.FENCE:
                self._state.apply_fence(new_segment, ledger_id)
            else:
                self._state.apply_delete(new_segment, ledger_id)
            carried.append(durable)
        await defer.gatherResults(carried, consumeErrors=True)
        self._readers.forget(segment)
        size = await threads.deferToThreadPool(self._reactor, self._pool, _remove_segment_files,
                                               self._journal_dir, segment)
        self._state.forget_segment(segment)
        return size

    # --- shutdown ---------------------------------------------------------------------------------

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._gc_loop is not None and self._gc_loop.running:
            self._gc_loop.stop()
        await self._gc_lock.acquire()  # let a running collection finish
        try:
            await self._journal.drain()
            await self._entry_reads.drain()
            active = self._journal.active_segment
            records = self._unindexed.pop(active, None)
            end = self._journal.active_end
            failed = self._journal.failed
            await self._journal.close()
            if records and not failed:
                # Checkpoint the active segment too, so a clean restart scans nothing.
                await threads.deferToThreadPool(self._reactor, self._pool, write_segment_index,
                                                index_path(self._journal_dir, active), active,
                                                end, records)
            await defer.DeferredList(list(self._index_writes))
        finally:
            self._gc_lock.release()
            self._readers.close()
            self._reactor.removeSystemEventTrigger(self._pool_trigger)
            self._pool.stop()
            os.close(self._lock_fd)
        log.info("storage node %s closed", self.data_dir)

    def close(self) -> defer.Deferred[None]:
        """Finish pending writes, checkpoint the index, release the directory."""
        return defer.ensureDeferred(self._close())
