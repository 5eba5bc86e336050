"""One Kafka partition kept as a managed ledger.

Each produced record batch becomes one entry of the partition's managed ledger, with its
Kafka base offset as the entry's index (so `ManagedLedger.find(offset)` locates the batch
holding an offset). The batch bytes stay opaque: kop validates the 61-byte header and the
CRC, stamps the base offset (and LogAppendTime when configured), and stores them.

Offsets: `next_offset` is the next offset to hand out (assigned synchronously when a produce
arrives, so pipelined produces get contiguous offsets in arrival order); `high_watermark` is
the end of what is durable on the ack quorum and therefore readable. Managed-ledger appends
complete in order, so the high watermark only moves forward, batch by batch (last offset +
1: it counts records, not batches).

State kept across restarts, as managed-ledger properties:
- `kafka.log_start_offset` — moved by DeleteRecords and retention;
- `kafka.next_offset` — a floor for `next_offset`, so offsets are never reused even when
  retention has removed every batch;
- `kafka.producers` — a snapshot of the idempotent-producer table and the offset it covers;
  batches after it are replayed from the log on open.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer
from twisted.python.failure import Failure

from kop.configs import EffectiveTopicConfig
from kop.deferreds import follow
from kop.errors import KafkaError
from kop.producer_state import ProducerStateTable
from kop.transaction_index import TransactionIndex
from storage.managed_ledger import ManagedLedger, Position
from storage.node.buffers import Buffer, Payload
from wire.generated.error_codes import ErrorCode
from wire.records.batch import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    assign_offsets,
    check_produce_records,
    iter_batches,
    peek_magic,
    read_header,
    set_log_append_time,
)
from wire.records.errors import RecordsError
from wire.records.legacy import legacy_to_batch
from wire.records.record import (
    ControlRecord,
    ControlRecordType,
    build_control_batch,
    decode_batch,
    decode_control_record,
)

log = logging.getLogger(__name__)

PROP_LOG_START = "kafka.log_start_offset"
PROP_NEXT_OFFSET = "kafka.next_offset"
PROP_PRODUCERS = "kafka.producers"

RECENT_INDEX_LIMIT = 100_000  # (offset, position) pairs kept for fast fetch lookups
SCAN_CHUNK_ENTRIES = 500
SCAN_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class AppendResult:
    base_offset: int
    log_append_time: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int


@dataclass(frozen=True)
class ReadResult:
    records: bytes
    high_watermark: int
    log_start_offset: int


class _RecentIndex:
    """Base offsets and positions of recently appended entries, for lookups without I/O."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.positions: list[Position] = []

    def add(self, offset: int, position: Position) -> None:
        self.offsets.append(offset)
        self.positions.append(position)
        if len(self.offsets) > RECENT_INDEX_LIMIT:
            drop = RECENT_INDEX_LIMIT // 10
            del self.offsets[:drop]
            del self.positions[:drop]

    def locate(self, offset: int) -> Position | None:
        """Position of the entry holding `offset`, if that entry is recent enough to be here."""
        offsets = self.offsets
        if not offsets or offset < offsets[0]:
            return None
        return self.positions[bisect.bisect_right(offsets, offset) - 1]

    def clear(self) -> None:
        self.offsets.clear()
        self.positions.clear()


