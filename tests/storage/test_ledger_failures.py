"""A writer facing failures: ensemble changes, waiting for nodes, fencing (in-memory fakes)."""

from __future__ import annotations

import pytest
from test_ledger_fakes import Cluster, failure_of, has_fired, result_of
from twisted.internet import defer

from storage.ledger import (
    EntryTooLargeError,
    LedgerClosedError,
    LedgerError,
    LedgerFencedError,
    LedgerMetadata,
    LedgerState,
    NoSuchLedgerError,
    NotEnoughNodesError,
    Segment,
    WriteHandle,
)
from storage.ledger.ledger_store import ledger_path
from storage.node import errors as node_errors


def stored_metadata(cluster: Cluster, ledger_id: int) -> LedgerMetadata:
    return LedgerMetadata.from_json(cluster.store.nodes[ledger_path(ledger_id)].value)


def spare_node(cluster: Cluster, writer: WriteHandle) -> str:
    (spare,) = set(cluster.nodes) - set(writer.metadata.current_ensemble.nodes)
    return spare


def test_a_failed_node_is_replaced_and_appends_go_on():
    cluster = Cluster(4)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    for i in range(5):
        result_of(writer.append(b"%d" % i))
    old = writer.metadata.current_ensemble.nodes
    spare = spare_node(cluster, writer)
    cluster.node(old[1]).down = True
    appended = [writer.append(b"%d" % i) for i in range(5, 12)]
    assert [result_of(a) for a in appended] == list(range(5, 12))
    metadata = stored_metadata(cluster, writer.ledger_id)
    # Entry 5 (indexes 2, 0) completed; entry 6 (indexes 0, 1) hit the failed node.
    assert metadata.ensembles == (Segment(0, old), Segment(6, (old[0], spare, old[2])))
    assert writer.metadata == metadata
    # The replacement holds its share of the new entries; reads find everything.
    assert set(cluster.node(spare).stored_ids(writer.ledger_id)) == {
        e for e in range(6, 12) if 1 in ((e % 3), (e + 1) % 3)
    }
    result_of(writer.close())
    cluster.node(old[1]).down = False
    reader = result_of(cluster.client().open_ledger(writer.ledger_id))
    cluster.node(old[1]).entries.clear()  # the old node's copies are not needed any more
    assert result_of(reader.read(0, 11)) == [b"%d" % i for i in range(12)]


def test_acks_of_a_replaced_node_stop_counting_and_its_entries_go_to_the_replacement():
    cluster = Cluster(3)
    writer = result_of(cluster.client().create_ledger(2, 2, 2))
    a, b = writer.metadata.current_ensemble.nodes
    spare = spare_node(cluster, writer)
    cluster.node(a).hold_acks = cluster.node(spare).hold_acks = True
    entry0 = writer.append(b"zero")  # b acks at once, a holds its ack
    assert cluster.node(b).stored_ids(writer.ledger_id) == [0]
    cluster.node(b).down = True
    entry1 = writer.append(b"one")  # b fails: replaced from LAC + 1 = entry 0 on
    assert stored_metadata(cluster, writer.ledger_id).ensembles == (Segment(0, (a, spare)),)
    assert cluster.node(spare).stored_ids(writer.ledger_id) == [0, 1]
    # b's ack of entry 0 no longer counts: the metadata now says `spare` holds entry 0.
    cluster.node(a).release_acks()
    assert not has_fired(entry0)
    cluster.node(spare).release_acks()
    assert (result_of(entry0), result_of(entry1)) == (0, 1)


def test_completions_wait_while_an_ensemble_change_is_being_recorded():
    cluster = Cluster(4)
    writer = result_of(cluster.client().create_ledger(3, 3, 2))
    a, b, c = writer.metadata.current_ensemble.nodes
    cluster.node(a).hold_acks = cluster.node(c).hold_acks = True
    entry0 = writer.append(b"zero")  # b acks at once
    cluster.node(b).down = True
    cluster.store.hold_sets = True
    entry1 = writer.append(b"one")  # b fails: the ensemble change is recorded slowly
    assert len(cluster.store.held_sets) == 1
    cluster.node(a).release_acks()
    # a + b make Qa for entry 0, but the change will say entry 0 lives on a, spare, c:
    # completing now would count an ack from a node the metadata no longer lists.
    assert not has_fired(entry0)
    cluster.store.release_sets()  # spare gets entries 0 and 1 and acks at once
    assert (result_of(entry0), result_of(entry1)) == (0, 1)


