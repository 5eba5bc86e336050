"""open_ledger(recovery=True): fencing, deciding the last entry, re-replication, closing —
and, over random runs, that no acknowledged entry is ever lost (in-memory fakes)."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_fakes import Cluster, failure_of, result_of

from storage.ledger import (
    LedgerFencedError,
    LedgerMetadata,
    LedgerRecoveryError,
    LedgerState,
    NoSuchLedgerError,
    Segment,
    WriteHandle,
)
from storage.ledger.ledger_store import ledger_path
from storage.metadata.api import Versioned


def stored(cluster: Cluster, ledger_id: int) -> tuple[LedgerMetadata, int]:
    found = cluster.store.nodes[ledger_path(ledger_id)]
    return LedgerMetadata.from_json(found.value), found.version


def writer_with(cluster: Cluster, payloads: list[bytes], sizes=(3, 2, 2)) -> WriteHandle:
    writer = result_of(cluster.client().create_ledger(*sizes))
    for payload in payloads:
        result_of(writer.append(payload))
    return writer


def test_recovery_keeps_every_acknowledged_entry_and_fences_the_old_writer():
    cluster = Cluster(3)
    payloads = [b"entry-%d" % i for i in range(10)]
    writer = writer_with(cluster, payloads)
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == 9
    assert result_of(recovered.read(0, 9)) == payloads
    metadata, _ = stored(cluster, writer.ledger_id)
    assert metadata.state is LedgerState.CLOSED
    assert (metadata.last_entry_id, metadata.length) == (9, sum(map(len, payloads)))
    failure_of(writer.append(b"too late"), LedgerFencedError)
    assert all(writer.ledger_id in node.fenced for node in cluster.nodes.values())


def test_an_entry_found_on_one_replica_is_re_replicated_to_its_whole_write_set():
    cluster = Cluster(3)
    # Qa=1: one replica may have acknowledged it, so it must be kept. (With Qw=Qa=2 a
    # single miss proves it was never acknowledged, and either outcome would be right.)
    writer = writer_with(cluster, [b"a", b"b"], sizes=(3, 2, 1))
    ensemble = writer.metadata.current_ensemble.nodes
    # The writer crashed after one replica of entry 2 (write set indexes 2, 0) stored it.
    cluster.plant(writer.ledger_id, 2, 3, b"c", ensemble[2])
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == 2
    assert result_of(recovered.read(0, 2)) == [b"a", b"b", b"c"]
    assert (writer.ledger_id, 2) in cluster.node(ensemble[0]).entries
    re_adds = [r for r in cluster.node(ensemble[0]).adds if r.entry_id == 2]
    assert re_adds and all(r.recovery for r in re_adds)
    assert stored(cluster, writer.ledger_id)[0].length == 3


def test_with_qw_equal_qa_one_missing_replica_proves_an_entry_was_never_acknowledged():
    cluster = Cluster(3)
    writer = writer_with(cluster, [b"a", b"b"])  # E=3 Qw=2 Qa=2
    ensemble = writer.metadata.current_ensemble.nodes
    cluster.plant(writer.ledger_id, 2, 3, b"c", ensemble[0])  # ensemble[2] lacks it
    cluster.node(ensemble[0]).down = True  # only the miss can answer
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == 1


def test_recovery_stops_at_the_first_entry_no_replica_has():
    cluster = Cluster(3)
    writer = writer_with(cluster, [b"a", b"b"], sizes=(3, 2, 1))
    ensemble = writer.metadata.current_ensemble.nodes
    cluster.plant(writer.ledger_id, 2, 3, b"c", ensemble[0])
    cluster.plant(writer.ledger_id, 3, 4, b"d", ensemble[0])  # write set (0, 1)
    cluster.plant(writer.ledger_id, 5, 6, b"f", ensemble[2])  # after a hole: never acked
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == 3
    assert result_of(recovered.read(0, 3)) == [b"a", b"b", b"c", b"d"]


def test_recovering_a_ledger_that_never_got_an_entry_closes_it_empty():
    cluster = Cluster(3)
    writer = writer_with(cluster, [])
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == -1
    metadata, _ = stored(cluster, writer.ledger_id)
    assert (metadata.state, metadata.last_entry_id, metadata.length) == (
        LedgerState.CLOSED, -1, 0
    )
    failure_of(writer.append(b"late"), LedgerFencedError)


def test_recovering_a_closed_ledger_changes_nothing():
    cluster = Cluster(3)
    writer = writer_with(cluster, [b"a"])
    result_of(writer.close())
    _, version = stored(cluster, writer.ledger_id)
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == 0
    assert stored(cluster, writer.ledger_id)[1] == version
    assert not any(node.fenced for node in cluster.nodes.values())


def test_recovery_of_a_missing_ledger_says_so():
    failure_of(Cluster(1).client().open_ledger(42), NoSuchLedgerError)


def test_recovery_fails_cleanly_when_too_few_nodes_can_be_fenced_and_succeeds_later():
    cluster = Cluster(3)
    writer = writer_with(cluster, [b"a", b"b", b"c"])
    ensemble = writer.metadata.current_ensemble.nodes
    for address in ensemble[:2]:
        cluster.node(address).down = True
    error = failure_of(cluster.client(seed=1).open_ledger(writer.ledger_id), LedgerRecoveryError)
    assert "could be fenced" in str(error)
    assert stored(cluster, writer.ledger_id)[0].state is LedgerState.IN_RECOVERY
    for address in ensemble[:2]:
        cluster.node(address).down = False
    recovered = result_of(cluster.client(seed=2).open_ledger(writer.ledger_id))
    assert result_of(recovered.read(0, 2)) == [b"a", b"b", b"c"]


def test_one_node_down_is_enough_to_fence_and_the_old_writer_cannot_reach_its_quorum():
    cluster = Cluster(3)
    writer = writer_with(cluster, [b"a", b"b"])
    ensemble = writer.metadata.current_ensemble.nodes
    cluster.node(ensemble[0]).down = True  # not needed to re-replicate entry 1 (indexes 1, 2)
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == 1
    cluster.node(ensemble[0]).down = False  # back, and never fenced ...
    failure_of(writer.append(b"c"), LedgerFencedError)  # ... but its partner in entry 2 is


def test_re_replication_waits_for_a_needed_node_and_gives_up_after_the_timeout():
    cluster = Cluster(3, node_wait_timeout=10)
    writer = writer_with(cluster, [b"a", b"b"])
    ensemble = writer.metadata.current_ensemble.nodes
    cluster.node(ensemble[1]).down = True  # entry 1 (indexes 1, 2) needs it back
    recovering = cluster.client(seed=1).open_ledger(writer.ledger_id)
    cluster.clock.pump([1.0] * 5)
    assert not recovering.called
    cluster.node(ensemble[1]).down = False
    cluster.clock.advance(1)
    assert result_of(recovering).last_add_confirmed == 1

    second = writer_with(cluster, [b"a", b"b"])
    cluster.node(second.metadata.current_ensemble.nodes[1]).down = True
    recovering = cluster.client(seed=2).open_ledger(second.ledger_id)
    cluster.clock.pump([1.0] * 12)
    error = failure_of(recovering, LedgerRecoveryError)
    assert "could not re-replicate" in str(error)
    assert stored(cluster, second.ledger_id)[0].state is LedgerState.IN_RECOVERY


def test_an_undecidable_entry_fails_recovery_until_replicas_can_answer():
    cluster = Cluster(3)
    writer = writer_with(cluster, [b"a"], sizes=(3, 3, 2))  # "absent" needs 2 misses
    n0, n1, n2 = writer.metadata.current_ensemble.nodes
    cluster.plant(writer.ledger_id, 1, 2, b"b", n1, n2)
    cluster.node(n1).corrupt.add((writer.ledger_id, 1))
    cluster.node(n2).down = True  # n0 lacks entry 1, n1's copy is damaged, n2 is down
    error = failure_of(cluster.client(seed=1).open_ledger(writer.ledger_id), LedgerRecoveryError)
    assert "cannot tell whether entry 1 was acknowledged" in str(error)
    cluster.node(n2).down = False
    recovered = result_of(cluster.client(seed=2).open_ledger(writer.ledger_id))
    assert result_of(recovered.read(0, 1)) == [b"a", b"b"]


def test_re_replication_replaces_a_down_node_during_recovery():
    cluster = Cluster(4)
    writer = writer_with(cluster, [b"a", b"b"])
    n0, n1, n2 = writer.metadata.current_ensemble.nodes
    (spare,) = set(cluster.nodes) - {n0, n1, n2}
    cluster.plant(writer.ledger_id, 2, 3, b"c", n2)  # write set (2, 0)
    cluster.node(n0).down = True
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == 2
    metadata, _ = stored(cluster, writer.ledger_id)
    # Entries 0 and 1 were confirmed; the recovery writer changed ensembles from entry 2 on.
    assert metadata.ensembles == (Segment(0, (n0, n1, n2)), Segment(2, (spare, n1, n2)))
    assert (writer.ledger_id, 2) in cluster.node(spare).entries
    assert result_of(recovered.read(0, 2)) == [b"a", b"b", b"c"]


def test_recovery_starts_no_earlier_than_the_last_ensemble_change():
    cluster = Cluster(4)
    writer = writer_with(cluster, [b"%d" % i for i in range(5)])
    old = writer.metadata.current_ensemble.nodes
    cluster.node(old[1]).down = True
    for i in range(5, 9):
        result_of(writer.append(b"%d" % i))
    # The replaced node stays down: entries before the change are read from their old
    # ensemble only for the length, entries after it from the new one.
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == 8
    assert result_of(recovered.read(0, 8)) == [b"%d" % i for i in range(9)]
    assert stored(cluster, writer.ledger_id)[0].length == 9


def test_a_recovery_left_half_done_is_finished_by_the_next_one():
    cluster = Cluster(3)
    writer = writer_with(cluster, [b"a", b"b"])
    metadata, version = stored(cluster, writer.ledger_id)
    cluster.store.nodes[ledger_path(writer.ledger_id)] = Versioned(
        replace(metadata, state=LedgerState.IN_RECOVERY).to_json(), version + 1
    )  # a recoverer marked it and died
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert result_of(recovered.read(0, 1)) == [b"a", b"b"]
    assert stored(cluster, writer.ledger_id)[0].state is LedgerState.CLOSED


def test_a_concurrent_recovery_that_closes_first_is_adopted():
    cluster = Cluster(3)
    writer = writer_with(cluster, [b"a", b"b", b"c"])
    rival = cluster.client(seed=7)

    def rival_recovers_first(path: str, value: bytes) -> None:
        if b'"CLOSED"' in value:  # our recovery is about to close the ledger
            cluster.store.before_set = None
            result_of(rival.open_ledger(writer.ledger_id))

    cluster.store.before_set = rival_recovers_first
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == 2
    assert result_of(recovered.read(0, 2)) == [b"a", b"b", b"c"]


def test_a_metadata_race_at_the_start_of_recovery_is_retried():
    cluster = Cluster(3)
    writer = writer_with(cluster, [b"a"])
    races = []

    def writer_changes_metadata(path: str, value: bytes) -> None:
        if not races:  # bump the version under our first compare-and-set
            races.append(path)
            current = cluster.store.nodes[path]
            cluster.store.nodes[path] = Versioned(current.value, current.version + 1)

    cluster.store.before_set = writer_changes_metadata
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert races and recovered.last_add_confirmed == 0


def test_recovery_gives_up_when_the_metadata_never_stops_changing():
    cluster = Cluster(3, recovery_attempts=3)
    writer = writer_with(cluster, [b"a"])

    def always_interfere(path: str, value: bytes) -> None:
        current = cluster.store.nodes[path]
        cluster.store.nodes[path] = Versioned(current.value, current.version + 1)

    cluster.store.before_set = always_interfere
    error = failure_of(cluster.client(seed=1).open_ledger(writer.ledger_id), LedgerRecoveryError)
    assert "3 recovery attempts" in str(error)


# -- model test: random interleavings of appends, acks, node crashes; then recovery ------


# Sizes are drawn rather than parametrized: pytest-twisted re-wraps a parametrized
# hypothesis test once per parameter and breaks. Derandomized, so every run checks the same
# examples (thousands of random ones passed when this was written).
@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    sizes=st.sampled_from([(3, 2, 2), (3, 3, 2), (2, 2, 1), (3, 2, 1), (4, 3, 3)]),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(5, 80),
)
def test_no_acknowledged_entry_is_ever_lost_by_recovery(sizes, seed, steps):
    rng = random.Random(seed)
    cluster = Cluster(5, node_wait_timeout=1000)
    writer = result_of(cluster.client(seed=seed).create_ledger(*sizes))
    for node in cluster.nodes.values():
        node.hold_acks = True
    acknowledged: dict[int, bytes] = {}

    def remember(entry_id: int, payload: bytes) -> None:
        acknowledged[entry_id] = payload

    crashed: set[str] = set()
    for step in range(steps):
        action = rng.random()
        if action < 0.45:
            payload = b"payload-%d-%d" % (seed, step)
            writer.append(payload).addCallbacks(remember, lambda _: None, (payload,))
        elif action < 0.85:
            node = cluster.node(rng.choice(sorted(cluster.nodes)))
            if node.held:
                node.release_acks(rng.choice(node.held)[1])
        elif action < 0.93 and len(crashed) < 1:
            victim = rng.choice(sorted(cluster.nodes))
            cluster.node(victim).crash()
            crashed.add(victim)
        elif crashed:
            cluster.node(crashed.pop()).down = False
        cluster.clock.advance(0.5)
    # The writer's process dies here; a new owner recovers. With Qa >= 2 a node may still be
    # down (Qa - 1 failures are tolerated); with Qa = 1 every node is needed to fence.
    if sizes[2] == 1:
        for address in crashed:
            cluster.node(address).down = False
    for node in cluster.nodes.values():
        node.hold_acks = False
    recovering = cluster.client(seed=seed + 1).open_ledger(writer.ledger_id)
    # Re-replication may wait for a node (fake time passes: suspicions expire, probes retry).
    for _ in range(200):
        if recovering.called:
            break
        cluster.clock.advance(0.5)
    recovered = result_of(recovering)
    last = recovered.last_add_confirmed
    entries = result_of(recovered.read(0, last)) if last >= 0 else []
    assert last >= max(acknowledged, default=-1)
    for entry_id, payload in acknowledged.items():
        assert entries[entry_id] == payload
    # Acks still in flight at the old writer change nothing: anything it completes now was
    # found by the recovery too.
    for node in cluster.nodes.values():
        node.release_acks()
    assert max(acknowledged, default=-1) <= last
    assert all(entries[e] == p for e, p in acknowledged.items())
