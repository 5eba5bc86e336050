"""The Kafka listener through Twisted's in-memory transport: order, acks=0, backpressure,
version negotiation and bad input."""

from __future__ import annotations

import struct

import pytest
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from kop.handlers import REGISTRY
from kop.handlers.api_versions import handle_api_versions
from kop.handlers.registry import HandlerRegistry
from kop.server import ConnectionLimits, KafkaConnection
from wire.generated.error_codes import ErrorCode
from wire.messages import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
)
from wire.protocol import RequestHeader, decode_response, encode_request

API_VERSIONS, METADATA, PRODUCE = 18, 3, 0


def frame(api_key: int, version: int, correlation_id: int, message) -> bytes:
    return encode_request(RequestHeader(api_key, version, correlation_id, "test"), message)


def split_responses(data: bytes) -> list[bytes]:
    frames = []
    while data:
        (size,) = struct.unpack_from(">i", data)
        frames.append(data[4 : 4 + size])
        data = data[4 + size :]
    return frames


def correlation_ids(data: bytes) -> list[int]:
    return [struct.unpack_from(">i", f)[0] for f in split_responses(data)]


class Controlled:
    """Handlers whose answers the test releases by hand."""

    def __init__(self) -> None:
        self.pending: list[defer.Deferred] = []
        self.registry = HandlerRegistry()
        self.registry.register(API_VERSIONS, 0, 4, handle_api_versions)
        self.registry.register(METADATA, 0, 12, self.metadata)
        self.registry.register(PRODUCE, 3, 11, self.produce)

    def metadata(self, ctx, request):
        answer = defer.Deferred()
        self.pending.append(answer)
        return answer

    def produce(self, ctx, request):
        if request.acks == 0:
            return None
        answer = defer.Deferred()
        self.pending.append(answer)
        return answer


def connect(registry: HandlerRegistry = REGISTRY, clock=None,
            **limits) -> tuple[KafkaConnection, StringTransport]:
    connection = KafkaConnection(broker=None, limits=ConnectionLimits(**limits), registry=registry)
    if clock is not None:
        connection.callLater = clock.callLater
    transport = StringTransport()
    connection.makeConnection(transport)
    return connection, transport


def metadata_request(correlation_id: int) -> bytes:
    return frame(METADATA, 9, correlation_id, MetadataRequest(topics=[]))


def empty_metadata() -> MetadataResponse:
    return MetadataResponse(brokers=[], topics=[])


def test_api_versions_lists_exactly_the_registered_handlers() -> None:
    connection, transport = connect()
    connection.dataReceived(frame(API_VERSIONS, 3, 1, ApiVersionsRequest(
        client_software_name="t", client_software_version="1")))
    [body] = split_responses(transport.value())
    correlation_id, response = decode_response(body, API_VERSIONS, 3)
    assert correlation_id == 1
    assert response.error_code == ErrorCode.NONE
    advertised = {(k.api_key, k.min_version, k.max_version) for k in response.api_keys}
    assert advertised == {(h.api_key, h.min_version, h.max_version) for h in REGISTRY.all()}


def test_api_versions_in_an_unknown_version_gets_the_ranges_in_v0_form() -> None:
    connection, transport = connect()
    header = struct.pack(">hhih", API_VERSIONS, 99, 5, 1) + b"x"
    connection.dataReceived(struct.pack(">i", len(header)) + header)
    [body] = split_responses(transport.value())
    correlation_id, response = decode_response(body, API_VERSIONS, 0)
    assert correlation_id == 5
    assert response.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert (API_VERSIONS, 0, 4) in {(k.api_key, k.min_version, k.max_version)
                                    for k in response.api_keys}
    assert not transport.disconnecting


