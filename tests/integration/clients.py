"""Small helpers over real Kafka clients for integration tests (no behaviour of their own)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int


def confluent_produce(bootstrap: str, topic: str, records: list[dict], **config) -> list:
    """Produce with confluent-kafka, waiting for every delivery; returns delivered messages."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    delivered, failed = [], []

    def on_delivery(error, message) -> None:
        (failed if error else delivered).append(error or message)

    for record in records:
        producer.produce(topic, on_delivery=on_delivery, **record)
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert not failed, f"delivery failed: {failed[:3]}"
    return delivered


def confluent_consume(bootstrap: str, topic: str, partitions: list[int], expected: int,
                      timeout: float = 60.0, **config) -> list[Consumed]:
    """Read `expected` records from the beginning of the given partitions."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", **config})
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    consumed: list[Consumed] = []
    deadline = time.monotonic() + timeout
    try:
        while len(consumed) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consume error: {message.error()}")
            consumed.append(Consumed(message.partition(), message.offset(), message.key(),
                                     message.value(), tuple(message.headers() or ()),
                                     message.timestamp()[1]))
    finally:
        consumer.close()
    return consumed


def wait_until(condition, timeout: float = 30.0, interval: float = 0.05, message: str = "") -> None:
    """Poll `condition()` until true (tests never sleep a fixed time to synchronise)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {message}")
        time.sleep(interval)
