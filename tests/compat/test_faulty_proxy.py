"""The faulty proxy's rewriters drop exactly every other batch and keep every other byte.

Frames are built and read back with the project's wire codec, across the versions
whose layouts differ (null-able aborted transactions, flexible encoding, topic ids).
"""

from __future__ import annotations

import struct
import uuid

import pytest

from tests.compat.faulty_proxy import (
    BatchDropper,
    FaultyProxy,
    rewrite_fetch_response,
    rewrite_produce_request,
)
from wire.messages import FetchResponse, ProduceRequest
from wire.protocol import RequestHeader, decode_response, encode_request, encode_response


def fake_batch(base_offset: int) -> bytes:
    """Batch framing only (base offset, length, payload): all the proxy reads."""
    payload = bytes([base_offset % 251]) * (7 + base_offset)
    return struct.pack(">qi", base_offset, len(payload)) + payload


def batches(first: int, count: int) -> list[bytes]:
    return [fake_batch(first + i) for i in range(count)]


def every_other(groups: list[list[bytes]]) -> list[bytes]:
    """What a fresh dropper keeps of these groups, in the order it sees them."""
    seen, kept = 0, []
    for group in groups:
        out = b""
        for batch in group:
            seen += 1
            if seen % 2:
                out += batch
        kept.append(out)
    return kept


def fetch_response(records: list[bytes | None]) -> FetchResponse:
    partitions = [
        FetchResponse.PartitionData(
            partition_index=index,
            error_code=0,
            high_watermark=100,
            last_stable_offset=100,
            log_start_offset=0,
            aborted_transactions=(
                [FetchResponse.AbortedTransaction(producer_id=7, first_offset=1)]
                if index == 0
                else None
            ),
            preferred_read_replica=-1,
            records=data,
        )
        for index, data in enumerate(records)
    ]
    return FetchResponse(
        throttle_time_ms=0,
        error_code=0,
        session_id=0,
        responses=[
            FetchResponse.FetchableTopicResponse(
                topic="orders", topic_id=uuid.uuid4(), partitions=partitions
            )
        ],
    )


@pytest.mark.parametrize("version", [0, 4, 5, 11, 12, 13, 16])
def test_fetch_response_keeps_every_other_batch_and_everything_else(version):
    groups = [batches(0, 3), batches(10, 2), []]
    frame = encode_response(9, 1, version, fetch_response([b"".join(g) for g in groups] + [None]))

    rewritten = rewrite_fetch_response(frame[4:], version, BatchDropper())

    correlation_id, decoded = decode_response(rewritten, 1, version)
    assert correlation_id == 9
    partitions = decoded.responses[0].partitions
    assert [p.records for p in partitions] == [*every_other(groups), None]
    original = decode_response(frame[4:], 1, version)[1].responses[0].partitions
    for before, after in zip(original, partitions, strict=True):
        assert (after.high_watermark, after.aborted_transactions) == (
            before.high_watermark,
            before.aborted_transactions,
        )


@pytest.mark.parametrize("version", [3, 8, 9, 11])
def test_produce_request_keeps_every_other_batch(version):
    groups = [batches(0, 4), batches(0, 1)]
    topic = ProduceRequest.TopicProduceData(
        name="orders",
        partition_data=[
            ProduceRequest.PartitionProduceData(index=i, records=b"".join(g))
            for i, g in enumerate(groups)
        ],
    )
    request = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=30000, topic_data=[topic])
    frame = encode_request(RequestHeader(0, version, 5, "client"), request)

    rewritten = rewrite_produce_request(frame[4:], BatchDropper())

    decoded = ProduceRequest.decode(rewritten[_header_size(frame[4:], version) :], version)
    assert [p.records for p in decoded.topic_data[0].partition_data] == every_other(groups)


def _header_size(frame: bytes, version: int) -> int:
    (client_id_length,) = struct.unpack_from(">h", frame, 8)
    return 10 + client_id_length + (1 if version >= 9 else 0)


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        FaultyProxy(1, "everything")


def test_proxy_counts_drops_across_connections():
    dropper = BatchDropper()
    assert dropper.keep_every_other(b"".join(batches(0, 3))) == fake_batch(0) + fake_batch(2)
    assert dropper.keep_every_other(fake_batch(5)) == b""  # the 4th batch it has seen
    assert (dropper.seen, dropper.dropped) == (4, 2)
