"""Transactional producers: commit, abort, fencing and read_committed consumers."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import KafkaException, Producer
from kafka import KafkaProducer

from tests.integration.clients import confluent_consume


def _transactional(bootstrap: str, transactional_id: str, **config) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                         **config})
    producer.init_transactions(30)
    return producer


def test_read_committed_sees_committed_records_only(bootstrap: str) -> None:
    producer = _transactional(bootstrap, "tx-basic")
    producer.begin_transaction()
    producer.produce("tx", key=b"c1", value=b"committed 1")
    producer.produce("tx", key=b"c2", value=b"committed 2")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce("tx", key=b"a1", value=b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce("tx", key=b"c3", value=b"committed 3")
    producer.commit_transaction(30)

    # offsets: c1 c2 [commit] a1 [abort] c3 [commit]
    committed = confluent_consume(bootstrap, "tx", [0], 3, **{"isolation.level": "read_committed"})
    assert [(c.offset, c.key) for c in committed] == [(0, b"c1"), (1, b"c2"), (5, b"c3")]
    uncommitted = confluent_consume(bootstrap, "tx", [0], 4,
                                    **{"isolation.level": "read_uncommitted"})
    assert [c.key for c in uncommitted] == [b"c1", b"c2", b"a1", b"c3"]


def test_an_open_transaction_holds_back_read_committed_consumers(bootstrap: str) -> None:
    producer = _transactional(bootstrap, "tx-open")
    producer.begin_transaction()
    producer.produce("tx-open", value=b"pending")
    producer.flush(30)
    plain = Producer({"bootstrap.servers": bootstrap})
    plain.produce("tx-open", value=b"after the open transaction")
    plain.flush(30)
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lso",
                         "isolation.level": "read_committed"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition("tx-open", 0), timeout=30)
        assert (low, high) == (0, 0)  # the last stable offset stops at the open transaction
    finally:
        consumer.close()
    producer.commit_transaction(30)
    committed = confluent_consume(bootstrap, "tx-open", [0], 2,
                                  **{"isolation.level": "read_committed"})
    assert [c.value for c in committed] == [b"pending", b"after the open transaction"]


def test_a_new_producer_with_the_same_id_fences_the_old_one(bootstrap: str) -> None:
    old = _transactional(bootstrap, "tx-fence")
    old.begin_transaction()
    old.produce("tx-fence", value=b"zombie")
    old.flush(30)
    new = _transactional(bootstrap, "tx-fence")  # aborts the zombie's open transaction
    new.begin_transaction()
    new.produce("tx-fence", value=b"fresh")
    new.commit_transaction(30)
    with pytest.raises(KafkaException):
        old.commit_transaction(30)
    committed = confluent_consume(bootstrap, "tx-fence", [0], 1,
                                  **{"isolation.level": "read_committed"})
    assert [c.value for c in committed] == [b"fresh"]


def test_transaction_timeout_above_the_maximum_is_refused(bootstrap: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "tx-long",
                         "transaction.timeout.ms": 3_600_000})
    with pytest.raises(KafkaException) as raised:
        producer.init_transactions(30)
    assert "INVALID_TRANSACTION_TIMEOUT" in str(raised.value)


def test_kafka_python_and_aiokafka_transactions(bootstrap: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="tx-kp")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send("tx-python", b"kafka-python committed")
    producer.commit_transaction()
    producer.begin_transaction()
    producer.send("tx-python", b"kafka-python aborted")
    producer.abort_transaction()
    producer.close()

    async def scenario() -> list[bytes]:
        aio = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="tx-aio")
        await aio.start()
        try:
            async with aio.transaction():
                await aio.send_and_wait("tx-python", b"aiokafka committed")
            await aio.begin_transaction()
            await aio.send_and_wait("tx-python", b"aiokafka aborted")
            await aio.abort_transaction()
        finally:
            await aio.stop()
        consumer = AIOKafkaConsumer("tx-python", bootstrap_servers=bootstrap,
                                    isolation_level="read_committed",
                                    auto_offset_reset="earliest")
        await consumer.start()
        values: list[bytes] = []
        try:
            while len(values) < 2:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
                for messages in batch.values():
                    values.extend(m.value for m in messages)
        finally:
            await consumer.stop()
        return values

    assert asyncio.run(scenario()) == [b"kafka-python committed", b"aiokafka committed"]
