"""The journal: append-only segment files written with group commit.

Records are appended on the reactor thread, which only assigns each one its
place (segment number, offset) and queues it. A single writer thread writes and
fsyncs the queue. While it does, new records collect; when the fsync returns,
everything that arrived meanwhile goes out in the next write + one fsync. So a
busy node does one fsync per batch, not per entry, and no record is reported
durable before the fsync that covers it has returned.

A segment that reaches `segment_bytes` is sealed and the next one begins;
`on_sealed(segment, end_offset)` is called once everything in a sealed segment
is durable, so the owner can checkpoint it.

A failed write or fsync leaves the file in an unknown state (the kernel may
have dropped the dirty pages), so the journal fails every pending and later
append with JournalFailedError; a restart rescans the tail.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from twisted.internet import defer, threads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from storage.node.buffers import Buffer, Payload, as_parts, payload_length
from storage.node.errors import JournalFailedError
from storage.node.files import fsync_directory
from storage.node.records import SEGMENT_HEADER_BYTES, encode_segment_header

log = logging.getLogger(__name__)

_IOV_MAX = 1024  # writev accepts at most this many buffers per call on Linux


def segment_path(directory: Path, segment: int) -> Path:
    return directory / f"{segment:020d}.log"


def index_path(directory: Path, segment: int) -> Path:
    return directory / f"{segment:020d}.idx"


class _SegmentWriter:
    """The writer thread's side: owns the file descriptor of the segment being written."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._segment = -1
        self._fd = -1

    def write_batch(self, groups: list[tuple[int, list[Buffer]]]) -> None:
        """Write and fsync every group (segment number, buffers) in order: one `writev` per
        segment and up to IOV_MAX buffers, one fsync for everything."""
        for segment, buffers in groups:
            if segment != self._segment:
                self._start_segment(segment)
            for start in range(0, len(buffers), _IOV_MAX):
                chunk = buffers[start:start + _IOV_MAX]
                expected = sum(map(len, chunk))
                written = os.writev(self._fd, chunk)
                if written != expected:  # a short write to a regular file: disk full
                    self._write_remainder(b"".join(chunk)[written:])
            os.fdatasync(self._fd)

    def _write_remainder(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def _start_segment(self, segment: int) -> None:
        self.close()
        path = segment_path(self._directory, segment)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._segment = segment
        os.write(self._fd, encode_segment_header(segment))
        os.fsync(self._fd)
        fsync_directory(self._directory)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Journal:
    """Group-committed appends to numbered segment files in `directory`, starting a new
    segment numbered `first_segment` (earlier segments are never written again)."""

    def __init__(self, directory: Path, first_segment: int, segment_bytes: int,
                 on_sealed: Callable[[int, int], None],
                 on_failed: Callable[[JournalFailedError], None], reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._directory = directory
        self._segment_bytes = segment_bytes
        self._on_sealed = on_sealed
        self._on_failed = on_failed
        self.active_segment = first_segment
        self.active_end = SEGMENT_HEADER_BYTES  # where the next record goes
        self._writer = _SegmentWriter(directory)
        self._pool = ThreadPool(1, 1, name="kop-journal")
        self._shutdown_trigger = None
        # Queued, not yet handed to the writer: (segment, header, payload parts, deferred)
        self._queued: list[tuple[int, bytes, tuple[Buffer, ...], defer.Deferred]] = []
        self._queued_seals: list[tuple[int, int]] = []
        self._flush_scheduled = False
        self._writing = False
        self._idle_waiters: list[defer.Deferred] = []
        self._failure: JournalFailedError | None = None
        self.fsync_count = 0  # number of write+fsync batches, for tests and benchmarks

    def start(self) -> None:
        self._pool.start()
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", self._pool.stop)

    # --- appending (reactor thread) ---------------------------------------------------------

    def append(self, header: bytes, payload: Payload = b"") -> tuple[int, int, defer.Deferred]:
        """Queue one record: `header`, then `payload` (bytes or parts, written as they are,
        not joined); returns (segment, offset, Deferred fired once it is durable).
        Raises JournalFailedError once a write has failed."""
        if self._failure is not None:
            raise self._failure
        length = len(header) + payload_length(payload)
        if (self.active_end + length > self._segment_bytes
                and self.active_end > SEGMENT_HEADER_BYTES):
            self._queued_seals.append((self.active_segment, self.active_end))
            self.active_segment += 1
            self.active_end = SEGMENT_HEADER_BYTES
        segment, offset = self.active_segment, self.active_end
        self.active_end += length
        durable: defer.Deferred = defer.Deferred()
        self._queued.append((segment, header, as_parts(payload), durable))
        if not self._flush_scheduled and not self._writing:
            # Wait for the end of this reactor turn: everything else that arrives in the
            # same turn (e.g. the rest of a socket read) joins this batch.
            self._flush_scheduled = True
            self._reactor.callLater(0, self._flush)
        return segment, offset, durable

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._writing or not self._queued:
            self._notify_if_idle()
            return
        batch, self._queued = self._queued, []
        seals, self._queued_seals = self._queued_seals, []
        groups: list[tuple[int, list[Buffer]]] = []
        for segment, header, parts, _ in batch:
            if not groups or groups[-1][0] != segment:
                groups.append((segment, []))
            buffers = groups[-1][1]
            buffers.append(header)
            buffers.extend(parts)
        self._writing = True
        written = threads.deferToThreadPool(self._reactor, self._pool,
                                            self._writer.write_batch, groups)
        written.addBoth(self._written, batch, seals)

    def _written(self, result: object, batch: list, seals: list[tuple[int, int]]) -> None:
        self._writing = False
        self.fsync_count += 1
        if isinstance(result, Failure):
            self._fail(result, batch)
            return
        for _, _, _, durable in batch:
            durable.callback(None)
        for segment, end in seals:
            self._on_sealed(segment, end)
        if self._queued:
            self._flush()  # everything that arrived during that fsync: the next group commit
        else:
            self._notify_if_idle()

    def _fail(self, failure: Failure, batch: list) -> None:
        log.error("journal write failed; refusing further writes until restart: %s",
                  failure.getErrorMessage())
        self._failure = JournalFailedError(
            f"journal write to {self._directory} failed: {failure.getErrorMessage()}")
        pending = batch + self._queued
        self._queued = []
        self._on_failed(self._failure)
        for _, _, _, durable in pending:
            durable.errback(self._failure)
        self._notify_if_idle()

    def _notify_if_idle(self) -> None:
        if self._writing or self._queued:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def drain(self) -> defer.Deferred:
        """Fires once every record appended so far is durable (or has failed)."""
        if not self._writing and not self._queued:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    async def close(self) -> None:
        """Wait for queued records, then release the file and the writer thread."""
        await self.drain()
        await threads.deferToThreadPool(self._reactor, self._pool, self._writer.close)
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        self._pool.stop()
