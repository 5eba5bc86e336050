"""Transactions whose partitions live on several brokers: the coordinator writes the markers it
owns and sends WriteTxnMarkers to the owners of the rest; read_committed consumers see exactly
the committed records."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from kop.cluster.placement import designated_owner
from tests.cluster.harness import ClusterUnderTest, wait_for
from tests.integration.raw import RawConnection
from wire.generated.error_codes import ErrorCode
from wire.messages import WriteTxnMarkersRequest

TOPIC, PARTITIONS = "payments", 6
BROKERS = (1, 2, 3)


def read_values(bootstrap: str, isolation: str, expected: int) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                         "enable.auto.commit": False, "isolation.level": isolation,
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    values: list[str] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while len(at_end) < PARTITIONS or len(values) < expected:
            assert time.monotonic() < deadline, f"read {sorted(values)} only"
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                at_end.add(message.partition())
                continue
            values.append(message.value().decode())
    finally:
        consumer.close()
    return values


def write_markers(address: str, topic: str, partition: int) -> int:
    """The error code a broker gives a WriteTxnMarkers for one partition."""
    connection = RawConnection(address)
    try:
        response = connection.call(27, 1, WriteTxnMarkersRequest(markers=[
            WriteTxnMarkersRequest.WritableTxnMarker(
                producer_id=999, producer_epoch=0, transaction_result=False,
                topics=[WriteTxnMarkersRequest.WritableTxnMarkerTopic(
                    name=topic, partition_indexes=[partition])],
                coordinator_epoch=0)]))
    finally:
        connection.close()
    return response.markers[0].topics[0].partitions[0].error_code


def test_transactions_across_brokers(tmp_path, zookeeper_server):
    cluster = ClusterUnderTest(tmp_path, zookeeper_server.unique_url("/txn")).start()
    try:
        cluster.create_topic(TOPIC, PARTITIONS)
        designated = {p: designated_owner(TOPIC, p, BROKERS) for p in range(PARTITIONS)}
        assert len(set(designated.values())) == 3  # the transaction spans every broker
        wait_for(lambda: cluster.leaders(TOPIC) == designated, 60, "partitions settled")
        bootstrap = cluster.bootstrap()

        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "pay-1"})
        producer.init_transactions(30)
        for outcome in ("commit", "abort", "commit2"):
            producer.begin_transaction()
            for partition in range(PARTITIONS):
                producer.produce(TOPIC, value=f"{outcome}-{partition}".encode(),
                                 partition=partition)
            if outcome == "abort":
                assert producer.flush(30) == 0  # stored, so the abort must hide them
                producer.abort_transaction(30)
            else:
                producer.commit_transaction(30)

        committed = read_values(bootstrap, "read_committed", 2 * PARTITIONS)
        assert sorted(committed) == sorted(f"{o}-{p}" for o in ("commit", "commit2")
                                           for p in range(PARTITIONS))
        everything = read_values(bootstrap, "read_uncommitted", 3 * PARTITIONS)
        assert len(everything) == 3 * PARTITIONS  # the aborted records are there, hidden

        # The receiving side on its own: only the owner writes a partition's marker.
        owner = designated[0]
        other = next(b for b in BROKERS if b != owner)
        assert write_markers(cluster.brokers[other].address, TOPIC, 0) == \
            ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert write_markers(cluster.brokers[owner].address, "no-such-topic", 0) == \
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert write_markers(cluster.brokers[owner].address, TOPIC, 0) == ErrorCode.NONE
    finally:
        cluster.close()
