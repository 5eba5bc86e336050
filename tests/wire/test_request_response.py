"""wire.protocol: the API table, request/response frames, header selection, refusals."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings

from tests.wire.message_strategies import message_strategy
from wire.errors import (
    DecodeError,
    EncodeError,
    InvalidValueError,
    TruncatedError,
    UnknownApiError,
    UnsupportedVersionError,
)
from wire.messages import (
    ApiVersionsRequest,
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
    FetchRequest,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
    ProduceResponse,
)
from wire.protocol import (
    API_BY_KEY,
    API_BY_NAME,
    RequestHeader,
    decode_request,
    decode_request_header,
    decode_response,
    decode_versioned,
    encode_request,
    encode_response,
    encode_versioned,
)


def test_api_table_lists_the_client_facing_apis() -> None:
    produce = API_BY_KEY[0]
    assert (produce.name, produce.request_cls, produce.response_cls) == (
        "Produce", ProduceRequest, ProduceResponse
    )
    assert (produce.min_version, produce.max_version, produce.first_flexible_version) == (0, 11, 9)
    assert "broker" in produce.listeners
    assert API_BY_KEY[18].first_flexible_version == 3
    assert API_BY_NAME["Metadata"].key == 3
    # Every listed api is client-facing; inter-broker-only ones are not listed.
    assert all("broker" in api.listeners for api in API_BY_KEY.values())
    assert 4 not in API_BY_KEY  # LeaderAndIsr
    assert 7 not in API_BY_KEY  # ControlledShutdown
    # SaslHandshake has no flexible version.
    assert API_BY_KEY[17].first_flexible_version is None


def test_header_versions_follow_flexible_versions() -> None:
    fetch = API_BY_KEY[1]
    assert [fetch.request_header_version(v) for v in (11, 12)] == [1, 2]
    assert [fetch.response_header_version(v) for v in (11, 12)] == [0, 1]
    api_versions = API_BY_KEY[18]
    assert api_versions.request_header_version(3) == 2
    assert api_versions.response_header_version(3) == 0


REQUEST_CASES = [
    pytest.param(key, version, id=f"{api.name}-v{version}")
    for key, api in API_BY_KEY.items()
    for version in range(api.min_version, api.max_version + 1)
]


@pytest.mark.parametrize(("api_key", "version"), REQUEST_CASES)
def test_request_and_response_frames_round_trip(api_key: int, version: int) -> None:
    api = API_BY_KEY[api_key]

    @settings(max_examples=2, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(request=message_strategy(api.request_cls, version),
           response=message_strategy(api.response_cls, version))
    def check(request: object, response: object) -> None:
        header = RequestHeader(api_key, version, 12345, "client-1")
        frame = encode_request(header, request)
        assert struct.unpack_from(">i", frame)[0] == len(frame) - 4
        assert decode_request(frame[4:]) == (header, request)
        assert decode_request(memoryview(frame)[4:]) == (header, request)

        answer = encode_response(12345, api_key, version, response)
        assert struct.unpack_from(">i", answer)[0] == len(answer) - 4
        assert decode_response(answer[4:], api_key, version) == (12345, response)

    check()


def test_header_tagged_fields_are_kept() -> None:
    header = RequestHeader(3, 12, 1, "c", unknown_tagged={7: b"x"})
    frame = encode_request(header, MetadataRequest(topics=None))
    decoded, _ = decode_request(frame[4:])
    assert decoded.unknown_tagged == {7: b"x"}


def test_decode_request_header_reports_the_body_offset() -> None:
    frame = encode_request(RequestHeader(18, 3, 4, "abc"), ApiVersionsRequest())[4:]
    header, offset = decode_request_header(frame)
    assert header == RequestHeader(18, 3, 4, "abc")
    assert offset == 2 + 2 + 4 + 2 + 3 + 1
    assert frame[offset:] == ApiVersionsRequest().encode(3)


def test_trailing_bytes_after_a_request_body_are_ignored() -> None:
    frame = encode_request(RequestHeader(12, 4, 1, "c"), _heartbeat())[4:]
    header, body = decode_request(frame + b"future-fields")
    assert body == _heartbeat()


def _heartbeat() -> object:
    return API_BY_KEY[12].request_cls(group_id="g", generation_id=3, member_id="m")


def test_unknown_api_key_carries_the_header() -> None:
    frame = struct.pack(">hhih", 999, 0, 42, 1) + b"c"
    with pytest.raises(UnknownApiError) as caught:
        decode_request(frame)
    assert caught.value.api_key == 999
    assert caught.value.header == RequestHeader(999, 0, 42, "c")


def test_unsupported_version_carries_the_header_for_api_versions() -> None:
    # A client newer than the codec asks ApiVersions v99 in a flexible header.
    frame = struct.pack(">hhih", 18, 99, 42, 3) + b"new" + b"\x00" + b"whatever"
    with pytest.raises(UnsupportedVersionError) as caught:
        decode_request(frame)
    error = caught.value
    assert (error.api_key, error.api_version) == (18, 99)
    assert error.header == RequestHeader(18, 99, 42, "new")
    assert isinstance(error, DecodeError)


def test_unsupported_version_with_an_unreadable_header_still_has_the_correlation_id() -> None:
    frame = struct.pack(">hhih", 18, 99, 42, 500)  # client id length beyond the frame
    with pytest.raises(UnsupportedVersionError) as caught:
        decode_request(frame)
    assert caught.value.header == RequestHeader(18, 99, 42, None)


def test_negative_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_request(struct.pack(">hhih", 0, -1, 1, -1))


@pytest.mark.parametrize("frame", [b"", b"\x00", b"\x00\x00\x00", b"\x00\x12\x00\x03\x00"])
def test_frames_too_short_for_a_header(frame: bytes) -> None:
    with pytest.raises(TruncatedError):
        decode_request(frame)


def test_bad_client_id() -> None:
    with pytest.raises(InvalidValueError, match="client id"):
        decode_request(struct.pack(">hhih", 18, 0, 1, -2))
    with pytest.raises(TruncatedError, match="client id"):
        decode_request(struct.pack(">hhih", 18, 0, 1, 10) + b"abc")
    with pytest.raises(InvalidValueError, match="UTF-8"):
        decode_request(struct.pack(">hhih", 18, 0, 1, 2) + b"\xff\xfe")


def test_truncated_body_names_the_api_version_and_field() -> None:
    frame = encode_request(RequestHeader(0, 9, 1, "c"), ProduceRequest(topic_data=[
        ProduceRequest.TopicProduceData(name="t", partition_data=[
            ProduceRequest.PartitionProduceData(index=1, records=b"r" * 50)])]))[4:]
    with pytest.raises(TruncatedError) as caught:
        decode_request(frame[:-20])
    error = caught.value
    assert (error.api, error.version) == ("ProduceRequest", 9)
    assert error.field_path == "topic_data[0].partition_data[0].records"
    assert "ProduceRequest v9" in str(error) and "records" in str(error)


def test_encode_response_refuses_the_wrong_message_type() -> None:
    with pytest.raises(EncodeError, match="ProduceResponse"):
        encode_response(1, 0, 9, MetadataResponse())
    with pytest.raises(EncodeError, match="unknown api key"):
        encode_response(1, 999, 0, MetadataResponse())
    with pytest.raises(EncodeError, match="correlation id"):
        encode_response(2**40, 3, 1, MetadataResponse())


def test_encode_request_refuses_the_wrong_message_type() -> None:
    with pytest.raises(EncodeError):
        encode_request(RequestHeader(1, 4, 1, None), ProduceRequest())


def test_response_parts_are_joined_once_with_records_intact() -> None:
    records = bytes(range(256)) * 64
    response = API_BY_KEY[1].response_cls(responses=[
        API_BY_KEY[1].response_cls.FetchableTopicResponse(topic="t", partitions=[
            API_BY_KEY[1].response_cls.PartitionData(records=memoryview(records))])])
    frame = encode_response(3, 1, 11, response)
    assert records in frame
    _, decoded = decode_response(frame[4:], 1, 11)
    assert decoded.responses[0].partitions[0].records == records


def test_decode_response_refuses_unknown_apis_and_versions() -> None:
    with pytest.raises(UnknownApiError):
        decode_response(b"\x00\x00\x00\x01", 999, 0)
    with pytest.raises(UnsupportedVersionError):
        decode_response(b"\x00\x00\x00\x01", 1, 99)


def test_consumer_protocol_structures_with_their_version_prefix() -> None:
    subscription = ConsumerProtocolSubscription(
        topics=["a", "b"], user_data=None, owned_partitions=[
            ConsumerProtocolSubscription.TopicPartition(topic="a", partitions=[0, 2])],
        generation_id=5, rack_id="r1",
    )
    data = encode_versioned(subscription, 3)
    assert data[:2] == b"\x00\x03"
    assert decode_versioned(ConsumerProtocolSubscription, data) == (3, subscription)

    # A newer version is read as the newest known one; its extra bytes are ignored.
    future = b"\x00\x09" + data[2:] + b"extra"
    assert decode_versioned(ConsumerProtocolSubscription, future) == (9, subscription)

    assignment = ConsumerProtocolAssignment(assigned_partitions=[
        ConsumerProtocolAssignment.TopicPartition(topic="a", partitions=[1])], user_data=b"u")
    assert decode_versioned(ConsumerProtocolAssignment, encode_versioned(assignment, 0)) == (0, assignment)

    with pytest.raises(UnsupportedVersionError):
        decode_versioned(ConsumerProtocolAssignment, b"\xff\xff")
    with pytest.raises(TruncatedError):
        decode_versioned(ConsumerProtocolAssignment, b"\x00")


def test_fetch_request_v13_topic_ids_round_trip() -> None:
    import uuid

    request = FetchRequest(max_wait_ms=500, topics=[FetchRequest.FetchTopic(
        topic_id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        partitions=[FetchRequest.FetchPartition(partition=0, fetch_offset=42)])])
    frame = encode_request(RequestHeader(1, 13, 1, "c"), request)
    assert decode_request(frame[4:])[1] == request
