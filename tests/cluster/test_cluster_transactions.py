"""Transactions whose partitions live on several brokers: the coordinator writes the markers it
owns and sends WriteTxnMarkers to the owners of the rest; read_committed consumers see exactly
the committed records. A consume-transform-produce loop whose group coordinator is another
broker than its transaction coordinator: offsets sent in a transaction count once it commits
(a marker for the group's offsets partition, sent to the group coordinator), and not after an
abort."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from kop.cluster.placement import designated_owner
from kop.groups import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC, coordinator_partition
from kop.groups.placement import DEFAULT_OFFSETS_PARTITIONS, DEFAULT_TRANSACTION_STATE_PARTITIONS
from tests.cluster.harness import ClusterUnderTest, wait_for
from tests.integration.raw import RawConnection
from wire.generated.error_codes import ErrorCode
from wire.messages import FindCoordinatorRequest, WriteTxnMarkersRequest

TOPIC, PARTITIONS = "payments", 6
INPUT, OUTPUT, STREAM_PARTITIONS = "orders-in", "orders-out", 3
BROKERS = (1, 2, 3)
GROUP_KEY, TRANSACTION_KEY = 0, 1
FIND_COORDINATOR_KEY, FIND_COORDINATOR_VERSION = 10, 3
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, zookeeper_server):
    cluster = ClusterUnderTest(tmp_path_factory.mktemp("txn"),
                               zookeeper_server.unique_url("/txn")).start()
    try:
        yield cluster
    finally:
        cluster.close()


def read_values(bootstrap: str, isolation: str, expected: int, topic: str = TOPIC,
                partitions: int = PARTITIONS) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                         "enable.auto.commit": False, "isolation.level": isolation,
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values: list[str] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while len(at_end) < partitions or len(values) < expected:
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


def test_transactions_across_brokers(cluster):
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


# -- consume-transform-produce ----------------------------------------------------------------------


def designated_coordinator(topic: str, key: str, partitions: int) -> int:
    return designated_owner(topic, coordinator_partition(key, partitions), BROKERS)


def ids_coordinated_apart() -> tuple[str, str, int, int]:
    """A group id and a transactional id whose coordinators are different brokers: (group,
    transactional id, group coordinator, transaction coordinator)."""
    for n in range(1000):
        group, transactional_id = f"transformers-{n}", f"transformer-{n}"
        group_coordinator = designated_coordinator(OFFSETS_TOPIC, group,
                                                   DEFAULT_OFFSETS_PARTITIONS)
        transaction_coordinator = designated_coordinator(
            TRANSACTION_STATE_TOPIC, transactional_id, DEFAULT_TRANSACTION_STATE_PARTITIONS)
        if group_coordinator != transaction_coordinator:
            return group, transactional_id, group_coordinator, transaction_coordinator
    raise AssertionError("no such pair of ids")


def find_coordinator(address: str, key: str, key_type: int) -> int | None:
    """The coordinator FindCoordinator names (None while it answers an error)."""
    connection = RawConnection(address)
    try:
        response = connection.call(FIND_COORDINATOR_KEY, FIND_COORDINATOR_VERSION,
                                   FindCoordinatorRequest(key=key, key_type=key_type))
    finally:
        connection.close()
    return response.node_id if response.error_code == ErrorCode.NONE else None


def poll_records(consumer: Consumer, count: int) -> list[Message]:
    records: list[Message] = []
    deadline = time.monotonic() + 60
    while len(records) < count:
        assert time.monotonic() < deadline, f"consumed {len(records)} of {count} records"
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            records.append(message)
    return records


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offsets on the input topic, read as stable offsets (a
    read_committed client asks with require_stable: pending transactional offsets would be
    refused as unstable, not answered)."""
    checker = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                        "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        answered = checker.committed(
            [TopicPartition(INPUT, p) for p in range(STREAM_PARTITIONS)], timeout=30)
    finally:
        checker.close()
    return {tp.partition: tp.offset for tp in answered}


