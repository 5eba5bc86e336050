"""Produce and consume through kop standalone with unmodified clients."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaPythonPartition

from tests.integration.clients import confluent_consume, confluent_produce

RECORDS = [
    {"key": b"k1", "value": b"v1", "headers": [("h1", b"x"), ("h2", b"")], "timestamp": 1_700_000_000_001},
    {"key": None, "value": b"no key", "timestamp": 1_700_000_000_002},
    {"key": b"tombstone", "value": None, "timestamp": 1_700_000_000_003},
    {"key": b"k4", "value": b"\x00\xff" * 100, "headers": [("h", None)], "timestamp": 1_700_000_000_004},
]


def _expected(records):
    return [(r.get("key"), r.get("value"), tuple(r.get("headers", ())), r["timestamp"])
            for r in records]


def test_confluent_round_trip_keeps_keys_headers_timestamps_and_nulls(bootstrap: str) -> None:
    confluent_produce(bootstrap, "rt-confluent", RECORDS, **{"enable.idempotence": True})
    consumed = confluent_consume(bootstrap, "rt-confluent", [0], len(RECORDS))
    assert [c.offset for c in consumed] == [0, 1, 2, 3]
    assert [(c.key, c.value, c.headers, c.timestamp) for c in consumed] == _expected(RECORDS)


def test_kafka_python_round_trip(bootstrap: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for record in RECORDS:
        producer.send("rt-kafka-python", key=record.get("key"), value=record.get("value"),
                      headers=[(k, v if v is not None else b"") for k, v in record.get("headers", [])],
                      timestamp_ms=record["timestamp"]).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=5000)
    partition = KafkaPythonPartition("rt-kafka-python", 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    consumed = list(consumer)
    consumer.close()
    assert [m.offset for m in consumed] == [0, 1, 2, 3]
    assert [(m.key, m.value, m.timestamp) for m in consumed] == [
        (r.get("key"), r.get("value"), r["timestamp"]) for r in RECORDS]
    assert consumed[0].headers == [("h1", b"x"), ("h2", b"")]


def test_aiokafka_round_trip(bootstrap: str) -> None:
    async def scenario():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for record in RECORDS:
                await producer.send_and_wait(
                    "rt-aiokafka", key=record.get("key"), value=record.get("value"),
                    headers=[(k, v or b"") for k, v in record.get("headers", [])],
                    timestamp_ms=record["timestamp"])
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("rt-aiokafka", bootstrap_servers=bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        consumed = []
        try:
            while len(consumed) < len(RECORDS):
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
                for messages in batch.values():
                    consumed.extend(messages)
        finally:
            await consumer.stop()
        return consumed

    consumed = asyncio.run(scenario())
    assert [(m.offset, m.key, m.value, m.timestamp) for m in consumed] == [
        (i, r.get("key"), r.get("value"), r["timestamp"]) for i, r in enumerate(RECORDS)]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_every_compression_codec_round_trips(bootstrap: str, codec: str) -> None:
    topic = f"codec-{codec}"
    records = [{"key": b"%d" % i, "value": b"payload %d " % i * 20} for i in range(500)]
    confluent_produce(bootstrap, topic, records, **{"compression.type": codec})
    consumed = confluent_consume(bootstrap, topic, [0], len(records))
    assert [(c.key, c.value) for c in consumed] == [(r["key"], r["value"]) for r in records]
    assert [c.offset for c in consumed] == list(range(len(records)))

    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec)
    producer.send(topic, b"from kafka-python").get(timeout=30)
    producer.close()
    last = confluent_consume(bootstrap, topic, [0], len(records) + 1)[-1]
    assert (last.offset, last.value) == (len(records), b"from kafka-python")


def test_one_mib_messages_and_the_max_message_bytes_boundary(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    limit = 1024 * 1024 + 200
    admin.create_topics([NewTopic("big", 1, 1, config={"max.message.bytes": str(limit)})])[
        "big"].result(30)
    payload = bytes(range(256)) * 4096  # 1 MiB
    confluent_produce(bootstrap, "big", [{"value": payload}],
                      **{"message.max.bytes": 4 * 1024 * 1024})
    [consumed] = confluent_consume(bootstrap, "big", [0], 1,
                                   **{"fetch.max.bytes": 2 * 1024 * 1024})
    assert consumed.value == payload

    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 4 * 1024 * 1024,
                         "retries": 0})
    errors = []
    producer.produce("big", value=payload + b"x" * 1024,
                     on_delivery=lambda error, message: errors.append(error))
    producer.flush(30)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].name() == "MSG_SIZE_TOO_LARGE"


def test_six_partitions_keep_per_partition_order(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("ordered", 6, 1)])["ordered"].result(30)
    per_partition = 10_000
    records = [{"partition": p, "value": b"%d:%d" % (p, i)}
               for i in range(per_partition) for p in range(6)]
    confluent_produce(bootstrap, "ordered", records, **{"enable.idempotence": True})
    consumed = confluent_consume(bootstrap, "ordered", list(range(6)), len(records),
                                 timeout=120)
    for partition in range(6):
        mine = [c for c in consumed if c.partition == partition]
        assert [c.offset for c in mine] == list(range(per_partition))
        assert [c.value for c in mine] == [b"%d:%d" % (partition, i) for i in range(per_partition)]


def test_offsets_for_times(bootstrap: str) -> None:
    base = 1_800_000_000_000
    records = [{"value": b"%d" % i, "timestamp": base + i * 1000} for i in range(20)]
    confluent_produce(bootstrap, "times", records)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "times"})
    try:
        wanted = [TopicPartition("times", 0, base + 5500), TopicPartition("times", 0, base),
                  TopicPartition("times", 0, base + 10**9)]
        found = [consumer.offsets_for_times([tp], timeout=30)[0].offset for tp in wanted]
        low, high = consumer.get_watermark_offsets(TopicPartition("times", 0), timeout=30)
    finally:
        consumer.close()
    assert found == [6, 0, -1]
    assert (low, high) == (0, 20)


def test_kcat_reads_what_python_clients_wrote(bootstrap: str) -> None:
    confluent_produce(bootstrap, "cross", [{"key": b"a", "value": b"from confluent"}])
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send("cross", key=b"b", value=b"from kafka-python").get(timeout=30)
    producer.close()
    out = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", "cross", "-e", "-f", "%k=%s\\n"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.splitlines() == ["a=from confluent", "b=from kafka-python"]
