"""Benchmark of the wire codec's hot path, beside hand-written references in the same run.

    python -m benchmarks.wire_bench [--seconds 0.3] [--rounds 5]

Measures:

* decodes/s of whole ProduceRequest v9 frames (header + body, as the server
  calls ``decode_request``): 1 topic x 1 partition x 16 KiB of records, and
  3 topics x 10 partitions x 512 B; beside a hand-written ``struct.unpack_from``
  parser of the same bytes, and beside the construct reference codec;
* encodes/s of a FetchResponse v12 (4 partitions x 16 KiB) and a
  MetadataResponse v12 (3 brokers, 10 topics x 10 partitions) as whole frames
  (``encode_response``), beside hand-written ``struct.pack`` encoders writing
  the same bytes.

Each measurement is the best of several rounds, ours and the reference's
interleaved, so both see the same machine. Ratios are reference time / our
time (1.0 = as fast as hand-written code). Goal: ProduceRequest decode >= 0.4.
"""

from __future__ import annotations

import argparse
import struct
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wire.construct_codec import construct_decode
from wire.messages import FetchResponse, MetadataResponse, ProduceRequest
from wire.protocol import (
    RequestHeader,
    decode_request,
    decode_request_header,
    encode_request,
    encode_response,
)

# -- the inputs --------------------------------------------------------------------------------


def produce_frame(topics: int, partitions: int, record_bytes: int) -> bytes:
    request = ProduceRequest(acks=-1, timeout_ms=30000, topic_data=[
        ProduceRequest.TopicProduceData(name=f"topic-{t}", partition_data=[
            ProduceRequest.PartitionProduceData(index=p, records=bytes(record_bytes))
            for p in range(partitions)])
        for t in range(topics)])
    return encode_request(RequestHeader(0, 9, 1, "bench-client"), request)[4:]


def fetch_response() -> FetchResponse:
    return FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=[
        FetchResponse.FetchableTopicResponse(topic="orders", partitions=[
            FetchResponse.PartitionData(
                partition_index=p, error_code=0, high_watermark=1000 + p, last_stable_offset=1000 + p,
                log_start_offset=0, aborted_transactions=None, preferred_read_replica=-1,
                records=bytes(16384))
            for p in range(4)])])


def metadata_response() -> MetadataResponse:
    return MetadataResponse(
        throttle_time_ms=0,
        brokers=[MetadataResponse.MetadataResponseBroker(node_id=b, host=f"broker-{b}.local", port=9092)
                 for b in range(3)],
        cluster_id="kop-cluster", controller_id=0,
        topics=[MetadataResponse.MetadataResponseTopic(
            error_code=0, name=f"topic-{t}", is_internal=False, partitions=[
                MetadataResponse.MetadataResponsePartition(
                    error_code=0, partition_index=p, leader_id=p % 3, leader_epoch=0,
                    replica_nodes=[p % 3], isr_nodes=[p % 3], offline_replicas=[])
                for p in range(10)])
            for t in range(10)])


# -- hand-written references -------------------------------------------------------------------

_HEADER = struct.Struct(">hhih").unpack_from
_INT16_INT32 = struct.Struct(">hi").unpack_from
_INT32 = struct.Struct(">i").unpack_from


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    pos += 1
    if byte < 128:
        return byte, pos
    value, shift = byte & 0x7F, 7
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 128:
            return value, pos
        shift += 7


def _skip_tags(buf: bytes, pos: int) -> int:
    count, pos = _uvarint(buf, pos)
    for _ in range(count):
        _, pos = _uvarint(buf, pos)
        size, pos = _uvarint(buf, pos)
        pos += size
    return pos


def reference_decode_produce_v9(buf: bytes) -> tuple[Any, ...]:
    """Header v2 + ProduceRequest v9 into nested tuples, with no checks at all."""
    api_key, version, correlation_id, length = _HEADER(buf, 0)
    pos = 10
    client_id = buf[pos:pos + length].decode() if length >= 0 else None
    pos = _skip_tags(buf, pos + max(length, 0))
    length, pos = _uvarint(buf, pos)
    transactional_id = buf[pos:pos + length - 1].decode() if length else None
    pos += max(length - 1, 0)
    acks, timeout_ms = _INT16_INT32(buf, pos)
    pos += 6
    count, pos = _uvarint(buf, pos)
    topics = []
    for _ in range(count - 1):
        length, pos = _uvarint(buf, pos)
        name = buf[pos:pos + length - 1].decode()
        pos += length - 1
        partition_count, pos = _uvarint(buf, pos)
        partitions = []
        for _ in range(partition_count - 1):
            index = _INT32(buf, pos)[0]
            length, pos = _uvarint(buf, pos + 4)
            records = buf[pos:pos + length - 1] if length else None
            pos = _skip_tags(buf, pos + max(length - 1, 0))
            partitions.append((index, records))
        pos = _skip_tags(buf, pos)
        topics.append((name, partitions))
    _skip_tags(buf, pos)
    return (api_key, version, correlation_id, client_id), (transactional_id, acks, timeout_ms, topics)


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _compact_string(text: str) -> bytes:
    data = text.encode()
    return _varint_bytes(len(data) + 1) + data


_PACK_FETCH_TOP = struct.Struct(">ihi").pack
_PACK_FETCH_PARTITION = struct.Struct(">ihqqq").pack
_PACK_INT32 = struct.Struct(">i").pack
_PACK_TWO_INT32 = struct.Struct(">ii").pack


