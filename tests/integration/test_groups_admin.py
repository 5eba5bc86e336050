"""Group administration through the clients' admin APIs (confluent-kafka AdminClient, kafka-python
KafkaAdminClient, aiokafka AIOKafkaAdminClient): listing, describing, committed offsets and
lag (committed vs log end), resetting an inactive group's offsets, deleting offsets and
groups — matching what was produced and committed."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from test_groups_workers import (  # noqa: F401  (the *_fixture names are fixtures)
    create_topic,
    group_kop_fixture,
    produce,
    wait_for,
)

TOPIC, GROUP = "ledger", "accounts"
PARTITIONS, PER_PARTITION = 3, 10
COMMITTED = {0: 4, 1: 7, 2: 10}


def member(bootstrap: str, group: str = GROUP) -> tuple[Consumer, list[tuple[int, int]]]:
    """A group member holding all partitions, once assigned; and the (partition, offset) of
    records it received while waiting for that."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000})
    assigned: list = []
    received: list[tuple[int, int]] = []
    consumer.subscribe([TOPIC], on_assign=lambda c, parts: assigned.extend(parts))

    def poll_until_assigned() -> bool:
        message = consumer.poll(0.1)
        if message is not None and not message.error():
            received.append((message.partition(), message.offset()))
        return bool(assigned)

    wait_for(poll_until_assigned, 30, "the member's assignment")
    return consumer, received


@pytest.fixture
def committed_group(group_kop) -> str:
    """A topic with 10 records per partition and an inactive group that committed
    COMMITTED (with metadata) as a member; returns the bootstrap address."""
    bootstrap = group_kop.address
    create_topic(bootstrap, TOPIC, PARTITIONS)
    produce(bootstrap, TOPIC, [f"entry-{n}" for n in range(PARTITIONS * PER_PARTITION)], PARTITIONS)
    consumer, _ = member(bootstrap)
    consumer.commit(offsets=[TopicPartition(TOPIC, p, o, metadata=f"m{p}")
                             for p, o in COMMITTED.items()], asynchronous=False)
    consumer.close()
    return bootstrap


def group_offsets(admin: AdminClient, group: str = GROUP) -> dict[int, int]:
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def test_confluent_admin_lists_describes_and_measures_lag(committed_group) -> None:
    admin = AdminClient({"bootstrap.servers": committed_group})
    listed = admin.list_consumer_groups().result(30)
    (listing,) = [g for g in listed.valid if g.group_id == GROUP]
    assert listing.state == ConsumerGroupState.EMPTY and not listing.is_simple_consumer_group
    empty_only = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(30)
    assert GROUP not in [g.group_id for g in empty_only.valid]

    description = admin.describe_consumer_groups([GROUP])[GROUP].result(30)
    assert (description.state, description.members) == (ConsumerGroupState.EMPTY, [])

    # OffsetFetch with topics = null (every committed partition), metadata returned.
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(GROUP)])[GROUP].result(30)
    assert {(tp.partition, tp.offset, tp.metadata) for tp in result.topic_partitions} == {
        (p, o, f"m{p}") for p, o in COMMITTED.items()}

    ends = admin.list_offsets({TopicPartition(TOPIC, p): OffsetSpec.latest()
                               for p in range(PARTITIONS)})
    log_end = {tp.partition: future.result(30).offset for tp, future in ends.items()}
    lag = {p: log_end[p] - o for p, o in group_offsets(admin).items()}
    assert lag == {0: 6, 1: 3, 2: 0}