def test_without_a_spare_node_the_writer_waits_for_the_failed_node_to_come_back():
    cluster = Cluster(3)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    ensemble = writer.metadata.current_ensemble.nodes
    failed = cluster.node(ensemble[0])
    failed.down = True
    appended = [writer.append(b"%d" % i) for i in range(4)]  # entry 1 avoids index 0
    assert not any(has_fired(a) for a in appended)
    cluster.clock.advance(5)  # still down: retries keep failing, nothing is lost
    assert not any(has_fired(a) for a in appended)
    failed.down = False
    cluster.clock.advance(1)
    assert [result_of(a) for a in appended] == [0, 1, 2, 3]
    assert failed.stored_ids(writer.ledger_id) == [0, 2, 3]
    # No ensemble change was needed: the same node is back.
    assert stored_metadata(cluster, writer.ledger_id).ensembles == (Segment(0, ensemble),)


def test_two_failures_with_one_spare_replace_one_node_and_wait_for_the_other():
    cluster = Cluster(4)
    writer = result_of(cluster.client().create_ledger(3, 3, 2))
    a, b, c = writer.metadata.current_ensemble.nodes
    spare = spare_node(cluster, writer)
    cluster.node(b).down = cluster.node(c).down = True
    appended = [writer.append(b"%d" % i) for i in range(4)]
    assert [result_of(x) for x in appended] == [0, 1, 2, 3]  # a + the spare make Qa = 2
    (segment,) = writer.metadata.ensembles
    assert segment.nodes in ((a, spare, c), (a, b, spare))
    waiting_for = c if segment.nodes[1] == spare else b
    cluster.node(waiting_for).down = False
    cluster.clock.advance(2)  # the writer probes it and finds it back
    # Entries that completed without it stay at Qa copies (as in BookKeeper); new ones
    # reach it again.
    assert result_of(writer.append(b"4")) == 4
    assert cluster.node(waiting_for).stored_ids(writer.ledger_id) == [4]
    assert writer.metadata.ensembles == (segment,)


def test_with_write_quorum_above_ack_quorum_appends_go_on_while_a_node_is_down():
    cluster = Cluster(3)
    writer = result_of(cluster.client().create_ledger(3, 3, 2))
    cluster.node(writer.metadata.current_ensemble.nodes[2]).down = True
    assert [result_of(writer.append(b"%d" % i)) for i in range(6)] == list(range(6))


def test_appends_fail_when_no_node_comes_back_in_time_and_close_still_seals():
    cluster = Cluster(3, node_wait_timeout=10)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    result_of(writer.append(b"kept"))
    cluster.node(writer.metadata.current_ensemble.nodes[1]).down = True
    stuck = writer.append(b"lost")  # entry 1: write set indexes 1 and 2
    cluster.clock.pump([1.0] * 9)
    assert not has_fired(stuck)
    cluster.clock.pump([1.0] * 3)
    error = failure_of(stuck, NotEnoughNodesError)
    assert "unavailable for 10 s" in str(error)
    failure_of(writer.append(b"later"), NotEnoughNodesError)
    result_of(writer.close())
    metadata = stored_metadata(cluster, writer.ledger_id)
    assert (metadata.state, metadata.last_entry_id, metadata.length) == (
        LedgerState.CLOSED, 0, 4
    )


def test_a_node_reporting_the_ledger_fenced_fails_every_pending_and_later_append():
    cluster = Cluster(3)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    result_of(writer.append(b"ok"))
    a, b, c = (cluster.node(n) for n in writer.metadata.current_ensemble.nodes)
    a.hold_acks = b.hold_acks = c.hold_acks = True
    pending = [writer.append(b"%d" % i) for i in range(3)]
    c.fenced.add(writer.ledger_id)
    late = writer.append(b"3")  # entry 4: write set (1, 2) → c refuses
    for appending in [*pending, late]:
        failure_of(appending, LedgerFencedError)
    failure_of(writer.append(b"again"), LedgerFencedError)
    for node in (a, b):
        node.release_acks()  # late acks change nothing
    assert writer.last_add_confirmed == 0


