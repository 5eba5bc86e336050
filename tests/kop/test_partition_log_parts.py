"""PartitionLog's produce path hands the batch to the managed ledger as parts — a patched copy
of the 61-byte header and a view of the records as received — and its fetch path joins the
parts of the entries it returns once. On a fake ledger that keeps what it is given."""

from __future__ import annotations

import uuid

import pytest_twisted
from test_group_fakes import FakeLedger, result_of

from kop.configs import BROKER_DEFAULTS, EffectiveTopicConfig
from kop.partition_log import PartitionLog
from wire.messages import FetchResponse
from wire.protocol import encode_response
from wire.records.batch import (
    BATCH_HEADER_SIZE,
    TimestampType,
    iter_batches,
    read_header,
    verify_crc,
)
from wire.records.record import BatchBuilder, decode_batch

NOW_SECONDS = 1_700_000_000.5


def batch(values: list[bytes]) -> bytes:
    builder = BatchBuilder()
    for value in values:
        builder.append(value, timestamp=1_000)
    return builder.build()


def partition_log(ledger: FakeLedger, *, log_append_time: bool = False) -> PartitionLog:
    overrides = {"message.timestamp.type": "LogAppendTime"} if log_append_time else {}
    config = EffectiveTopicConfig.resolve(overrides, BROKER_DEFAULTS)
    return PartitionLog("orders", 0, ledger, config, lambda: NOW_SECONDS, leader_epoch=7)


def stored_batch(ledger: FakeLedger, entry: int) -> bytes:
    return b"".join(bytes(part) for part in ledger.entries[entry].parts)


def test_a_produced_batch_is_stored_as_patched_header_and_a_view_of_the_records():
    ledger = FakeLedger()
    log = partition_log(ledger)
    log.next_offset = 40
    records = batch([b"a" * 100, b"b" * 100])
    result = result_of(log.append(records))
    assert result.base_offset == 40

    head, rest = ledger.entries[0].parts
    assert len(head) == BATCH_HEADER_SIZE
    assert rest.obj is records  # the records were not copied
    stored = stored_batch(ledger, 0)
    header = read_header(stored)
    assert (header.base_offset, header.partition_leader_epoch) == (40, 7)
    verify_crc(stored, 0, header)  # still valid: the patched fields lie outside the CRC
    assert stored[16:] == records[16:]
    assert read_header(records).base_offset == 0  # the caller's bytes are untouched
    assert [record.value for record in decode_batch(stored, 0)] == [b"a" * 100, b"b" * 100]
    assert log.high_watermark == 42


def test_log_append_time_rewrites_the_covered_fields_and_the_crc():
    ledger = FakeLedger()
    log = partition_log(ledger, log_append_time=True)
    records = batch([b"x", b"y"])
    result = result_of(log.append(records))
    assert result.log_append_time == int(NOW_SECONDS * 1000)
    stored = stored_batch(ledger, 0)
    header = read_header(stored)
    assert header.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert header.max_timestamp == int(NOW_SECONDS * 1000)
    verify_crc(stored, 0, header)
    assert read_header(records).timestamp_type == TimestampType.CREATE_TIME


def test_a_batch_in_a_buffer_the_caller_may_change_is_copied_first():
    ledger = FakeLedger()
    log = partition_log(ledger)
    records = bytearray(batch([b"keep me"]))
    expected = bytes(records)
    result_of(log.append(records))
    records[BATCH_HEADER_SIZE:] = b"\0" * (len(records) - BATCH_HEADER_SIZE)
    assert stored_batch(ledger, 0)[16:] == expected[16:]


@pytest_twisted.ensureDeferred
async def test_a_fetch_joins_the_parts_of_every_batch_it_returns():
    ledger = FakeLedger()
    log = partition_log(ledger)
    produced = [batch([b"first"]), batch([b"second", b"third"]), batch([b"fourth"])]
    for records in produced:
        result_of(log.append(records))
    fetched = await log.read(0, 1 << 20)
    assert isinstance(fetched, bytes)
    assert fetched == b"".join(stored_batch(ledger, i) for i in range(3))
    records = [record for position, _ in iter_batches(fetched)
               for record in decode_batch(fetched, position)]
    assert [(r.offset, r.value) for r in records] == [
        (0, b"first"), (1, b"second"), (2, b"third"), (3, b"fourth")]


@pytest_twisted.ensureDeferred
async def test_a_fetch_of_one_entry_read_as_a_view_returns_that_view_and_encodes_alike():
    ledger = FakeLedger()
    log = partition_log(ledger)
    result_of(log.append(batch([b"from storage"])))
    stored = stored_batch(ledger, 0)
    as_read = memoryview(bytes(stored))  # as the storage node hands an entry up
    ledger.entries[0].data = as_read
    fetched = await log.read(0, 1 << 20)
    assert fetched is as_read  # not copied: the response encoding copies it once

    def response(records) -> bytes:
        partition = FetchResponse.PartitionData(
            partition_index=0, error_code=0, high_watermark=1, last_stable_offset=1,
            log_start_offset=0, preferred_read_replica=-1, records=records)
        topic = FetchResponse.FetchableTopicResponse(topic="orders", topic_id=uuid.UUID(int=1),
                                                     partitions=[partition])
        message = FetchResponse(throttle_time_ms=0, error_code=0, session_id=0,
                                responses=[topic])
        return encode_response(7, FetchResponse.API_KEY, 16, message)

    assert response(fetched) == response(stored)