class PartitionLog:
    def __init__(self, topic: str, partition: int, ledger: ManagedLedger,
                 config: EffectiveTopicConfig, clock: Callable[[], float],
                 leader_epoch: int = 0) -> None:
        self.topic = topic
        self.leader_epoch = leader_epoch
        self.partition = partition
        self.ledger = ledger
        self.config = config
        self._clock = clock
        self.log_start_offset = 0
        self.next_offset = 0
        self.high_watermark = 0
        self.producers = ProducerStateTable()
        self.transactions = TransactionIndex()
        self._recent = _RecentIndex()
        self._in_flight: dict[int, defer.Deferred[AppendResult]] = {}
        self._listeners: set[Callable[[], None]] = set()
        self._failure: Exception | None = None
        self._snapshot_offset = -1

    def __repr__(self) -> str:
        return f"<PartitionLog {self.topic}-{self.partition}>"

    # -- opening ------------------------------------------------------------------------------

    async def load(self) -> None:
        """Recover offsets and producer state from the managed ledger."""
        props = self.ledger.properties
        self.log_start_offset = int(props.get(PROP_LOG_START, 0))
        next_offset = max(int(props.get(PROP_NEXT_OFFSET, 0)), self.log_start_offset)
        if self.ledger.entry_count > 0:
            last = await self.ledger.read(self.ledger.last_confirmed_position, 1)
            if last:
                next_offset = max(next_offset, _end_offset(last[0].data, last[0].index))
            first = await self.ledger.read(self.ledger.first_position, 1)
            if first:
                self.log_start_offset = max(self.log_start_offset, first[0].index)
        self.next_offset = self.high_watermark = next_offset
        await self._restore_producers(props.get(PROP_PRODUCERS))
        await self.ledger.set_properties({PROP_NEXT_OFFSET: str(self.next_offset)})

    async def _restore_producers(self, snapshot_json: str | None) -> None:
        replay_from = self.log_start_offset
        if snapshot_json:
            snapshot = json.loads(snapshot_json)
            self.producers = ProducerStateTable.restore(snapshot["producers"])
            self.transactions = TransactionIndex.restore(snapshot.get("transactions", {}))
            replay_from = max(replay_from, int(snapshot["offset"]))
            self._snapshot_offset = int(snapshot["offset"])
        if replay_from >= self.high_watermark:
            return
        async for position, header in self._scan(replay_from):
            if header.base_offset < replay_from or not header.has_producer_id:
                continue
            if header.is_control:
                marker = await self._marker(position, header)
                self.producers.record_marker(header.producer_id, header.producer_epoch,
                                             marker.coordinator_epoch)
                self.transactions.on_marker_assigned(header.producer_id, header.base_offset,
                                                     marker.type == ControlRecordType.COMMIT)
                self.transactions.on_marker_durable(header.base_offset)
                continue
            if header.is_transactional:
                self.transactions.on_data_batch(header.producer_id, header.base_offset)
            self.producers.record(header.producer_id, header.producer_epoch,
                                  header.base_sequence, header.last_sequence,
                                  header.base_offset, header.last_offset)

    async def _marker(self, position: Position, header: BatchHeader) -> ControlRecord:
        entries = await self.ledger.read(position, 1)
        try:
            [record] = decode_batch(entries[0].data, 0, max_size=1024 * 1024)
            return decode_control_record(record)
        except (RecordsError, ValueError) as exc:
            raise KafkaError(ErrorCode.CORRUPT_MESSAGE,
                             f"{self!r}: unreadable transaction marker at {header.base_offset}: {exc}"
                             ) from None

    # -- producing ----------------------------------------------------------------------------

    def append(self, records: bytes, producer_checks: bool = True) -> defer.Deferred[AppendResult]:
        """Validate one produced partition's records and append them as one entry.

        Raises KafkaError (synchronously) for bad records; the Deferred fails with KafkaError
        if the storage write fails.
        """
        if self._failure is not None:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER, "partition is being reopened")
        records, header = self._validated_batch(records)

        duplicate = None
        if producer_checks and header.has_producer_id:
            duplicate = self.producers.check(header.producer_id, header.producer_epoch,
                                             header.base_sequence, header.last_sequence)
        if duplicate is not None:
            return self._answer_duplicate(duplicate.first_offset)

        base_offset = self.next_offset
        append_time = -1
        if self.config.log_append_time:
            append_time = int(self._clock() * 1000)
        parts, header = _stamped_batch(records, header, base_offset, self.leader_epoch,
                                       append_time)
        self.next_offset = header.next_offset
        if header.has_producer_id:
            self.producers.record(header.producer_id, header.producer_epoch,
                                  header.base_sequence, header.last_sequence,
                                  base_offset, header.last_offset)
            if header.is_transactional:
                self.transactions.on_data_batch(header.producer_id, base_offset)
        return self._store(parts, base_offset, header.next_offset, append_time)

    def _store(self, batch: Payload, base_offset: int, next_offset: int,
               append_time: int) -> defer.Deferred[AppendResult]:
        appended: defer.Deferred[AppendResult] = defer.Deferred()
        self._in_flight[base_offset] = appended
        stored = self.ledger.append(batch, base_offset)
        stored.addCallbacks(
            self._append_done, self._append_failed,
            callbackArgs=(base_offset, next_offset, append_time),
            errbackArgs=(base_offset,),
        )
        return appended

    def append_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                      coordinator_epoch: int) -> defer.Deferred[AppendResult]:
        """Write a transaction marker (the coordinator's commit or abort) for a producer."""
        if self._failure is not None:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER, "partition is being reopened")
        self.producers.check_marker(producer_id, producer_epoch, coordinator_epoch)
        self.producers.record_marker(producer_id, producer_epoch, coordinator_epoch)
        base_offset = self.next_offset
        marker = build_control_batch(
            ControlRecordType.COMMIT if commit else ControlRecordType.ABORT,
            producer_id=producer_id, producer_epoch=producer_epoch,
            coordinator_epoch=coordinator_epoch, timestamp=int(self._clock() * 1000),
            base_offset=base_offset, partition_leader_epoch=self.leader_epoch)
        self.next_offset = base_offset + 1
        self.transactions.on_marker_assigned(producer_id, base_offset, commit)
        stored = self._store(marker, base_offset, base_offset + 1, -1)

        def durable(result: AppendResult) -> AppendResult:
            self.transactions.on_marker_durable(base_offset)
            return result

        def lost(failure: Failure) -> Failure:
            self.transactions.on_marker_failed(base_offset)
            return failure

        return stored.addCallbacks(durable, lost)

    @property
    def last_stable_offset(self) -> int:
        return self.transactions.last_stable_offset(self.high_watermark)

    def aborted_transactions(self, first_offset: int, last_offset: int) -> list[tuple[int, int]]:
        return self.transactions.aborted_overlapping(first_offset, last_offset)

    def _validated_batch(self, records: bytes) -> tuple[bytes, BatchHeader]:
        try:
            magic = peek_magic(records)
            if magic is not None and magic < 2:
                records = legacy_to_batch(records)
            batches = check_produce_records(records)
        except RecordsError as exc:
            raise KafkaError(ErrorCode(exc.kafka_error_code), str(exc)) from None
        if len(batches) != 1:
            # Kafka: Produce v3+ must carry exactly one batch per partition.
            raise KafkaError(ErrorCode.INVALID_RECORD,
                             "a produce request must carry exactly one record batch per partition")
        _, header = batches[0]
        if header.size > self.config.max_message_bytes:
            raise KafkaError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"The batch is {header.size} bytes, larger than max.message.bytes "
                f"{self.config.max_message_bytes}",
            )
        return records, header

    def _answer_duplicate(self, first_offset: int) -> defer.Deferred[AppendResult]:
        pending = self._in_flight.get(first_offset)
        if pending is None:
            return defer.succeed(AppendResult(first_offset, -1, self.log_start_offset))
        return follow(pending)

    def _append_done(self, position: Position, base_offset: int, next_offset: int,
                     append_time: int) -> None:
        self.high_watermark = next_offset
        self._recent.add(base_offset, position)
        appended = self._in_flight.pop(base_offset)
        appended.callback(AppendResult(base_offset, append_time, self.log_start_offset))
        for listener in list(self._listeners):
            listener()

    def _append_failed(self, failure: Failure, base_offset: int) -> None:
        appended = self._in_flight.pop(base_offset)
        if self._failure is None:
            log.warning("%r: storage append failed, partition must be reopened: %s",
                        self, failure.getErrorMessage())
            self._failure = failure.value
        appended.errback(KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                                    f"storage write failed: {failure.getErrorMessage()}"))

    @property
    def failed(self) -> bool:
        return self._failure is not None

    # -- listening for appends (long-poll fetches) --------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.add(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.discard(callback)

    # -- reading ------------------------------------------------------------------------------

    def check_fetch_offset(self, offset: int) -> None:
        if offset < self.log_start_offset or offset > self.high_watermark:
            raise KafkaError(
                ErrorCode.OFFSET_OUT_OF_RANGE,
                f"offset {offset} is outside {self.log_start_offset}..{self.high_watermark}",
            )

    async def read(self, offset: int, max_bytes: int, upper_bound: int | None = None) -> Buffer:
        """Whole batches from the one holding `offset`, up to `max_bytes` (but at least one),
        ending before `upper_bound` (the high watermark unless given). Read-only bytes-like:
        one entry read from storage comes back as the view it was read into, not a copy."""
        self.check_fetch_offset(offset)
        limit = self.high_watermark if upper_bound is None else upper_bound
        if offset >= limit:
            return b""
        position = await self._locate(offset)
        if position is None:
            return b""
        entries = await self.ledger.read(position, SCAN_CHUNK_ENTRIES, max_bytes)
        chunks: list[Buffer] = []
        size = 0
        for entry in entries:
            if entry.index >= limit:
                break
            if chunks and size + entry.size > max_bytes:
                break
            chunks.extend(entry.parts)  # appended batches are parts: joined once, below
            size += entry.size
        if len(chunks) == 1:
            # One whole entry in one piece (a catch-up fetch of ~1 MB batches from storage):
            # the response encoding copies it once anyway.
            return chunks[0]
        return b"".join(chunks)

    async def _locate(self, offset: int) -> Position | None:
        position = self._recent.locate(offset)
        if position is None:
            position = await self.ledger.find(offset)
        if position is None:
            return self.ledger.first_position
        return position

    async def _scan(self, from_offset: int):
        """(position, header) of every batch from the one holding `from_offset` to the end."""
        offset = max(from_offset, self.log_start_offset)
        while offset < self.high_watermark:
            position = await self._locate(offset)
            if position is None:
                return
            entries = await self.ledger.read(position, SCAN_CHUNK_ENTRIES, SCAN_CHUNK_BYTES)
            if not entries:
                return
            for entry in entries:
                for _, header in iter_batches(entry.data):
                    yield entry.position, header
                offset = _end_offset(entry.data, entry.index)

    async def _scan_headers(self, from_offset: int):
        async for _, header in self._scan(from_offset):
            yield header

    # -- offsets by time ------------------------------------------------------------------------

    async def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record whose timestamp >= `timestamp`."""
        async for header in self._scan_headers(self.log_start_offset):
            if header.max_timestamp < timestamp:
                continue
            for record in await self._records_of(header):
                if record.timestamp >= timestamp and record.offset >= self.log_start_offset:
                    return record.offset, record.timestamp
        return None

    async def max_timestamp_offset(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the record with the largest timestamp (the first such)."""
        best: BatchHeader | None = None
        async for header in self._scan_headers(self.log_start_offset):
            if best is None or header.max_timestamp > best.max_timestamp:
                best = header
        if best is None:
            return None
        for record in await self._records_of(best):
            if record.timestamp == best.max_timestamp:
                return record.offset, record.timestamp
        return best.last_offset, best.max_timestamp

    async def _records_of(self, header: BatchHeader):
        position = await self._locate(header.base_offset)
        entries = await self.ledger.read(position, 1)
        try:
            return decode_batch(entries[0].data, 0, max_size=64 * 1024 * 1024)
        except RecordsError as exc:
            raise KafkaError(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None

    # -- moving the start ----------------------------------------------------------------------

    async def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: make `offset` the log start offset. Returns the new low watermark."""
        if offset == -1:
            offset = self.high_watermark
        if offset < 0 or offset > self.high_watermark:
            raise KafkaError(
                ErrorCode.OFFSET_OUT_OF_RANGE,
                f"offset {offset} is outside 0..{self.high_watermark}",
            )
        if offset <= self.log_start_offset:
            return self.log_start_offset
        await self.ledger.set_properties({
            PROP_LOG_START: str(offset),
            PROP_NEXT_OFFSET: str(self.next_offset),
        })
        self.log_start_offset = offset
        position = await self._locate(offset)
        if position is not None and offset < self.high_watermark:
            await self.ledger.truncate_before(position)
        self._recent.clear()
        return self.log_start_offset

    async def refresh_log_start(self) -> None:
        """Follow the managed ledger's first entry after retention removed old ledgers."""
        if self.ledger.entry_count == 0:
            self.log_start_offset = max(self.log_start_offset, self.high_watermark)
            return
        first = await self.ledger.read(self.ledger.first_position, 1)
        if first and first[0].index > self.log_start_offset:
            self.log_start_offset = first[0].index

    # -- state snapshots ------------------------------------------------------------------------

    async def save_state(self) -> None:
        """Persist the offset floor and the producer table (periodically and on close)."""
        if self._snapshot_offset == self.high_watermark:
            return
        self.transactions.forget_before(self.log_start_offset)
        durable_end = self.high_watermark
        snapshot = {"offset": durable_end, "producers": self.producers.snapshot(durable_end),
                    "transactions": self.transactions.snapshot(durable_end)}
        await self.ledger.set_properties({
            PROP_NEXT_OFFSET: str(self.high_watermark),
            PROP_PRODUCERS: json.dumps(snapshot, separators=(",", ":")),
        })
        self._snapshot_offset = self.high_watermark

    async def close(self) -> None:
        if self._failure is None:
            try:
                await self.save_state()
            except Exception as exc:  # closing must go on; the log replays on open
                log.warning("%r: could not save state on close: %s", self, exc)
        await self.ledger.close()


def _stamped_batch(records: bytes, header: BatchHeader, base_offset: int, leader_epoch: int,
                   append_time: int) -> tuple[Payload, BatchHeader]:
    """The batch to store, with the broker's base offset and partition leader epoch (and
    LogAppendTime when `append_time` is not -1), and its header as it then reads.

    `records` holds exactly this one batch. Base offset and leader epoch lie in the first 16
    bytes, outside the batch CRC: only the 61-byte header is copied and patched, and the
    records follow as a view of the (immutable) bytes received — two parts, which nothing
    below joins. LogAppendTime changes fields the CRC covers, so that (rare) case patches a
    copy of the whole batch and recomputes the CRC over it.
    """
    if append_time != -1:
        buffer = bytearray(records)
        header = assign_offsets(buffer, 0, header, base_offset, leader_epoch)
        header = set_log_append_time(buffer, 0, header, append_time)
        return memoryview(buffer).toreadonly(), header
    view = memoryview(records)
    if not view.readonly:  # the caller could still change it: keep a copy of our own
        view = memoryview(bytes(view))
    head = bytearray(view[:BATCH_HEADER_SIZE])
    header = assign_offsets(head, 0, header, base_offset, leader_epoch)
    if len(view) == BATCH_HEADER_SIZE:
        return bytes(head), header
    return (bytes(head), view[BATCH_HEADER_SIZE:]), header


def _end_offset(entry_data: bytes, base_offset: int) -> int:
    """The offset after the last record of an entry (one or more batches)."""
    end = base_offset
    for _, header in iter_batches(entry_data):
        end = header.next_offset
    if end == base_offset:
        end = read_header(entry_data).next_offset
    return end
