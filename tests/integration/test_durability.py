"""Restarts and kill -9: nothing acknowledged is lost, nothing idempotent is stored twice."""

from __future__ import annotations

import threading

from confluent_kafka import Producer
from kafka import KafkaProducer

from tests.integration.clients import confluent_consume, confluent_produce, wait_until
from tests.integration.raw import replay_last_batch


def test_sigkill_during_acks_all_production_loses_and_duplicates_nothing(kop) -> None:
    bootstrap = kop.address
    total = 20_000
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 2, "message.timeout.ms": 120_000,
                         "reconnect.backoff.max.ms": 200})
    acknowledged: list[int] = []
    failures: list[object] = []
    lock = threading.Lock()

    def on_delivery(error, message) -> None:
        with lock:
            if error:
                failures.append(error)
            else:
                acknowledged.append(int(message.key()))

    def produce_all() -> None:
        for i in range(total):
            while True:
                try:
                    producer.produce("durable", key=b"%d" % i, value=b"value-%d" % i,
                                     on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        producer.flush(120)

    writer = threading.Thread(target=produce_all)
    writer.start()
    wait_until(lambda: len(acknowledged) >= 3000, timeout=60, message="first acks")
    kop.kill()
    acked_before_kill = len(acknowledged)
    kop.start()
    writer.join(180)
    assert not writer.is_alive()
    assert not failures, failures[:3]
    assert sorted(acknowledged) == list(range(total))

    consumed = confluent_consume(bootstrap, "durable", [0], total, timeout=120)
    keys = [int(c.key) for c in consumed]
    assert len(keys) == total, f"{len(keys)} consumed, acked before kill: {acked_before_kill}"
    assert sorted(keys) == list(range(total)), "a record was lost or stored twice"
    assert [c.offset for c in consumed] == list(range(total))
    assert keys == sorted(keys), "the idempotent producer's order was not kept"


def test_data_topics_and_offsets_survive_a_clean_restart(kop) -> None:
    confluent_produce(kop.address, "kept", [{"value": b"%d" % i} for i in range(100)])
    assert kop.stop() == 0
    kop.start()
    confluent_produce(kop.address, "kept", [{"value": b"after"}])
    consumed = confluent_consume(kop.address, "kept", [0], 101)
    assert [c.offset for c in consumed] == list(range(101))
    assert consumed[-1].value == b"after"


def test_idempotent_producer_state_survives_restart(kop) -> None:
    """A retry of a batch that was stored before a restart is not stored again."""
    producer = KafkaProducer(bootstrap_servers=kop.address, enable_idempotence=True,
                             acks="all", max_in_flight_requests_per_connection=1)
    first = producer.send("idem", b"before").get(timeout=30)
    kop.kill()
    kop.start()
    second = producer.send("idem", b"after").get(timeout=60)
    producer.close()
    assert (first.offset, second.offset) == (0, 1)

    # Replay the stored batch by hand: same producer id, epoch and sequence as "before".
    offset = replay_last_batch(kop.address, "idem", 0, index=0)
    assert offset == 0, "a duplicate of the first batch must be acknowledged with offset 0"
    consumed = confluent_consume(kop.address, "idem", [0], 2)
    assert [c.value for c in consumed] == [b"before", b"after"]
