"""Static membership (group.instance.id) with real clients: a member that restarts within its
session timeout gets its partitions back, and the other members see no rebalance."""

from __future__ import annotations

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
SESSION_MS = 20_000  # long enough for a restart; no rebalance may happen meanwhile


def test_restarted_static_members_keep_their_partitions_without_a_rebalance(group_kop, workers) -> None:
    bootstrap, topic, group = group_kop.address, "inventory", "static"
    create_topic(bootstrap, topic, PARTITIONS)

    def member(client: str, instance: str, incarnation: int):
        return workers(client, bootstrap, topic, group, f"{instance}-{incarnation}",
                       instance_id=instance, session_ms=SESSION_MS)

    librdkafka = member("confluent", "librdkafka", 1)
    python = member("kafka-python", "python", 1)
    aio = member("aiokafka", "aio", 1)
    wait_for_balanced_group(bootstrap, group, [librdkafka, python, aio], PARTITIONS)
    owned = {w.name: w.assignment for w in (librdkafka, python, aio)}
    _, by_member_id = described_group(bootstrap, group)
    # The three processes may join further apart than the initial rebalance delay (a loaded
    # machine starts them slowly), and then the group forms over several generations. What
    # is checked here starts once it is balanced: from now on nobody may be reassigned.
    rebalances_before = {w.name: w.rebalances_seen() for w in (python, aio)}

    # Each member in turn crashes and comes back under its instance id.
    librdkafka.kill()
    librdkafka_again = member("confluent", "librdkafka", 2)
    wait_for(lambda: librdkafka_again.assignment == owned["librdkafka-1"], 30,
             "the restarted librdkafka member to get its partitions back")
    # A rebalance would have revoked the other members' partitions before the restarted one
    # could be assigned (eager protocol: every member revokes, then rejoins).
    assert python.rebalances_seen() == rebalances_before["python-1"]
    python.kill()
    python_again = member("kafka-python", "python", 2)
    wait_for(lambda: python_again.assignment == owned["python-1"], 30,
             "the restarted kafka-python member to get its partitions back")

    values = [f"item-{n}" for n in range(60)]
    produce(bootstrap, topic, values, PARTITIONS)
    wait_until_consumed([librdkafka_again, python_again, aio], values)
    # Nobody was reassigned: the member that stayed up throughout saw no assignment change.
    assert aio.rebalances_seen() == rebalances_before["aio-1"]
    state, after = described_group(bootstrap, group)
    assert state == "STABLE"
    assert sorted(map(sorted, after.values())) == sorted(map(sorted, by_member_id.values()))
    assert set(after) != set(by_member_id)  # same partitions, new member ids
