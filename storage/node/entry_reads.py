"""Entry reads grouped into few thread hops: every read asked for in one reactor turn goes to
the reader threads together.

A catch-up reader asks for many entries at once (the ledger client keeps a window of reads
in flight, and a TCP read delivers many requests in one go). Sending each to a thread on its
own costs a thread hand-over and a wake-up per entry, which measured 15 % of the broker's CPU
on a catch-up fetch. So reads are queued, and at the end of the reactor turn the queue goes
to the pool in batches of up to `max_batch_bytes`: small entries share one hop, large ones
still spread over every reader thread. Each read still succeeds or fails on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import defer, threads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from storage.node.records import payload_of_entry
from storage.node.segment_reader import SegmentHandle, SegmentReaders
from storage.node.state import Location

DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024


class _Read:
    __slots__ = ("handle", "location", "ledger_id", "entry_id", "result")

    def __init__(self, handle: SegmentHandle, location: Location, ledger_id: int,
                 entry_id: int) -> None:
        self.handle = handle
        self.location = location
        self.ledger_id = ledger_id
        self.entry_id = entry_id
        self.result: defer.Deferred[memoryview] = defer.Deferred()


def _read_payloads(reads: list[tuple[int, Location, int, int, Path]]
                   ) -> list[memoryview | Exception]:
    """Reader thread: each entry's checked payload, or the error reading it raised."""
    results: list[memoryview | Exception] = []
    for fd, location, ledger_id, entry_id, path in reads:
        try:
            raw = os.pread(fd, location.length, location.offset)
            results.append(payload_of_entry(raw, ledger_id, entry_id,
                                            f"{path} offset {location.offset}"))
        except Exception as error:  # reported to that read's caller, like any read error
            results.append(error)
    return results


class EntryReads:
    """Reads entry payloads from segment files on `pool`, batched per reactor turn."""

    def __init__(self, reactor, pool: ThreadPool, readers: SegmentReaders,
                 max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES) -> None:
        self._reactor = reactor
        self._pool = pool
        self._readers = readers
        self._max_batch_bytes = max_batch_bytes
        self._queued: list[_Read] = []
        self._flush_scheduled = False
        self._in_flight: set[defer.Deferred] = set()
        self.thread_hops = 0  # batches handed to the pool, for tests and benchmarks

    def read(self, location: Location, ledger_id: int,
             entry_id: int) -> defer.Deferred[memoryview]:
        """The payload of the entry record at `location`, checked against its header and
        CRC (CorruptEntryError otherwise); a view of the bytes read."""
        read = _Read(self._readers.acquire(location.segment), location, ledger_id, entry_id)
        self._queued.append(read)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._reactor.callLater(0, self._flush)
        return read.result

    def _flush(self) -> None:
        self._flush_scheduled = False
        queued, self._queued = self._queued, []
        batch: list[_Read] = []
        size = 0
        for read in queued:
            if batch and size + read.location.length > self._max_batch_bytes:
                self._send(batch)
                batch, size = [], 0
            batch.append(read)
            size += read.location.length
        if batch:
            self._send(batch)

    def _send(self, batch: list[_Read]) -> None:
        work = [(read.handle.fd, read.location, read.ledger_id, read.entry_id,
                 self._readers.path(read.location.segment)) for read in batch]
        self.thread_hops += 1
        done = threads.deferToThreadPool(self._reactor, self._pool, _read_payloads, work)
        self._in_flight.add(done)
        done.addBoth(self._answer, batch, done)

    def _answer(self, outcome: list[memoryview | Exception] | Failure, batch: list[_Read],
                done: defer.Deferred) -> None:
        self._in_flight.discard(done)
        for read in batch:
            self._readers.release(read.handle)
        if isinstance(outcome, Failure):  # the hop itself failed: every read in it did
            for read in batch:
                read.result.errback(outcome)
            return
        for read, result in zip(batch, outcome, strict=True):
            if isinstance(result, Exception):
                read.result.errback(result)
            else:
                read.result.callback(result)

    def drain(self) -> defer.Deferred[None]:
        """Fires once every read asked for so far has been answered."""
        if self._flush_scheduled:
            self._flush()
        waiting = list(self._in_flight)
        return defer.DeferredList(waiting).addCallback(lambda _: None)