def produce_inputs(bootstrap: str, first: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for n in range(first, first + count):
        producer.produce(INPUT, value=f"in-{n}".encode(), partition=n % STREAM_PARTITIONS)
    assert producer.flush(30) == 0


def test_transactional_offsets_with_the_group_coordinated_elsewhere(cluster):
    group, transactional_id, group_coordinator, transaction_coordinator = \
        ids_coordinated_apart()
    for topic in (INPUT, OUTPUT):
        cluster.create_topic(topic, STREAM_PARTITIONS)
    address = cluster.brokers[BROKERS[0]].address
    wait_for(lambda: find_coordinator(address, group, GROUP_KEY) == group_coordinator
             and find_coordinator(address, transactional_id, TRANSACTION_KEY)
             == transaction_coordinator, 60, "both coordinators in place")
    bootstrap = cluster.bootstrap()
    produce_inputs(bootstrap, 0, 30)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "session.timeout.ms": 6000,
                         "heartbeat.interval.ms": 500})
    consumer.subscribe([INPUT])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id})
    producer.init_transactions(30)

    def transform(count: int, commit: bool) -> None:
        records = poll_records(consumer, count)
        producer.begin_transaction()
        for record in records:
            producer.produce(OUTPUT, value=b"out-" + record.value(),
                             partition=record.partition())
        positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    try:
        transform(30, commit=True)
        expected = dict.fromkeys(range(STREAM_PARTITIONS), 10)
        assert committed_offsets(bootstrap, group) == expected

        produce_inputs(bootstrap, 30, 9)
        transform(9, commit=False)
        assert committed_offsets(bootstrap, group) == expected  # the abort dropped them
    finally:
        consumer.close()

    outputs = read_values(bootstrap, "read_committed", 30, OUTPUT, STREAM_PARTITIONS)
    assert sorted(outputs) == sorted(f"out-in-{n}" for n in range(30))


def test_a_transaction_outlives_its_coordinator(cluster):
    """The transaction coordinator is SIGKILLed mid-transaction: another broker claims its
    __transaction_state partition, loads the open transaction, and the commit completes."""
    topic, transactional_id = "survivals", "survivor-1"
    coordinator = designated_coordinator(TRANSACTION_STATE_TOPIC, transactional_id,
                                         DEFAULT_TRANSACTION_STATE_PARTITIONS)
    survivor = next(b for b in BROKERS if b != coordinator)
    cluster.create_topic(topic, STREAM_PARTITIONS)
    wait_for(lambda: find_coordinator(cluster.brokers[survivor].address, transactional_id,
                                      TRANSACTION_KEY) == coordinator, 60, "the coordinator")
    producer = Producer({"bootstrap.servers": cluster.bootstrap(),
                         "transactional.id": transactional_id})
    producer.init_transactions(30)
    producer.begin_transaction()
    for partition in range(STREAM_PARTITIONS):
        producer.produce(topic, value=f"kept-{partition}".encode(), partition=partition)
    assert producer.flush(30) == 0

    cluster.brokers[coordinator].kill()
    producer.commit_transaction(90)  # finds the new coordinator once the old one's session ends

    state_partition = coordinator_partition(transactional_id,
                                            DEFAULT_TRANSACTION_STATE_PARTITIONS)
    successor = find_coordinator(cluster.brokers[survivor].address, transactional_id,
                                 TRANSACTION_KEY)
    assert successor in BROKERS and successor != coordinator
    assert (f"coordinating the transactional ids of {TRANSACTION_STATE_TOPIC}-{state_partition}"
            in cluster.log_of(successor))
    committed = read_values(cluster.bootstrap(), "read_committed", STREAM_PARTITIONS, topic,
                            STREAM_PARTITIONS)
    assert sorted(committed) == [f"kept-{p}" for p in range(STREAM_PARTITIONS)]

    cluster.brokers[coordinator].start()  # the module's cluster is whole again for others
    wait_for(lambda: coordinator in cluster.live_broker_ids(), 60, "the broker back")