def test_confluent_admin_resets_an_inactive_group_and_refuses_an_active_one(committed_group) -> None:
    bootstrap = committed_group
    admin = AdminClient({"bootstrap.servers": bootstrap})
    reset = ConsumerGroupTopicPartitions(GROUP, [TopicPartition(TOPIC, 0, 0),
                                                 TopicPartition(TOPIC, 1, 10)])
    admin.alter_consumer_group_offsets([reset])[GROUP].result(30)
    assert group_offsets(admin) == {0: 0, 1: 10, 2: 10}

    # A member resumes from the reset offsets: all of partition 0 again, nothing else.
    consumer, values = member(bootstrap)

    def read_ten() -> bool:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            values.append((message.partition(), message.offset()))
        return len(values) >= PER_PARTITION

    wait_for(read_ten, 30, "ten records")
    assert values == [(0, n) for n in range(PER_PARTITION)]
    assert consumer.poll(0.5) is None

    # While it is a member, the group can be neither reset nor deleted.
    busy = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        GROUP, [TopicPartition(TOPIC, 0, 5)])])[GROUP].result(30)
    assert [tp.error.code() for tp in busy.topic_partitions] == [KafkaError.UNKNOWN_MEMBER_ID]
    with pytest.raises(KafkaException, match="NON_EMPTY_GROUP"):
        admin.delete_consumer_groups([GROUP])[GROUP].result(30)
    consumer.close()

    admin.delete_consumer_groups([GROUP])[GROUP].result(30)
    assert GROUP not in [g.group_id for g in admin.list_consumer_groups().result(30).valid]
    assert set(group_offsets(admin).values()) <= {-1001}  # nothing committed any more


def test_kafka_python_admin(committed_group) -> None:
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTopicPartition
    from kafka.admin import OffsetSpec as KOffsetSpec
    from kafka.structs import OffsetAndMetadata

    admin = KafkaAdminClient(bootstrap_servers=committed_group)
    try:
        listed = admin.list_groups()
        assert {(g["group_id"], g["group_state"]) for g in listed} >= {(GROUP, "Empty")}
        assert [g["group_id"] for g in admin.list_groups(states_filter=["Stable"])] == []
        described = admin.describe_groups([GROUP])[GROUP]
        assert (described["group_state"], described["protocol_type"], described["members"]) == (
            "Empty", "consumer", [])

        offsets = admin.list_group_offsets({GROUP: None})[GROUP]
        # librdkafka stores metadata strings with their C terminator; kop keeps what it got.
        assert {tp.partition: (om.offset, om.metadata) for tp, om in offsets.items()} == {
            p: (o, f"m{p}\x00") for p, o in COMMITTED.items()}
        ends = admin.list_partition_offsets({KTopicPartition(TOPIC, p): KOffsetSpec.LATEST
                                             for p in range(PARTITIONS)})
        assert {tp.partition: PER_PARTITION - offsets[tp].offset for tp in ends} == {0: 6, 1: 3, 2: 0}
        assert {ot.offset for ot in ends.values()} == {PER_PARTITION}

        tp0, tp1 = KTopicPartition(TOPIC, 0), KTopicPartition(TOPIC, 1)
        reset = admin.reset_group_offsets(GROUP, {tp0: KOffsetSpec.EARLIEST})
        assert reset[tp0]["offset"] == 0
        admin.alter_group_offsets(GROUP, {tp1: OffsetAndMetadata(2, "by hand", -1)})
        offsets = admin.list_group_offsets({GROUP: None})[GROUP]
        assert {tp.partition: o.offset for tp, o in offsets.items()} == {0: 0, 1: 2, 2: 10}
        assert offsets[tp1].metadata == "by hand"

        deleted = admin.delete_group_offsets(GROUP, [tp0])
        assert deleted[tp0].errno == 0
        assert tp0 not in admin.list_group_offsets({GROUP: None})[GROUP]
        admin.delete_groups([GROUP])
        assert GROUP not in [g["group_id"] for g in admin.list_groups()]
    finally:
        admin.close()


def test_aiokafka_admin(committed_group) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    async def inspect():
        admin = AIOKafkaAdminClient(bootstrap_servers=committed_group)
        await admin.start()
        try:
            listed = await admin.list_consumer_groups()
            described = await admin.describe_consumer_groups([GROUP])
            offsets = await admin.list_consumer_group_offsets(GROUP)
            return listed, described, offsets
        finally:
            await admin.close()

    listed, described, offsets = asyncio.run(inspect())
    assert (GROUP, "consumer") in listed
    ((error, group_id, state, protocol_type, protocol, members),) = described[0].groups
    assert (error, group_id, state, protocol_type, members) == (0, GROUP, "Empty", "consumer", [])
    assert {tp.partition: om.offset for tp, om in offsets.items()} == COMMITTED
