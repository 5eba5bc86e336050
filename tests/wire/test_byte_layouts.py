"""Bytes checked by hand against the protocol guide's primitive types and headers.

Each test spells out the expected bytes field by field, so a change in how any
primitive (classic or compact, nullable, tagged) is written shows up here.
"""

from __future__ import annotations

import struct
import uuid

import pytest

from wire.codec import decode_message, encode_message
from wire.construct_codec import construct_encode
from wire.messages import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    ConsumerGroupHeartbeatResponse,
    FetchRequest,
    FetchResponse,
    MetadataResponse,
    ProduceRequest,
)
from wire.protocol import RequestHeader, decode_request, encode_request, encode_response


def both_codecs(message: object, version: int) -> bytes:
    """Encode with the public codec and the reference codec; they must agree."""
    data = encode_message(message, version)
    assert construct_encode(message, version) == data
    assert decode_message(type(message), data, version) == message
    return data


def test_classic_produce_request_v3() -> None:
    request = ProduceRequest(
        transactional_id=None, acks=-1, timeout_ms=1500,
        topic_data=[ProduceRequest.TopicProduceData(name="ab", partition_data=[
            ProduceRequest.PartitionProduceData(index=7, records=b"\x01\x02\x03"),
        ])],
    )
    assert both_codecs(request, 3) == (
        b"\xff\xff"                    # transactional id: nullable STRING, null is length -1
        + b"\xff\xff"                  # acks int16 -1
        + b"\x00\x00\x05\xdc"          # timeout int32 1500
        + b"\x00\x00\x00\x01"          # ARRAY: int32 count
        + b"\x00\x02ab"                # STRING: int16 length + UTF-8
        + b"\x00\x00\x00\x01"
        + b"\x00\x00\x00\x07"          # partition index
        + b"\x00\x00\x00\x03\x01\x02\x03"  # RECORDS as BYTES: int32 length
    )


def test_compact_produce_request_v9() -> None:
    request = ProduceRequest(
        transactional_id="t", acks=1, timeout_ms=0,
        topic_data=[ProduceRequest.TopicProduceData(name="ab", partition_data=[
            ProduceRequest.PartitionProduceData(index=0, records=None),
        ])],
    )
    assert both_codecs(request, 9) == (
        b"\x02t"               # COMPACT_NULLABLE_STRING: varint length + 1
        + b"\x00\x01\x00\x00\x00\x00"
        + b"\x02"              # COMPACT_ARRAY: varint count + 1
        + b"\x03ab"
        + b"\x02"
        + b"\x00\x00\x00\x00"
        + b"\x00"              # null COMPACT_RECORDS: 0
        + b"\x00"              # partition's tagged fields: none
        + b"\x00"              # topic's tagged fields
        + b"\x00"              # request's tagged fields
    )


def test_compact_lengths_above_127_take_two_varint_bytes() -> None:
    records = bytes(200)
    request = ProduceRequest(topic_data=[ProduceRequest.TopicProduceData(
        name="x" * 130, partition_data=[ProduceRequest.PartitionProduceData(records=records)],
    )])
    data = both_codecs(request, 9)
    # 131 = 0x83 -> varint 0x83 0x01 (low 7 bits with the continuation bit, then 1).
    assert data[7:10] == b"\x02\x83\x01"
    # 201 = 0xc9 -> 0xc9 0x01.
    assert b"\x00\x00\x00\x00\xc9\x01" + records in data


def test_long_arrays_and_multi_byte_counts_round_trip() -> None:
    response = MetadataResponse(topics=[
        MetadataResponse.MetadataResponseTopic(name=f"t{i}", partitions=[
            MetadataResponse.MetadataResponsePartition(partition_index=p, replica_nodes=list(range(140)))
            for p in range(3)
        ]) for i in range(150)
    ])
    for version in (1, 9, 12):
        both_codecs(response, version)


def test_api_versions_request_v3_compact_strings() -> None:
    request = ApiVersionsRequest(client_software_name="kcat", client_software_version="1.7.1")
    assert both_codecs(request, 3) == b"\x05kcat\x061.7.1\x00"


def test_default_tagged_fields_are_not_written() -> None:
    """PITFALLS #1: librdkafka < 2.2 fails on default-valued tagged fields."""
    response = ApiVersionsResponse(error_code=0, api_keys=[
        ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=3),
    ])
    assert both_codecs(response, 3) == (
        b"\x00\x00"                               # error code
        + b"\x02" + b"\x00\x12\x00\x00\x00\x03\x00"  # one api key (+ its empty tag section)
        + b"\x00\x00\x00\x00"                     # throttle time
        + b"\x00"                                 # no tagged fields at all
    )


def test_non_default_tagged_field_is_written_with_tag_and_size() -> None:
    response = ApiVersionsResponse(finalized_features_epoch=5, zk_migration_ready=True)
    assert both_codecs(response, 3) == (
        b"\x00\x00" + b"\x01" + b"\x00\x00\x00\x00"
        + b"\x02"                                  # two tagged fields, ascending tags
        + b"\x01\x08" + struct.pack(">q", 5)       # tag 1, 8 bytes: FinalizedFeaturesEpoch
        + b"\x03\x01\x01"                          # tag 3, 1 byte: ZkMigrationReady
    )


