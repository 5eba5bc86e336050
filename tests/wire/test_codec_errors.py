"""Bad bytes and unencodable messages: the right error, saying where, and nothing else.

Every case goes through the public codec (fast path first, then the reference
codec to explain) and checks the error class, field path and byte offset.
"""

from __future__ import annotations

import struct
import tracemalloc
import uuid

import pytest

from wire.codec import decode_message, decode_message_at, encode_message
from wire.construct_codec import construct_decode
from wire.errors import (
    DecodeError,
    EncodeError,
    InvalidValueError,
    TruncatedError,
    UnsupportedVersionError,
)
from wire.messages import (
    ApiVersionsResponse,
    ConsumerGroupHeartbeatResponse,
    CreateTopicsRequest,
    FetchResponse,
    MetadataRequest,
    MetadataResponse,
    OffsetFetchRequest,
    ProduceRequest,
)
from wire.protocol import decode_response, encode_response


def produce_v3_with(records_length: bytes) -> bytes:
    """A ProduceRequest v3 body whose records length prefix is ``records_length``."""
    return (
        b"\xff\xff" + b"\x00\x01" + b"\x00\x00\x00\x10"
        + b"\x00\x00\x00\x01" + b"\x00\x01t"
        + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x00"
        + records_length + b"abc"
    )


