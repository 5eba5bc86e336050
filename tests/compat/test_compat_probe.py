"""The readiness probe accepts only a real Kafka ApiVersions answer."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from compat_tests.probe import ProbeError, answers_kafka, api_versions, parse_api_versions_response


def test_a_real_broker_answers(tansu):
    host, port = tansu.bootstrap.split(":")
    versions = api_versions(host, int(port))
    assert 18 in versions and 0 in versions  # ApiVersions and Produce


@pytest.mark.parametrize(
    "frame, message",
    [
        (b"\x00" * 3, "too short"),
        (struct.pack(">ihi", 1, 0, 0), "correlation id"),
        (struct.pack(">ihi", 0x4B4F50, 35, 0), "error code 35"),
        (struct.pack(">ihi", 0x4B4F50, 0, 1000), "claims 1000 APIs"),
    ],
)
def test_malformed_answers_are_refused(frame, message):
    with pytest.raises(ProbeError, match=message):
        parse_api_versions_response(frame)


def test_a_port_that_is_not_kafka_does_not_count_as_ready():
    server = socket.create_server(("127.0.0.1", 0))

    def answer_http() -> None:
        connection, _ = server.accept()
        connection.recv(1024)
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        connection.close()

    threading.Thread(target=answer_http, daemon=True).start()
    try:
        assert not answers_kafka("127.0.0.1", server.getsockname()[1])
    finally:
        server.close()