def test_unknown_tagged_fields_are_kept_and_interleaved_by_tag() -> None:
    response = ApiVersionsResponse(zk_migration_ready=True, unknown_tagged={2000: b"zz", 4: b"q"})
    data = both_codecs(response, 3)
    # tag 3 (known), 4 and 2000 (unknown; 2000 is the varint d0 0f), ascending
    assert data.endswith(b"\x03" + b"\x03\x01\x01" + b"\x04\x01q" + b"\xd0\x0f\x02zz")
    assert decode_message(ApiVersionsResponse, data, 3).unknown_tagged == {4: b"q", 2000: b"zz"}


def test_tagged_struct_in_fetch_response_partition() -> None:
    partition = FetchResponse.PartitionData(
        partition_index=1, high_watermark=10,
        current_leader=FetchResponse.LeaderIdAndEpoch(leader_id=3, leader_epoch=4),
        records=b"",
    )
    response = FetchResponse(responses=[FetchResponse.FetchableTopicResponse(
        topic_id=uuid.UUID(int=1), partitions=[partition],
    )])
    data = both_codecs(response, 13)
    # UUID: 16 bytes big-endian; then the partition's tag section holds tag 1 (CurrentLeader).
    # throttle (4) + error code (2) + session id (4) + topic count (1), then the
    # UUID: 16 bytes big-endian.
    assert data[11:27] == b"\x00" * 15 + b"\x01"
    assert data.endswith(
        b"\x01"                             # empty records (length 0 + 1)
        + b"\x01\x01\x09" + struct.pack(">ii", 3, 4) + b"\x00"  # one tag: 1, 9 bytes
        + b"\x00"                           # topic tags
        + b"\x00"                           # response tags
    )


def test_nullable_struct_has_a_marker_byte() -> None:
    cls = ConsumerGroupHeartbeatResponse
    absent = both_codecs(cls(assignment=None), 0)
    present = both_codecs(cls(assignment=cls.Assignment(topic_partitions=[])), 0)
    assert absent.endswith(b"\xff\x00")     # null marker -1, then the tag section
    assert present.endswith(b"\x01\x01\x00\x00")  # marker 1, empty array, struct tags, tags


def test_nullable_compact_array_null_is_zero() -> None:
    partition = FetchResponse.PartitionData(aborted_transactions=None, records=None)
    response = FetchResponse(responses=[FetchResponse.FetchableTopicResponse(partitions=[partition])])
    data = both_codecs(response, 12)
    assert struct.pack(">qq", -1, -1) + b"\x00" + struct.pack(">i", -1) + b"\x00" in data


def test_request_header_v2_keeps_client_id_a_classic_string() -> None:
    frame = encode_request(RequestHeader(18, 3, 0x01020304, "ab"), ApiVersionsRequest())
    assert frame == (
        struct.pack(">i", len(frame) - 4)
        + b"\x00\x12\x00\x03\x01\x02\x03\x04"   # api key 18, version 3, correlation id
        + b"\x00\x02ab"                         # client id: classic STRING even in header v2
        + b"\x00"                               # header tagged fields
        + b"\x01\x01\x00"                       # body: two empty compact strings, no tags
    )
    header, body = decode_request(frame[4:])
    assert header == RequestHeader(18, 3, 0x01020304, "ab")
    assert body == ApiVersionsRequest()


def test_request_header_v1_for_a_classic_version_and_null_client_id() -> None:
    frame = encode_request(RequestHeader(18, 2, 9, None), ApiVersionsRequest())
    assert frame == struct.pack(">i", 10) + b"\x00\x12\x00\x02\x00\x00\x00\x09\xff\xff"


@pytest.mark.parametrize(("version", "header_tail"), [(11, b""), (12, b"\x00")])
def test_response_header_v0_or_v1_by_flexible_version(version: int, header_tail: bytes) -> None:
    frame = encode_response(77, 1, version, FetchResponse())
    body = encode_message(FetchResponse(), version)
    assert frame == struct.pack(">ii", len(frame) - 4, 77) + header_tail + body


def test_api_versions_response_always_uses_header_v0() -> None:
    frame = encode_response(5, 18, 3, ApiVersionsResponse())
    body = encode_message(ApiVersionsResponse(), 3)
    assert frame == struct.pack(">ii", 4 + len(body), 5) + body


def test_fetch_request_v15_tagged_replica_state_is_omitted_when_default() -> None:
    request = FetchRequest(max_wait_ms=500, min_bytes=1)
    data = both_codecs(request, 15)
    assert data[-1:] == b"\x00"
    request.replica_state = FetchRequest.ReplicaState(replica_id=2, replica_epoch=3)
    data = both_codecs(request, 15)
    assert data.endswith(b"\x01\x01\x0d" + struct.pack(">iq", 2, 3) + b"\x00")
