"""The generated message classes: names, defaults, equality, repr; the error-code table."""

from __future__ import annotations

import uuid

import pytest

import wire.messages
from wire.generated.error_codes import RETRIABLE_ERRORS, ErrorCode
from wire.messages import (
    MESSAGES,
    ApiVersionsResponse,
    ConsumerGroupHeartbeatResponse,
    DescribeClusterResponse,
    FetchRequest,
    FetchResponse,
    MetadataResponse,
    ProduceRequest,
    RequestHeaderData,
)


def test_nested_structs_are_attributes_of_their_message() -> None:
    assert FetchResponse.PartitionData.__qualname__ == "FetchResponse.PartitionData"
    assert ProduceRequest.TopicProduceData().partition_data == []
    assert MetadataResponse.MetadataResponseTopic.__module__ == "wire.messages"
    # Common structs too.
    assert FetchResponse.LeaderIdAndEpoch().leader_id == -1


def test_snake_case_attributes() -> None:
    response = FetchResponse()
    assert hasattr(response, "throttle_time_ms") and hasattr(response, "error_code")
    partition = FetchResponse.PartitionData()
    assert partition.high_watermark == 0 and partition.preferred_read_replica == -1


def test_spec_defaults() -> None:
    assert ProduceRequest().transactional_id is None              # "default": "null"
    assert FetchResponse.PartitionData().last_stable_offset == -1  # "default": "-1"
    assert FetchResponse.PartitionData().records is None           # records default to null
    assert FetchResponse.FetchableTopicResponse().topic_id == uuid.UUID(int=0)
    assert FetchResponse.FetchableTopicResponse().topic == ""
    assert ConsumerGroupHeartbeatResponse().assignment is None     # nullable struct, default null
    assert FetchRequest().max_bytes == 0x7FFFFFFF                  # hex default
    assert DescribeClusterResponse().cluster_authorized_operations == -(2**31)
    assert FetchResponse.NodeEndpoint().rack is None
    assert ApiVersionsResponse().zk_migration_ready is False


def test_list_and_struct_defaults_are_never_shared() -> None:
    first, second = ProduceRequest(), ProduceRequest()
    first.topic_data.append(ProduceRequest.TopicProduceData(name="t"))
    assert second.topic_data == []
    a, b = FetchResponse.PartitionData(), FetchResponse.PartitionData()
    a.current_leader.leader_id = 5
    assert b.current_leader.leader_id == -1


def test_keyword_only_constructor_rejects_unknown_names() -> None:
    with pytest.raises(TypeError):
        ProduceRequest(-1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        ProduceRequest(no_such_field=1)  # type: ignore[call-arg]


def test_slots_refuse_typos() -> None:
    request = ProduceRequest()
    with pytest.raises(AttributeError):
        request.ackz = 1  # type: ignore[attr-defined]


def test_equality_is_by_value_and_type() -> None:
    assert ProduceRequest(acks=1) == ProduceRequest(acks=1)
    assert ProduceRequest(acks=1) != ProduceRequest(acks=0)
    assert FetchResponse.LeaderIdAndEpoch() != ProduceRequest()
    assert ProduceRequest(unknown_tagged={}) == ProduceRequest(unknown_tagged=None)
    assert ProduceRequest(unknown_tagged={1: b""}) != ProduceRequest()


def test_repr_names_fields_and_abbreviates_big_bytes() -> None:
    text = repr(ProduceRequest.PartitionProduceData(index=2, records=bytes(1000)))
    assert text == "ProduceRequest.PartitionProduceData(index=2, records=<1000 bytes>)"
    assert "unknown_tagged={3: b'x'}" in repr(ProduceRequest(unknown_tagged={3: b"x"}))


def test_message_methods_encode_and_decode() -> None:
    request = ProduceRequest(acks=-1, timeout_ms=5)
    assert ProduceRequest.decode(request.encode(9), 9) == request
    assert ProduceRequest.API_KEY == 0
    assert ProduceRequest.SPEC.name == "ProduceRequest"


def test_header_classes_are_exported_under_other_names() -> None:
    assert RequestHeaderData.SPEC.kind == "header"
    assert "RequestHeaderData" in wire.messages.__all__
    with pytest.raises(AttributeError, match="NoSuchRequest"):
        wire.messages.NoSuchRequest  # noqa: B018


def test_every_message_class_is_importable_by_name() -> None:
    for name, cls in MESSAGES.items():
        exported = {"RequestHeader": "RequestHeaderData", "ResponseHeader": "ResponseHeaderData"}
        assert getattr(wire.messages, exported.get(name, name)) is cls


def test_error_codes_from_errors_tsv() -> None:
    assert ErrorCode.NONE == 0
    assert ErrorCode.UNKNOWN_SERVER_ERROR == -1
    assert ErrorCode.UNSUPPORTED_VERSION == 35
    assert ErrorCode(3) is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert ErrorCode.NOT_LEADER_OR_FOLLOWER in RETRIABLE_ERRORS
    assert ErrorCode.TOPIC_AUTHORIZATION_FAILED not in RETRIABLE_ERRORS
    # Error codes go straight into int16 fields.
    response = ApiVersionsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION)
    assert ApiVersionsResponse.decode(response.encode(0), 0).error_code == 35
