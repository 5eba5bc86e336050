"""A consumer group of real clients from three libraries over six partitions: members joining,
leaving cleanly and being SIGKILLed each rebalance the group so that every partition has
exactly one owner, and no record is skipped."""

from __future__ import annotations

import time

from test_groups_workers import (  # noqa: F401  (the *_fixture names are fixtures)
    create_topic,
    described_group,
    group_kop_fixture,
    produce,
    wait_for,
    wait_for_balanced_group,
    wait_until_consumed,
    workers_fixture,
)

PARTITIONS = 6


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([request])[group].result(30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def test_a_mixed_group_rebalances_on_join_leave_and_kill_without_skipping(group_kop, workers) -> None:
    bootstrap, topic, group = group_kop.address, "events", "mixed"
    create_topic(bootstrap, topic, PARTITIONS)
    produced: list[str] = []

    def produce_batch(name: str) -> None:
        values = [f"{name}-{n}" for n in range(36)]
        produce(bootstrap, topic, values, PARTITIONS)
        produced.extend(values)

    python = workers("kafka-python", bootstrap, topic, group, "kafka-python")
    aio = workers("aiokafka", bootstrap, topic, group, "aiokafka")
    members = [python, aio]
    wait_for_balanced_group(bootstrap, group, members, PARTITIONS)
    produce_batch("two-members")
    wait_until_consumed(members, produced)

    # A member joins while records are waiting.
    produce_batch("before-join")
    confluent = workers("confluent", bootstrap, topic, group, "confluent")
    members.append(confluent)
    wait_for_balanced_group(bootstrap, group, members, PARTITIONS)
    wait_until_consumed(members, produced)

    # A member leaves cleanly.
    produce_batch("before-leave")
    python.stop()
    wait_for_balanced_group(bootstrap, group, [aio, confluent], PARTITIONS)
    everyone = [python, aio, confluent]
    wait_until_consumed(everyone, produced)

    # A member dies (SIGKILL): the group notices when its session times out.
    replacement = workers("kafka-python", bootstrap, topic, group, "kafka-python-2")
    wait_for_balanced_group(bootstrap, group, [aio, confluent, replacement], PARTITIONS)
    everyone.append(replacement)
    produce_batch("before-kill")
    confluent.kill()
    wait_for_balanced_group(bootstrap, group, [aio, replacement], PARTITIONS)
    produce_batch("after-kill")
    wait_until_consumed(everyone, produced)

    # Every record was consumed by someone, and the group committed up to the end.
    consumed = {c.value for w in everyone for c in w.consumed()}
    assert set(produced) <= consumed
    end = len(produced) // PARTITIONS
    wait_for(lambda: committed_offsets(bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), end),
             30, "the group to commit every partition up to its end")


def test_a_join_does_not_wait_for_session_timeouts(group_kop, workers) -> None:
    """PITFALL 6: with librdkafka's default 45 s session timeout, a member joining a stable
    group is assigned as soon as the members rejoin, not after half the session timeout."""
    bootstrap, topic, group = group_kop.address, "quick", "quick"
    create_topic(bootstrap, topic, PARTITIONS)
    first = workers("confluent", bootstrap, topic, group, "first", session_ms=45_000)
    wait_for_balanced_group(bootstrap, group, [first], PARTITIONS, timeout=10)
    started = time.monotonic()
    second = workers("confluent", bootstrap, topic, group, "second", session_ms=45_000)
    wait_for_balanced_group(bootstrap, group, [first, second], PARTITIONS, timeout=15)
    assert time.monotonic() - started < 15
    state, members = described_group(bootstrap, group)
    assert state == "STABLE" and len(members) == 2