def test_huge_length_in_a_small_frame_is_truncation_not_allocation() -> None:
    data = produce_v3_with(struct.pack(">i", 2**31 - 1))
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedError) as caught:
            decode_message(ProduceRequest, data, 3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024
    error = caught.value
    assert error.field_path == "topic_data[0].partition_data[0].records"
    assert error.offset == 23  # where the records length starts
    assert (error.api, error.version) == ("ProduceRequest", 3)
    assert str(error) == (
        "length 2147483647 exceeds the 3 bytes left "
        "(ProduceRequest v3, field topic_data[0].partition_data[0].records, byte 23)"
    )


def test_huge_array_count_is_refused_before_any_element() -> None:
    data = struct.pack(">i", 10**9) + bytes(20)  # brokers: a billion, in 20 bytes
    with pytest.raises(TruncatedError, match="1000000000 elements") as caught:
        decode_message(MetadataResponse, data, 1)
    assert caught.value.field_path == "brokers"


def test_negative_lengths_other_than_null() -> None:
    with pytest.raises(InvalidValueError, match="negative length -2"):
        decode_message(ProduceRequest, produce_v3_with(struct.pack(">i", -2)), 3)


def test_null_where_the_version_does_not_allow_it() -> None:
    # OffsetFetchRequest v1: topics is not nullable (null means "all topics" only from v2).
    data = b"\x00\x01g" + b"\xff\xff\xff\xff"
    with pytest.raises(InvalidValueError, match="null") as caught:
        decode_message(OffsetFetchRequest, data, 1)
    assert caught.value.field_path == "topics"
    assert decode_message(OffsetFetchRequest, data, 2).topics is None


def test_invalid_utf8_string() -> None:
    data = b"\x00\x00\x00\x01" + b"\x00\x02\xc3\x28"
    with pytest.raises(InvalidValueError, match="UTF-8") as caught:
        decode_message(MetadataRequest, data, 1)
    assert caught.value.field_path == "topics[0].name"
    assert caught.value.offset == 4


def test_varint_longer_than_five_bytes() -> None:
    data = b"\xff\xff\xff\xff\xff\x01"
    with pytest.raises(InvalidValueError, match="varint"):
        decode_message(MetadataRequest, data, 9)


def test_compact_string_longer_than_kafka_allows() -> None:
    length = 0x8000 + 1  # one more than 32767 bytes, as a compact length
    varint = bytes([(length & 0x7F) | 0x80, ((length >> 7) & 0x7F) | 0x80, length >> 14])
    data = b"\x02" + varint + bytes(0x8000) + b"\x00" * 4
    with pytest.raises(InvalidValueError, match="32767"):
        decode_message(MetadataRequest, data, 9)


def test_tags_must_ascend() -> None:
    body = b"\x00\x00" + b"\x01" + b"\x00\x00\x00\x00"
    good = body + b"\x02" + b"\x05\x00" + b"\x06\x00"
    assert decode_message(ApiVersionsResponse, good, 3).unknown_tagged == {5: b"", 6: b""}
    with pytest.raises(InvalidValueError, match="ascend"):
        decode_message(ApiVersionsResponse, body + b"\x02" + b"\x06\x00" + b"\x05\x00", 3)
    with pytest.raises(InvalidValueError, match="ascend"):
        decode_message(ApiVersionsResponse, body + b"\x02" + b"\x05\x00" + b"\x05\x00", 3)


def test_known_tagged_value_must_fill_its_size() -> None:
    body = b"\x00\x00" + b"\x01" + b"\x00\x00\x00\x00"
    # Tag 3 (ZkMigrationReady, a bool) declared 2 bytes long.
    with pytest.raises(InvalidValueError, match="tagged value") as caught:
        decode_message(ApiVersionsResponse, body + b"\x01\x03\x02\x01\x00", 3)
    assert caught.value.field_path == "zk_migration_ready"
    # Tag 1 (an int64) declared 2 bytes long: the value runs out.
    with pytest.raises(TruncatedError):
        decode_message(ApiVersionsResponse, body + b"\x01\x01\x02\x00\x00", 3)


def test_truncation_inside_a_fixed_field_points_at_it() -> None:
    data = b"\x00\x00\x00\x00" + b"\x00\x00"  # no brokers, then half a controller id
    with pytest.raises(TruncatedError) as caught:
        decode_message(MetadataResponse, data, 1)
    assert caught.value.field_path == "controller_id"
    assert caught.value.offset == 4


def test_array_elements_that_cannot_fit_are_refused_at_the_count() -> None:
    # One broker needs at least 12 bytes in v1; 5 are left.
    data = b"\x00\x00\x00\x01" + b"\x00\x00\x00\x07" + b"\x00"
    with pytest.raises(TruncatedError, match="1 elements cannot fit in the 5 bytes") as caught:
        decode_message(MetadataResponse, data, 1)
    assert caught.value.field_path == "brokers"


def test_nested_path_inside_a_tagged_struct() -> None:
    response = FetchResponse(responses=[FetchResponse.FetchableTopicResponse(partitions=[
        FetchResponse.PartitionData(
            current_leader=FetchResponse.LeaderIdAndEpoch(leader_id=1, leader_epoch=2))])])
    data = bytearray(encode_message(response, 12))
    # The tag section of the partition: count 1, tag 1, size 9 -> claim 5 instead.
    marker = data.rindex(b"\x01\x01\x09")
    data[marker + 2] = 5
    with pytest.raises(DecodeError) as caught:
        decode_message(FetchResponse, bytes(data), 12)
    # The 5 bytes hold the leader id and run out in the leader epoch.
    assert caught.value.field_path == "responses[0].partitions[0].current_leader.leader_epoch"


def test_decoding_a_version_the_message_lacks() -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_message(ProduceRequest, b"", 99)


def test_decode_accepts_any_bytes_like_and_offsets() -> None:
    body = MetadataRequest(topics=None).encode(9)
    assert decode_message(MetadataRequest, bytearray(body), 9) == MetadataRequest(topics=None)
    assert decode_message(MetadataRequest, memoryview(b"xx" + body)[2:], 9) == MetadataRequest(topics=None)
    assert decode_message_at(MetadataRequest, b"xx" + body, 9, 2) == (MetadataRequest(topics=None), 2 + len(body))


def test_decode_of_a_nested_class_is_refused() -> None:
    with pytest.raises(TypeError):
        decode_message(ProduceRequest.TopicProduceData, b"", 0)


# -- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "version", "path", "reason"),
    [
        (ProduceRequest(acks=40000), 3, "acks", "40000"),
        (ProduceRequest(acks="1"), 3, "acks", "'1'"),
        (ProduceRequest(topic_data=None), 3, "topic_data", "null"),
        (ProduceRequest(topic_data=[ProduceRequest.TopicProduceData(name=None)]), 9,
         "topic_data[0].name", "null"),
        (ProduceRequest(topic_data=[ProduceRequest.TopicProduceData(name=b"bytes")]), 3,
         "topic_data[0].name", "str"),
        (ProduceRequest(topic_data=[ProduceRequest.TopicProduceData(partition_data=[
            ProduceRequest.PartitionProduceData(records="text")])]), 9,
         "topic_data[0].partition_data[0].records", "bytes"),
        (ProduceRequest(topic_data=[ProduceRequest.TopicProduceData(name="x" * 40000)]), 3,
         "topic_data[0].name", "32767"),
        (ProduceRequest(topic_data=[{"name": "t"}]), 3, "topic_data[0]", "dict"),
        (FetchResponse(responses=[FetchResponse.FetchableTopicResponse(topic_id="not-a-uuid")]), 13,
         "responses[0].topic_id", "uuid"),
        (OffsetFetchRequest(group_id="g", topics=None), 1, "topics", "null"),
        (ConsumerGroupHeartbeatResponse(unknown_tagged={0: b"x", -1: b""}), 0, None, "tag"),
    ],
)
def test_unencodable_messages(message: object, version: int, path: str | None, reason: str) -> None:
    with pytest.raises(EncodeError) as caught:
        encode_message(message, version)
    error = caught.value
    assert error.field_path == path
    assert reason in error.reason
    assert error.api == type(message).__qualname__ and error.version == version