def test_a_lost_metadata_race_during_an_ensemble_change_means_fenced():
    cluster = Cluster(4)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    result_of(writer.append(b"ok"))

    def recovery_starts(path: str, value: bytes) -> None:
        cluster.store.before_set = None
        current = stored_metadata(cluster, writer.ledger_id)
        cluster.store.nodes[path] = type(cluster.store.nodes[path])(
            current.__class__.to_json(_with_state(current, LedgerState.IN_RECOVERY)),
            cluster.store.nodes[path].version + 1,
        )

    cluster.store.before_set = recovery_starts
    cluster.node(writer.metadata.current_ensemble.nodes[1]).down = True
    failure_of(writer.append(b"x"), LedgerFencedError)  # entry 1 → indexes 1, 2
    failure_of(writer.append(b"y"), LedgerFencedError)
    failure_of(writer.close(), LedgerFencedError)
    assert stored_metadata(cluster, writer.ledger_id).state is LedgerState.IN_RECOVERY


def _with_state(metadata: LedgerMetadata, state: LedgerState) -> LedgerMetadata:
    from dataclasses import replace

    return replace(metadata, state=state)


def test_close_after_someone_else_recovered_the_ledger_is_fenced():
    cluster = Cluster(3)
    client = cluster.client()
    writer = result_of(client.create_ledger(3, 2, 2))
    result_of(writer.append(b"a"))
    result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))  # recovery by a new owner
    failure_of(writer.append(b"b"), LedgerFencedError)
    error = failure_of(writer.close(), LedgerFencedError)
    assert "recovered" in str(error) or "fenced" in str(error)


def test_close_is_accepted_when_a_recovery_sealed_the_same_last_entry():
    cluster = Cluster(3)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    for payload in (b"a", b"b"):
        result_of(writer.append(payload))
    result_of(writer.append(b"c"))  # LAC on the nodes is 1; the writer knows 2
    recovered = result_of(cluster.client(seed=1).open_ledger(writer.ledger_id))
    assert recovered.last_add_confirmed == 2
    result_of(writer.close())
    assert writer.metadata.is_closed and writer.metadata.last_entry_id == 2


def test_metadata_store_errors_during_repair_fail_the_writer_clearly():
    cluster = Cluster(4)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))

    def store_breaks(path: str, value: bytes) -> None:
        raise RuntimeError("store on fire")

    cluster.store.before_set = store_breaks
    cluster.node(writer.metadata.current_ensemble.nodes[1]).down = True
    error = failure_of(writer.append(b"x"), LedgerError)
    assert "store on fire" in str(error)
    failure_of(writer.append(b"y"), LedgerError)


def test_an_oversized_entry_is_refused_without_harming_the_ledger():
    cluster = Cluster(1, max_entry_bytes=10)
    writer = result_of(cluster.client().create_ledger(1, 1, 1))
    error = failure_of(writer.append(b"x" * 11), EntryTooLargeError)
    assert "11 bytes exceeds the 10-byte limit" in str(error)
    assert result_of(writer.append(b"x" * 10)) == 0
    assert result_of(writer.read(0, 0)) == [b"x" * 10]


@pytest.mark.parametrize("node_error, expected, message", [
    (node_errors.InvalidRequestError("entry id is negative"), LedgerError, "is negative"),
    (node_errors.NoSuchLedgerError("deleted"), NoSuchLedgerError, "deleted on n"),
])
def test_errors_about_the_request_fail_the_writer_instead_of_replacing_nodes(
    node_error, expected, message
):
    cluster = Cluster(4)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    ensemble = writer.metadata.current_ensemble.nodes
    cluster.node(ensemble[0]).add_entry = lambda *args, **kwargs: defer.fail(node_error)
    error = failure_of(writer.append(b"x"), expected)
    assert message in str(error)
    assert writer.metadata.ensembles == (Segment(0, ensemble),)  # nobody was blamed
    failure_of(writer.append(b"y"), expected)


def test_appends_after_close_started_are_refused():
    cluster = Cluster(1)
    writer = result_of(cluster.client().create_ledger(1, 1, 1))
    node = cluster.node(writer.metadata.current_ensemble.nodes[0])
    node.hold_acks = True
    first = writer.append(b"a")
    closing = writer.close()
    failure_of(writer.append(b"b"), LedgerClosedError)
    node.release_acks()
    assert result_of(first) == 0
    result_of(closing)


def test_a_crash_losing_in_flight_acks_is_repaired_by_resending():
    cluster = Cluster(3)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    nodes = [cluster.node(n) for n in writer.metadata.current_ensemble.nodes]
    nodes[0].hold_acks = True
    appended = [writer.append(b"%d" % i) for i in range(3)]
    nodes[0].crash()  # in-flight adds to it fail; no spare node exists
    nodes[0].down = False  # ... and it restarts at once
    nodes[0].hold_acks = False
    cluster.clock.advance(1)
    assert [result_of(a) for a in appended] == [0, 1, 2]