@pytest.mark.parametrize("payload", [
    struct.pack(">hhih", 999, 0, 1, 0),  # unknown api key
    struct.pack(">hhih", METADATA, 99, 1, 0),  # unsupported version of a known api
    b"\x00",  # too short for a header
])
def test_bad_requests_close_only_that_connection(payload: bytes, caplog) -> None:
    connection, transport = connect()
    other, other_transport = connect()
    connection.dataReceived(struct.pack(">i", len(payload)) + payload)
    assert transport.disconnecting
    assert transport.value() == b""
    assert any("closing connection" in r.getMessage() for r in caplog.records)
    other.dataReceived(frame(API_VERSIONS, 0, 3, ApiVersionsRequest()))
    assert correlation_ids(other_transport.value()) == [3]


def test_negative_and_oversize_frame_lengths_close_the_connection() -> None:
    for length in (-1, 2_000_000):
        connection, transport = connect(max_frame_bytes=1_000_000)
        connection.dataReceived(struct.pack(">i", length))
        assert transport.disconnecting


def test_a_truncated_frame_waits_for_the_rest() -> None:
    connection, transport = connect()
    data = frame(API_VERSIONS, 0, 8, ApiVersionsRequest())
    connection.dataReceived(data[:7])
    assert transport.value() == b"" and not transport.disconnecting
    connection.dataReceived(data[7:])
    assert correlation_ids(transport.value()) == [8]


def test_responses_go_out_in_request_order() -> None:
    handlers = Controlled()
    connection, transport = connect(handlers.registry)
    connection.dataReceived(metadata_request(1) + metadata_request(2)
                            + frame(API_VERSIONS, 0, 3, ApiVersionsRequest()))
    first, second = handlers.pending
    second.callback(empty_metadata())
    assert transport.value() == b""  # the first request is still unanswered
    first.callback(empty_metadata())
    assert correlation_ids(transport.value()) == [1, 2, 3]


def test_acks_zero_produce_holds_its_slot_and_sends_nothing() -> None:
    handlers = Controlled()
    connection, transport = connect(handlers.registry)
    silent = ProduceRequest(acks=0, timeout_ms=1000, topic_data=[])
    connection.dataReceived(metadata_request(1) + frame(PRODUCE, 9, 2, silent)
                            + metadata_request(3))
    handlers.pending[1].callback(empty_metadata())
    assert transport.value() == b""
    handlers.pending[0].callback(empty_metadata())
    assert correlation_ids(transport.value()) == [1, 3]


def test_reading_pauses_while_too_many_requests_are_unanswered() -> None:
    handlers = Controlled()
    connection, transport = connect(handlers.registry, max_inflight_requests=2)
    connection.dataReceived(metadata_request(1))
    assert transport.producerState == "producing"
    connection.dataReceived(metadata_request(2))
    assert transport.producerState == "paused"
    handlers.pending[0].callback(empty_metadata())
    assert transport.producerState == "producing"


def test_reading_pauses_while_the_client_does_not_read() -> None:
    connection, transport = connect()
    connection.pauseProducing()  # what the transport does when its write buffer fills
    assert transport.producerState == "paused"
    connection.resumeProducing()
    assert transport.producerState == "producing"


def test_a_failing_handler_closes_the_connection_with_a_log_line(caplog) -> None:
    registry = HandlerRegistry()

    def broken(ctx, request):
        raise RuntimeError("boom")

    registry.register(METADATA, 0, 12, broken)
    connection, transport = connect(registry)
    connection.dataReceived(metadata_request(1))
    assert transport.disconnecting
    assert any("internal error" in r.getMessage() for r in caplog.records)


def test_idle_connections_are_closed() -> None:
    from twisted.internet.task import Clock

    clock = Clock()
    connection, transport = connect(clock=clock, idle_timeout_seconds=5)
    clock.advance(4)
    assert not transport.disconnecting
    connection.dataReceived(frame(API_VERSIONS, 0, 1, ApiVersionsRequest()))
    clock.advance(4)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting


def test_api_versions_response_is_decodable_by_its_own_version() -> None:
    connection, transport = connect()
    connection.dataReceived(frame(API_VERSIONS, 0, 1, ApiVersionsRequest()))
    [body] = split_responses(transport.value())
    _, response = decode_response(body, API_VERSIONS, 0)
    assert isinstance(response, ApiVersionsResponse)