def test_a_non_ignorable_field_the_version_cannot_carry_is_refused() -> None:
    # FetchResponse.SessionId exists from v7 and is not ignorable: Kafka refuses to drop it.
    with pytest.raises(EncodeError, match="session_id") as caught:
        encode_message(FetchResponse(session_id=5), 6)
    assert caught.value.field_path == "session_id"
    encode_message(FetchResponse(session_id=0), 6)  # the default is fine
    # ThrottleTimeMs exists from v1 but is ignorable: silently not written in v0.
    assert encode_message(FetchResponse(throttle_time_ms=5), 0) == b"\x00\x00\x00\x00"


def test_unknown_tagged_cannot_shadow_a_known_tag() -> None:
    with pytest.raises(EncodeError, match="tag 1"):
        encode_message(ApiVersionsResponse(unknown_tagged={1: b"x"}), 3)


def test_encoding_a_version_the_message_lacks() -> None:
    with pytest.raises(EncodeError, match="no version 99"):
        encode_message(ProduceRequest(), 99)


def test_uuid_and_bytes_like_values() -> None:
    topic_id = uuid.uuid4()
    response = FetchResponse(responses=[FetchResponse.FetchableTopicResponse(
        topic_id=topic_id, partitions=[FetchResponse.PartitionData(records=bytearray(b"ab"))])])
    decoded = decode_message(FetchResponse, encode_message(response, 13), 13)
    assert decoded.responses[0].topic_id == topic_id
    assert decoded.responses[0].partitions[0].records == b"ab"


def test_reference_codec_reports_the_same_errors() -> None:
    """construct_decode is what explains errors; check it directly once."""
    with pytest.raises(TruncatedError) as caught:
        construct_decode(ProduceRequest, produce_v3_with(struct.pack(">i", 100)), 3)
    assert caught.value.field_path == "topic_data[0].partition_data[0].records"


def test_create_topics_request_nested_defaults_survive_old_versions() -> None:
    request = CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
        name="t", num_partitions=3, replication_factor=1)], timeout_ms=100)
    assert decode_message(CreateTopicsRequest, encode_message(request, 0), 0) == request
    # validate_only exists from v1 and is not ignorable.
    request.validate_only = True
    with pytest.raises(EncodeError, match="validate_only"):
        encode_message(request, 0)


def test_responses_leave_out_what_the_clients_version_cannot_carry() -> None:
    # A broker answers every client version from one message: fields the client's version
    # lacks are dropped, never an error.
    frame = encode_response(9, 1, 6, FetchResponse(session_id=5, throttle_time_ms=1))
    _, decoded = decode_response(frame[4:], 1, 6)
    assert decoded.session_id == 0 and decoded.throttle_time_ms == 1
    with pytest.raises(EncodeError, match="session_id"):
        encode_response(9, 1, 6, FetchResponse(session_id=5), strict=True)
