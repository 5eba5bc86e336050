"""A 3-broker, 3-storage-node cluster on a real ZooKeeper keeps every acknowledged record
exactly once, in order, and its consumer group's commits, while an idempotent acks=all
producer and a group member run through (a) a broker SIGKILL, (b) a storage node SIGKILL,
(c) a broker SIGSTOPped past its session timeout and resumed, (d) a broker joining.

(b) runs the default replication, E=3 Qw=2 Qa=2, with a fourth storage node, and goes on
until the brokers' auto-recovery has given every entry of every ledger its two copies again,
checked directly on the storage nodes.

After each run a checker (kafka-python) reads every partition end to end, and a new group
member (kafka-python) must start each partition exactly at the committed offset.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
import pytest_twisted
from twisted.internet import threads

from kop.cluster.placement import designated_owner
from kop.groups import OFFSETS_TOPIC, coordinator_partition
from kop.groups.placement import DEFAULT_OFFSETS_PARTITIONS
from tests.cluster.harness import (
    AUTO_RECOVERY,
    ClusterUnderTest,
    ParkedProduce,
    Workload,
    check_group_progress,
    check_group_resumes,
    check_log,
    produce_one_per_partition,
    read_partitions,
    wait_for,
)
from tests.cluster.replicas import StorageInspector, managed_ledger_of
from wire.generated.error_codes import ErrorCode

TOPIC, PARTITIONS = "events", 6
TOPIC_LEDGERS = f"public/default/persistent/{TOPIC}-partition-"  # their managed ledgers' names
SEGMENT_MS = 2000
FIRST_BROKERS = (1, 2, 3)
pytestmark = pytest.mark.timeout(240)


def designated_leaders(brokers: tuple[int, ...]) -> dict[int, int]:
    return {p: designated_owner(TOPIC, p, brokers) for p in range(PARTITIONS)}


def group_coordinated_by_a_data_owner() -> tuple[str, int]:
    """A group id whose coordinator (owner of its offsets partition) also owns data
    partitions, so losing that broker costs both (designations are deterministic)."""
    leaders = designated_leaders(FIRST_BROKERS).values()
    for n in range(1000):
        group = f"checkers-{n}"
        index = coordinator_partition(group, DEFAULT_OFFSETS_PARTITIONS)
        coordinator = designated_owner(OFFSETS_TOPIC, index, FIRST_BROKERS)
        if coordinator in leaders:
            return group, coordinator
    raise AssertionError("no such group id")


GROUP, COORDINATOR = group_coordinated_by_a_data_owner()


@pytest.fixture
def cluster(tmp_path, zookeeper_server):
    cluster = ClusterUnderTest(tmp_path, zookeeper_server.unique_url("/cluster")).start()
    try:
        cluster.create_topic(TOPIC, PARTITIONS)
        wait_for(lambda: cluster.leaders(TOPIC) == designated_leaders(FIRST_BROKERS), 60,
                 "every partition with its designated owner")
        yield cluster
    finally:
        cluster.close()


def run_through(cluster: ClusterUnderTest, disturb: Callable[[Workload], None]
                ) -> dict[int, dict[int, int]]:
    """Run the workload, disturb the cluster, check everything afterwards; returns what the
    partitions hold (partition -> {offset: seq})."""
    workload = Workload(cluster.bootstrap(), TOPIC, PARTITIONS, GROUP).start()
    try:
        workload.wait_for_acks(time.monotonic(), set(range(PARTITIONS)), 60)
        wait_for(lambda: len(workload.committed) == PARTITIONS, 60, "the first commits")
        disturb(workload)
        # Service goes on: new records on every partition, and the member keeps consuming.
        calm = time.monotonic()
        consumed = workload.consumed_count()
        workload.wait_for_acks(calm, set(range(PARTITIONS)), 60)
        wait_for(lambda: workload.consumed_count() > consumed + 100, 60, "consumption")
    finally:
        workload.stop()
    bootstrap = cluster.bootstrap()
    contents = read_partitions(bootstrap, TOPIC, PARTITIONS)
    check_log(workload, contents)
    check_group_progress(workload)
    produce_one_per_partition(bootstrap, TOPIC, PARTITIONS)
    check_group_resumes(bootstrap, workload)
    return contents


def partitions_of(cluster: ClusterUnderTest, broker_id: int) -> set[int]:
    owned = {p for p, leader in cluster.leaders(TOPIC).items() if leader == broker_id}
    assert owned, f"broker {broker_id} owns no partition of {TOPIC}"
    return owned


def test_broker_sigkill(cluster, record_property):
    def kill_the_coordinator(workload: Workload) -> None:
        assert cluster.group_coordinator(GROUP) == COORDINATOR
        orphaned = partitions_of(cluster, COORDINATOR)
        killed_at = time.monotonic()
        cluster.brokers[COORDINATOR].kill()
        first = workload.wait_for_acks(killed_at, orphaned, 60)
        takeover = max(first.values()) - killed_at
        record_property("takeover_seconds", round(takeover, 2))
        print(f"\ntakeover after SIGKILL of broker {COORDINATOR}: {takeover:.2f} s "
              f"(session timeout {cluster.session_timeout:g} s)")
        survivors = tuple(b for b in FIRST_BROKERS if b != COORDINATOR)
        wait_for(lambda: cluster.leaders(TOPIC) == designated_leaders(survivors), 30,
                 "the survivors owning everything")

    run_through(cluster, kill_the_coordinator)
    assert cluster.group_coordinator(GROUP) != COORDINATOR


@pytest.fixture
def cluster_with_a_spare_storage_node(tmp_path, zookeeper_server):
    """The brokers' default replication, E=3 Qw=2 Qa=2, on four storage nodes (a spare for
    ensemble changes); the topic's ledgers roll over every SEGMENT_MS, so ledgers that lost a
    copy get closed — and repaired — while clients go on."""
    cluster = ClusterUnderTest(tmp_path, zookeeper_server.unique_url("/cluster"),
                               replication=None).start(storage_nodes=4)
    try:
        cluster.create_topic(TOPIC, PARTITIONS, {"segment.ms": str(SEGMENT_MS)})
        wait_for(lambda: cluster.leaders(TOPIC) == designated_leaders(FIRST_BROKERS), 60,
                 "every partition with its designated owner")
        yield cluster
    finally:
        cluster.close()


@pytest_twisted.ensureDeferred
async def test_storage_node_sigkill_then_re_replication(cluster_with_a_spare_storage_node,
                                                         record_property):
    # In a worker thread: the inspector needs the reactor running while the scenario waits.
    await threads.deferToThread(lose_a_storage_node_and_recover,
                                cluster_with_a_spare_storage_node, record_property)


def lose_a_storage_node_and_recover(cluster: ClusterUnderTest,
                                    record_property: Callable[[str, object], None]) -> None:
    lost = cluster.storage_nodes[0]
    inspector = StorageInspector.open(cluster.metadata_url)
    try:
        # One auditor, elected among the brokers (each of them is a re-replication worker).
        auditor = wait_for(inspector.auditor, 30, "an auditor")
        assert re.match(r"broker-[123]@", auditor), auditor
        def kill_a_storage_node(workload: Workload) -> None:
            topic_ledgers = {i: m for i, m in inspector.ledgers().items()
                             if managed_ledger_of(m).startswith(TOPIC_LEDGERS)}
            named = {i for i, m in topic_ledgers.items() if lost.address in m.all_nodes()}
            assert named, f"no ledger of {TOPIC} is on {lost.address}"
            killed_at = time.monotonic()
            lost.kill()
            # Every partition writes again once its ledger's ensemble replaced the lost node.
            workload.wait_for_acks(killed_at + 1.0, set(range(PARTITIONS)), 60)

            def named_ledgers_repaired() -> bool:
                ledgers = inspector.ledgers()
                return all(ledgers[i].is_closed and lost.address not in ledgers[i].all_nodes()
                           for i in named if i in ledgers)

            wait_for(named_ledgers_repaired, 60,
                     "the brokers' auto-recovery to repair the ledgers that rolled over")
            took = time.monotonic() - killed_at
            record_property("repaired_while_serving_seconds", round(took, 2))
            print(f"\n{len(named)} ledgers that lost a copy rolled over and were repaired "
                  f"{took:.2f} s after the storage node's SIGKILL (grace period "
                  f"{AUTO_RECOVERY.grace_period:g} s, ledgers roll every {SEGMENT_MS} ms)")

        contents = run_through(cluster, kill_a_storage_node)
        assert cluster.leaders(TOPIC) == designated_leaders(FIRST_BROKERS)  # no broker moved

        # Ledgers still open (offsets partitions, the topic's latest) are repaired once
        # closed: a graceful restart of the brokers closes every one of them.
        restarted_at = time.monotonic()
        cluster.restart_brokers()
        wait_for(lambda: not inspector.marked() and not any(
            lost.address in m.all_nodes() for m in inspector.ledgers().values()), 60,
            "no ledger left marked or naming the lost node")
        took = time.monotonic() - restarted_at
        record_property("repaired_after_restart_seconds", round(took, 2))
        print(f"every ledger repaired {took:.2f} s after the brokers' graceful restart began")
        # Read through the brokers again: every record still there, where it was (plus
        # the one per partition the resumed member's check added).
        again = read_partitions(cluster.bootstrap(), TOPIC, PARTITIONS)
        for partition, records in contents.items():
            assert {o: again[partition][o] for o in records} == records
            added = set(again[partition]) - set(records)
            assert [again[partition][o] for o in added] == [PARTITIONS * 10**9 + partition]

        # Sealed for good, every ledger must have its copies: check each on the nodes.
        for broker in cluster.brokers.values():
            assert broker.stop() == 0
        live = inspector.live_nodes()
        assert lost.address not in live and len(live) == 3
        ledgers = inspector.ledgers()
        assert {(m.ensemble_size, m.write_quorum, m.ack_quorum)
                for m in ledgers.values()} == {(3, 2, 2)}
        problems = [problem for metadata in ledgers.values()
                    for problem in inspector.copy_problems(metadata, live)]
        assert not problems, problems[:10]
        entries = sum(m.last_entry_id + 1 for m in ledgers.values())
        print(f"{len(ledgers)} ledgers, {entries} entries: each on its 2 live nodes, "
              "identical and intact")
    finally:
        inspector.close()


def test_broker_sigstop_past_its_session(cluster):
    parked: list[ParkedProduce] = []

    def freeze_then_thaw(workload: Workload) -> None:
        orphaned = partitions_of(cluster, COORDINATOR)
        parked.append(ParkedProduce(cluster.brokers[COORDINATOR].address, TOPIC,
                                    min(orphaned), PARTITIONS * 10**9 + min(orphaned)))
        frozen_at = time.monotonic()
        cluster.freeze(COORDINATOR)
        parked[0].send()  # waits in the frozen broker's socket
        wait_for(lambda: COORDINATOR not in cluster.live_broker_ids(), 60,
                 "the frozen broker's session to expire")
        workload.wait_for_acks(frozen_at, orphaned, 60)  # others took its partitions over
        cluster.thaw(COORDINATOR)
        wait_for(lambda: cluster.leaders(TOPIC) == designated_leaders(FIRST_BROKERS), 60,
                 "the resumed broker registered again, owning its share")

    contents = run_through(cluster, freeze_then_thaw)
    # On waking, the broker refused the request it found waiting — because its session lease
    # had lapsed, before trying storage (where fencing would have refused it too).
    answer = parked[0].answer()
    assert answer.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert "does not own" in answer.error_message
    assert parked[0].value not in contents[parked[0].partition].values()
    log = cluster.log_of(COORDINATOR)
    assert "session lease lapsed" in log
    assert "metadata session lost" in log
    assert re.search(r"broker \d+ registered at", log.split("metadata session lost")[1])


def test_broker_joins(cluster):
    def add_a_broker(workload: Workload) -> None:
        before = cluster.leaders(TOPIC)
        cluster.add_broker(4)
        everyone = (*FIRST_BROKERS, 4)
        wait_for(lambda: cluster.leaders(TOPIC) == designated_leaders(everyone), 60,
                 "the new broker owning its share")
        moved = {p for p, leader in cluster.leaders(TOPIC).items() if leader == 4}
        assert moved, "the new broker received partitions"
        workload.wait_for_acks(time.monotonic(), moved, 60)
        for partition in moved:
            old_owner = before[partition]
            assert f"handed {TOPIC}-{partition} off to broker 4" in cluster.log_of(old_owner)

    run_through(cluster, add_a_broker)


def test_broker_graceful_stop(cluster, record_property):
    def stop_the_coordinator(workload: Workload) -> None:
        handed_off = partitions_of(cluster, COORDINATOR)
        stopping_at = time.monotonic()
        assert cluster.brokers[COORDINATOR].stop() == 0
        first = workload.wait_for_acks(stopping_at, handed_off, 60)
        took = max(first.values()) - stopping_at
        record_property("handoff_seconds", round(took, 2))
        print(f"\nhand-off after SIGTERM of broker {COORDINATOR}: {took:.2f} s")
        log = cluster.log_of(COORDINATOR)
        for partition in handed_off:  # closed cleanly and released, not left to expire
            assert f"released {TOPIC}-{partition}" in log
        assert "released __consumer_offsets-" in log

    run_through(cluster, stop_the_coordinator)
    assert cluster.group_coordinator(GROUP) != COORDINATOR
