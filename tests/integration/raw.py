"""A bare Kafka client built on kop's own `wire` package, for sending exact bytes in tests
(replayed batches, malformed frames) that real clients would never send on purpose."""

from __future__ import annotations

import socket
import struct

from wire.messages import FetchRequest, ProduceRequest
from wire.protocol import RequestHeader, decode_response, encode_request
from wire.records.batch import iter_batches

FETCH, PRODUCE = 1, 0


class RawConnection:
    def __init__(self, address: str, timeout: float = 30.0) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self._correlation = 0

    def close(self) -> None:
        self.sock.close()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> bytes | None:
        """The next response frame, or None when the broker closed the connection."""
        header = self._read_exactly(4)
        if header is None:
            return None
        (size,) = struct.unpack(">i", header)
        return self._read_exactly(size)

    def _read_exactly(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            try:
                chunk = self.sock.recv(size - len(data))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def call(self, api_key: int, version: int, message):
        self._correlation += 1
        self.send_bytes(encode_request(RequestHeader(api_key, version, self._correlation, "raw"),
                                       message))
        frame = self.read_frame()
        assert frame is not None, "the broker closed the connection"
        correlation, response = decode_response(frame, api_key, version)
        assert correlation == self._correlation
        return response


def fetch_batches(address: str, topic: str, partition: int) -> list[bytes]:
    """Every stored batch of a partition, as raw bytes."""
    connection = RawConnection(address)
    try:
        response = connection.call(FETCH, 11, FetchRequest(
            replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=64 * 1024 * 1024,
            isolation_level=0, session_id=0, session_epoch=-1,
            topics=[FetchRequest.FetchTopic(topic=topic, partitions=[FetchRequest.FetchPartition(
                partition=partition, fetch_offset=0, partition_max_bytes=64 * 1024 * 1024)])],
            forgotten_topics_data=[], rack_id=""))
    finally:
        connection.close()
    records = response.responses[0].partitions[0].records or b""
    return [records[position:position + header.size]
            for position, header in iter_batches(records)]


def produce_raw(address: str, topic: str, partition: int, batch: bytes):
    """Send one batch as-is (acks=-1); returns the partition's produce response."""
    connection = RawConnection(address)
    try:
        response = connection.call(PRODUCE, 9, ProduceRequest(
            transactional_id=None, acks=-1, timeout_ms=30_000,
            topic_data=[ProduceRequest.TopicProduceData(name=topic, partition_data=[
                ProduceRequest.PartitionProduceData(index=partition, records=batch)])]))
    finally:
        connection.close()
    return response.responses[0].partition_responses[0]


def replay_last_batch(address: str, topic: str, partition: int, index: int) -> int:
    """Send stored batch number `index` again; returns the offset the broker answers."""
    batch = fetch_batches(address, topic, partition)[index]
    answer = produce_raw(address, topic, partition, batch)
    assert answer.error_code == 0, answer
    return answer.base_offset
