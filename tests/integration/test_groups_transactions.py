"""Offsets sent inside transactions (consume-transform-produce) by real transactional producers:
they become the group's committed offsets when the transaction commits, and are dropped when
it aborts."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from test_groups_workers import (  # noqa: F401  (the *_fixture names are fixtures)
    create_topic,
    group_kop_fixture,
    produce,
    wait_for,
)

SOURCE, SINK, PARTITIONS = "source", "sink", 2


def committed(bootstrap: str, group: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(SOURCE, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([request], require_stable=True)[group].result(30)
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def confluent_transactions(bootstrap: str, group: str, steps: list[tuple[dict[int, int], bool]]) -> None:
    """A member of `group` whose transactional producer sends the member's offsets."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "session.timeout.ms": 6000})
    assigned: list = []
    consumer.subscribe([SOURCE], on_assign=lambda c, parts: assigned.extend(parts))
    wait_for(lambda: consumer.poll(0.1) is None and bool(assigned), 30, "an assignment")
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{group}-tx"})
    producer.init_transactions(30)
    for offsets, commit in steps:
        producer.begin_transaction()
        producer.produce(SINK, b"derived")
        producer.send_offsets_to_transaction(
            [TopicPartition(SOURCE, p, o) for p, o in offsets.items()],
            consumer.consumer_group_metadata(), 30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    consumer.close()


def kafka_python_transactions(bootstrap: str, group: str, steps: list[tuple[dict[int, int], bool]]) -> None:
    from kafka import KafkaProducer
    from kafka import TopicPartition as KTopicPartition
    from kafka.structs import OffsetAndMetadata

    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{group}-tx")
    producer.init_transactions()
    for offsets, commit in steps:
        producer.begin_transaction()
        producer.send(SINK, b"derived")
        producer.send_offsets_to_transaction(
            {KTopicPartition(SOURCE, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()},
            group)
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    producer.close()


def aiokafka_transactions(bootstrap: str, group: str, steps: list[tuple[dict[int, int], bool]]) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import OffsetAndMetadata
    from aiokafka.structs import TopicPartition as ATopicPartition

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{group}-tx")
        await producer.start()
        try:
            for offsets, commit in steps:
                await producer.begin_transaction()
                await producer.send_and_wait(SINK, b"derived")
                await producer.send_offsets_to_transaction(
                    {ATopicPartition(SOURCE, p): OffsetAndMetadata(o, "") for p, o in offsets.items()},
                    group)
                if commit:
                    await producer.commit_transaction()
                else:
                    await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(run())


@pytest.mark.parametrize("run_transactions", [confluent_transactions, kafka_python_transactions,
                                              aiokafka_transactions],
                         ids=["confluent", "kafka-python", "aiokafka"])
def test_offsets_sent_in_a_transaction_commit_and_abort_with_it(group_kop, run_transactions) -> None:
    bootstrap = group_kop.address
    create_topic(bootstrap, SOURCE, PARTITIONS)
    create_topic(bootstrap, SINK, 1)
    produce(bootstrap, SOURCE, [f"v{n}" for n in range(20)], PARTITIONS)
    run_transactions(bootstrap, "etl", [({0: 3, 1: 4}, True), ({0: 9, 1: 9}, False)])
    assert committed(bootstrap, "etl") == {0: 3, 1: 4}

    # A member of the group resumes from there.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "etl",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.subscribe([SOURCE])
    positions: list[tuple[int, int]] = []

    def read_all() -> bool:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            positions.append((message.partition(), message.offset()))
        return len(positions) >= 20 - 7

    wait_for(read_all, 30, "the records after the committed offsets")
    consumer.close()
    assert min(o for p, o in positions if p == 0) == 3
    assert min(o for p, o in positions if p == 1) == 4