def reference_encode_fetch_v12(correlation_id: int, response: FetchResponse) -> bytes:
    """Frame of a FetchResponse v12, the fields this benchmark sets, with struct.pack."""
    out = [b"", _PACK_INT32(correlation_id), b"\x00",
           _PACK_FETCH_TOP(response.throttle_time_ms, response.error_code, response.session_id),
           _varint_bytes(len(response.responses) + 1)]
    for topic in response.responses:
        out.append(_compact_string(topic.topic))
        out.append(_varint_bytes(len(topic.partitions) + 1))
        for p in topic.partitions:
            out.append(_PACK_FETCH_PARTITION(p.partition_index, p.error_code, p.high_watermark,
                                             p.last_stable_offset, p.log_start_offset))
            out.append(b"\x00")  # aborted transactions: null
            out.append(_PACK_INT32(p.preferred_read_replica))
            out.append(_varint_bytes(len(p.records) + 1))
            out.append(p.records)
            out.append(b"\x00")
        out.append(b"\x00")
    out.append(b"\x00")
    out[0] = _PACK_INT32(sum(map(len, out)))
    return b"".join(out)


def _compact_int32_array(values: list[int]) -> bytes:
    return _varint_bytes(len(values) + 1) + struct.pack(f">{len(values)}i", *values)


def reference_encode_metadata_v12(correlation_id: int, response: MetadataResponse) -> bytes:
    """Frame of a MetadataResponse v12, the fields this benchmark sets, with struct.pack."""
    out = [b"", _PACK_INT32(correlation_id), b"\x00", _PACK_INT32(response.throttle_time_ms),
           _varint_bytes(len(response.brokers) + 1)]
    for broker in response.brokers:
        out += [_PACK_INT32(broker.node_id), _compact_string(broker.host), _PACK_INT32(broker.port),
                b"\x00", b"\x00"]  # rack null, no tags
    out += [_compact_string(response.cluster_id), _PACK_INT32(response.controller_id),
            _varint_bytes(len(response.topics) + 1)]
    for topic in response.topics:
        out += [struct.pack(">h", topic.error_code), _compact_string(topic.name),
                topic.topic_id.bytes, b"\x01" if topic.is_internal else b"\x00",
                _varint_bytes(len(topic.partitions) + 1)]
        for p in topic.partitions:
            out += [struct.pack(">hiii", p.error_code, p.partition_index, p.leader_id, p.leader_epoch),
                    _compact_int32_array(p.replica_nodes), _compact_int32_array(p.isr_nodes),
                    _compact_int32_array(p.offline_replicas), b"\x00"]
        out += [_PACK_INT32(topic.topic_authorized_operations), b"\x00"]
    out.append(b"\x00")
    out[0] = _PACK_INT32(sum(map(len, out)))
    return b"".join(out)


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    seconds_per_op: float
    reference_seconds_per_op: float | None

    @property
    def ratio(self) -> float | None:
        if self.reference_seconds_per_op is None:
            return None
        return self.reference_seconds_per_op / self.seconds_per_op


def best_time(func: Callable[[], Any], seconds: float) -> float:
    """Seconds per call: the number of calls is sized to take about ``seconds``."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    return timer.timeit(number) / number


def measure(name: str, ours: Callable[[], Any], reference: Callable[[], Any] | None,
            seconds: float, rounds: int) -> Result:
    our_best = ref_best = float("inf")
    for _ in range(rounds):  # interleaved, so both share the machine's mood
        our_best = min(our_best, best_time(ours, seconds))
        if reference is not None:
            ref_best = min(ref_best, best_time(reference, seconds))
    return Result(name, our_best, ref_best if reference is not None else None)


def run(seconds: float, rounds: int) -> list[Result]:
    results = []
    for label, shape in (("1x1x16KiB", (1, 1, 16384)), ("3x10x512B", (3, 10, 512))):
        frame = produce_frame(*shape)
        header, expected = decode_request(frame)
        reference = reference_decode_produce_v9(frame)
        assert reference[1][3][0][1][0][1] == expected.topic_data[0].partition_data[0].records
        results.append(measure(f"decode ProduceRequest v9 {label}", lambda f=frame: decode_request(f),
                               lambda f=frame: reference_decode_produce_v9(f), seconds, rounds))
        _, body_offset = decode_request_header(frame)
        results.append(measure(
            f"  (construct reference codec, body only) {label}",
            lambda f=frame, o=body_offset: construct_decode(ProduceRequest, f, 9, o),
            None, seconds / 4, 1))

    fetch = fetch_response()
    assert encode_response(1, 1, 12, fetch) == reference_encode_fetch_v12(1, fetch)
    results.append(measure("encode FetchResponse v12 4x16KiB", lambda: encode_response(1, 1, 12, fetch),
                           lambda: reference_encode_fetch_v12(1, fetch), seconds, rounds))
    metadata = metadata_response()
    assert encode_response(1, 3, 12, metadata) == reference_encode_metadata_v12(1, metadata)
    results.append(measure("encode MetadataResponse v12 10x10", lambda: encode_response(1, 3, 12, metadata),
                           lambda: reference_encode_metadata_v12(1, metadata), seconds, rounds))
    return results


def print_table(results: list[Result]) -> None:
    print(f"{'operation':52} {'ops/s':>10} {'us/op':>8} {'ref ops/s':>10} {'ratio':>6}")
    for r in results:
        ref_rate = f"{1 / r.reference_seconds_per_op:10.0f}" if r.reference_seconds_per_op else " " * 10
        ratio = f"{r.ratio:6.2f}" if r.ratio is not None else ""
        print(f"{r.name:52} {1 / r.seconds_per_op:10.0f} {r.seconds_per_op * 1e6:8.2f} {ref_rate} {ratio}")
    print("ratio = hand-written reference time / kop time (goal for ProduceRequest decode: >= 0.4)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wire_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0.3, help="time per measurement round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is kept")
    args = parser.parse_args(argv)
    print_table(run(args.seconds, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
