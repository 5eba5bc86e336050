"""Committed offsets and group state survive kop restarts, including SIGKILL: consumers started
again resume exactly at their committed offsets, and members that kept running through a
kop crash carry on without losing or skipping records."""

from __future__ import annotations

from test_groups_rebalance import committed_offsets
from test_groups_workers import (  # noqa: F401  (the *_fixture names are fixtures)
    CLIENTS,
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


def test_consumers_resume_at_their_committed_offsets_after_kop_is_killed(group_kop, workers) -> None:
    bootstrap, topic, group = group_kop.address, "payments", "billing"
    create_topic(bootstrap, topic, PARTITIONS)
    first_batch = [f"first-{n}" for n in range(60)]
    produce(bootstrap, topic, first_batch, PARTITIONS)
    members = [workers(client, bootstrap, topic, group, f"{client}-1") for client in CLIENTS]
    wait_until_consumed(members, first_batch)
    wait_for(lambda: committed_offsets(bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), 10),
             30, "every partition committed to its end")
    for member in members:
        member.stop()

    group_kop.kill()  # SIGKILL: nothing is flushed or saved on the way out
    bootstrap = group_kop.start()
    assert described_group(bootstrap, group)[0] == "EMPTY"
    assert committed_offsets(bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), 10)

    second_batch = [f"second-{n}" for n in range(60)]
    produce(bootstrap, topic, second_batch, PARTITIONS)
    restarted = [workers(client, bootstrap, topic, group, f"{client}-2") for client in CLIENTS]
    wait_until_consumed(restarted, second_batch)
    consumed = [c.value for w in restarted for c in w.consumed()]
    assert not set(consumed) & set(first_batch), "records before the committed offsets came again"
    assert sorted(consumed) == sorted(second_batch)


def test_a_running_group_carries_on_through_a_kop_crash(group_kop, workers) -> None:
    bootstrap, topic, group = group_kop.address, "clicks", "counters"
    create_topic(bootstrap, topic, PARTITIONS)
    members = [workers(client, bootstrap, topic, group, client) for client in CLIENTS]
    wait_for_balanced_group(bootstrap, group, members, PARTITIONS)
    before = [f"before-{n}" for n in range(60)]
    produce(bootstrap, topic, before, PARTITIONS)
    wait_until_consumed(members, before)

    group_kop.kill()
    bootstrap = group_kop.start()
    # The group was reloaded from storage: its members and assignment are there.
    state, assignment = described_group(bootstrap, group)
    assert state == "STABLE" and len(assignment) == 3
    after = [f"after-{n}" for n in range(60)]
    produce(bootstrap, topic, after, PARTITIONS)
    wait_until_consumed(members, after)
    wait_for_balanced_group(bootstrap, group, members, PARTITIONS)
    wait_for(lambda: committed_offsets(bootstrap, group, topic) == dict.fromkeys(range(PARTITIONS), 20),
             30, "every partition committed to its end")
