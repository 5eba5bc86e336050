"""LedgerClient, WriteHandle and ReadHandle against in-memory nodes and store: creating,
striping, in-order completion, reading with fail-over, closing, deleting, the node pool."""

from __future__ import annotations

import pytest
from test_ledger_fakes import Cluster, FakeNode, FakeStore, failure_of, has_fired, result_of
from twisted.internet import defer, task

from storage.ledger import (
    CorruptEntryError,
    EntryRangeError,
    LedgerClosedError,
    LedgerMetadata,
    LedgerMetadataError,
    LedgerReadError,
    LedgerState,
    NodePool,
    NoSuchEntryError,
    NoSuchLedgerError,
    NotEnoughNodesError,
)
from storage.ledger.ledger_store import ID_COUNTER_PATH, ledger_path


def stored_metadata(cluster: Cluster, ledger_id: int) -> LedgerMetadata:
    return LedgerMetadata.from_json(cluster.store.nodes[ledger_path(ledger_id)].value)


def test_create_ledger_records_metadata_with_distinct_ids_on_live_nodes():
    cluster = Cluster(4)
    client = cluster.client()
    first = result_of(client.create_ledger(3, 2, 2, custom={"topic": "t"}))
    second = result_of(client.create_ledger(1, 1, 1))
    assert (first.ledger_id, second.ledger_id) == (0, 1)
    metadata = stored_metadata(cluster, 0)
    assert metadata.state is LedgerState.OPEN
    assert (metadata.ensemble_size, metadata.write_quorum, metadata.ack_quorum) == (3, 2, 2)
    assert len(set(metadata.current_ensemble.nodes)) == 3
    assert set(metadata.current_ensemble.nodes) <= set(cluster.nodes)
    assert metadata.custom == {"topic": "t"}
    assert metadata.ctime > 0
    assert cluster.store.nodes[ID_COUNTER_PATH].value == b"2"


def test_create_ledger_needs_enough_live_nodes_and_sane_quorums():
    cluster = Cluster(2)
    client = cluster.client()
    failure_of(client.create_ledger(3, 2, 2), NotEnoughNodesError)
    failure_of(client.create_ledger(2, 3, 2), ValueError)
    failure_of(client.create_ledger(2, 2, 0), ValueError)
    assert ledger_path(0) not in cluster.store.nodes


def test_entries_are_striped_over_the_ensemble_with_the_lac_piggybacked():
    cluster = Cluster(3)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    ensemble = writer.metadata.current_ensemble.nodes
    ids = [result_of(writer.append(b"entry %d" % i)) for i in range(6)]
    assert ids == list(range(6))
    for entry_id in range(6):
        holders = {a for a, n in cluster.nodes.items() if (writer.ledger_id, entry_id) in n.entries}
        assert holders == {ensemble[entry_id % 3], ensemble[(entry_id + 1) % 3]}
    # Each add carries the LAC known when it was sent: the previous entry, acked in between.
    lacs = {(r.entry_id, r.last_add_confirmed) for n in cluster.nodes.values() for r in n.adds}
    assert lacs == {(e, e - 1) for e in range(6)}
    assert writer.last_add_confirmed == 5
    assert writer.length == sum(len(b"entry %d" % i) for i in range(6))


def test_appends_complete_in_entry_order_when_acks_arrive_out_of_order():
    cluster = Cluster(2)
    writer = result_of(cluster.client().create_ledger(2, 2, 2))
    first_node, second_node = (cluster.node(a) for a in writer.metadata.current_ensemble.nodes)
    first_node.hold_acks = second_node.hold_acks = True
    appends = [writer.append(b"%d" % i) for i in range(3)]
    order: list[int] = []
    for appending in appends:
        appending.addCallback(order.append)
    first_node.release_acks(2)
    second_node.release_acks(2)
    first_node.release_acks(1)
    second_node.release_acks(1)
    assert order == [] and writer.last_add_confirmed == -1  # entry 0 still lacks its quorum
    first_node.release_acks(0)
    assert order == []  # one ack of entry 0 is not Qa=2
    second_node.release_acks(0)
    assert order == [0, 1, 2]
    assert writer.last_add_confirmed == 2


def test_an_append_made_from_a_completion_callback_keeps_the_order():
    cluster = Cluster(1)
    writer = result_of(cluster.client().create_ledger(1, 1, 1))
    node = cluster.node(writer.metadata.current_ensemble.nodes[0])
    node.hold_acks = True
    order: list[int] = []
    chained: list[defer.Deferred[int]] = []

    def append_more(entry_id: int) -> None:
        order.append(entry_id)
        if entry_id == 0:
            node.hold_acks = False  # the next add is acked synchronously, inside this callback
            chained.append(writer.append(b"c").addCallback(order.append))

    writer.append(b"a").addCallback(append_more)
    writer.append(b"b").addCallback(order.append)
    node.release_acks()
    assert order == [0, 1, 2]
    assert result_of(chained[0]) is None


def test_close_seals_last_entry_and_length_then_refuses_appends():
    cluster = Cluster(3)
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    for payload in (b"abc", b"defg"):
        result_of(writer.append(payload))
    result_of(writer.close())
    metadata = stored_metadata(cluster, writer.ledger_id)
    assert metadata.state is LedgerState.CLOSED
    assert (metadata.last_entry_id, metadata.length) == (1, 7)
    failure_of(writer.append(b"late"), LedgerClosedError)
    result_of(writer.close())  # closing twice is harmless


def test_close_waits_for_pending_appends():
    cluster = Cluster(1)
    writer = result_of(cluster.client().create_ledger(1, 1, 1))
    node = cluster.node(writer.metadata.current_ensemble.nodes[0])
    node.hold_acks = True
    appending = writer.append(b"x")
    closing = writer.close()
    assert not has_fired(closing)
    assert stored_metadata(cluster, writer.ledger_id).state is LedgerState.OPEN
    node.release_acks()
    assert result_of(appending) == 0
    result_of(closing)
    assert stored_metadata(cluster, writer.ledger_id).last_entry_id == 0


def test_empty_ledger_closes_with_no_entries():
    cluster = Cluster(1)
    writer = result_of(cluster.client().create_ledger(1, 1, 1))
    result_of(writer.close())
    metadata = stored_metadata(cluster, writer.ledger_id)
    assert (metadata.last_entry_id, metadata.length) == (-1, 0)
    reader = result_of(cluster.client().open_ledger(writer.ledger_id))
    assert reader.last_add_confirmed == -1
    failure_of(reader.read(0, 0), EntryRangeError)


def test_reads_return_payloads_in_order_from_the_writer_and_a_reader():
    cluster = Cluster(3)
    client = cluster.client()
    writer = result_of(client.create_ledger(3, 2, 2))
    payloads = [b"payload-%03d" % i * (i % 5 + 1) for i in range(50)]
    for payload in payloads:
        writer.append(payload)
    assert result_of(writer.read(0, 49)) == payloads
    assert result_of(writer.read(10, 12)) == payloads[10:13]
    result_of(writer.close())
    reader = result_of(client.open_ledger(writer.ledger_id))
    assert reader.last_add_confirmed == 49
    assert result_of(reader.read(0, 49)) == payloads


def test_a_long_range_of_synchronous_replies_is_read_without_deep_recursion():
    cluster = Cluster(1, read_window=8)
    writer = result_of(cluster.client().create_ledger(1, 1, 1))
    for i in range(5000):
        writer.append(b"%d" % i)
    assert result_of(writer.read(0, 4999)) == [b"%d" % i for i in range(5000)]


@pytest.mark.parametrize("first, last", [(-1, 0), (2, 1), (0, 3), (4, 4)])
def test_reads_outside_the_confirmed_range_are_refused(first, last):
    cluster = Cluster(1)
    writer = result_of(cluster.client().create_ledger(1, 1, 1))
    for i in range(3):
        writer.append(b"%d" % i)
    failure_of(writer.read(first, last), EntryRangeError)


def written_ledger(cluster: Cluster, count: int = 4):
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    for i in range(count):
        result_of(writer.append(b"entry-%d" % i))
    result_of(writer.close())
    return writer, result_of(cluster.client().open_ledger(writer.ledger_id))


def test_a_read_falls_over_to_the_next_replica_when_one_is_down():
    cluster = Cluster(3)
    writer, reader = written_ledger(cluster)
    first_replica = writer.metadata.current_ensemble.nodes[0]  # first for entries 0 and 3
    cluster.node(first_replica).down = True
    assert result_of(reader.read(0, 3)) == [b"entry-%d" % i for i in range(4)]


@pytest.mark.parametrize("damage", ["node_reports", "bytes_flipped"])
def test_a_damaged_copy_is_never_served_and_the_next_replica_is_used(damage):
    cluster = Cluster(3)
    writer, reader = written_ledger(cluster)
    node = cluster.node(writer.metadata.current_ensemble.nodes[0])
    key = (writer.ledger_id, 0)
    if damage == "node_reports":
        node.corrupt.add(key)
    else:
        node.entries[key] = node.entries[key][:-1] + b"X"
    assert result_of(reader.read(0, 0)) == [b"entry-0"]


def test_an_entry_damaged_on_every_replica_fails_clearly_and_others_still_read():
    cluster = Cluster(3)
    writer, reader = written_ledger(cluster)
    for node in cluster.nodes.values():
        if (writer.ledger_id, 1) in node.entries:
            node.entries[(writer.ledger_id, 1)] = b"garbage that is long enough"
    error = failure_of(reader.read(1, 1), CorruptEntryError)
    assert "ledger 0 entry 1" in str(error) and "no intact replica" in str(error)
    assert result_of(reader.read(2, 3)) == [b"entry-2", b"entry-3"]
    failure_of(reader.read(0, 3), CorruptEntryError)


def test_an_entry_no_replica_has_or_can_serve_fails_with_the_reason():
    cluster = Cluster(3)
    writer, reader = written_ledger(cluster)
    for node in cluster.nodes.values():
        node.entries.pop((writer.ledger_id, 2), None)
    failure_of(reader.read(2, 2), NoSuchEntryError)
    for node in cluster.nodes.values():
        node.down = True
    error = failure_of(reader.read(0, 0), LedgerReadError)
    assert "refused" in str(error)


def test_reader_of_an_open_ledger_sees_what_the_writer_confirmed_without_fencing_it():
    cluster = Cluster(3)
    client = cluster.client()
    writer = result_of(client.create_ledger(3, 2, 2))
    for i in range(5):
        result_of(writer.append(b"%d" % i))
    reader = result_of(client.open_ledger(writer.ledger_id, recovery=False))
    assert reader.last_add_confirmed == 3  # LAC piggybacked by the add of entry 4
    assert result_of(reader.read(0, 3)) == [b"0", b"1", b"2", b"3"]
    result_of(writer.append(b"5"))  # the writer is not fenced
    assert result_of(reader.read_last_add_confirmed()) == 4
    result_of(writer.close())
    assert result_of(reader.read_last_add_confirmed()) == 5
    assert reader.metadata.is_closed


def test_delete_ledger_removes_data_and_metadata():
    cluster = Cluster(3)
    client = cluster.client()
    writer, _ = written_ledger(cluster)
    result_of(client.delete_ledger(writer.ledger_id))
    assert ledger_path(writer.ledger_id) not in cluster.store.nodes
    assert all(not node.stored_ids(writer.ledger_id) for node in cluster.nodes.values())
    failure_of(client.open_ledger(writer.ledger_id), NoSuchLedgerError)
    failure_of(client.delete_ledger(writer.ledger_id), NoSuchLedgerError)


def test_delete_ledger_with_a_node_down_still_removes_the_metadata():
    cluster = Cluster(3)
    writer, _ = written_ledger(cluster)
    down = cluster.node(writer.metadata.current_ensemble.nodes[1])
    down.down = True
    result_of(cluster.client().delete_ledger(writer.ledger_id))
    assert ledger_path(writer.ledger_id) not in cluster.store.nodes
    assert down.stored_ids(writer.ledger_id)  # kept: it could not be reached


def test_malformed_metadata_in_the_store_is_reported_not_used():
    cluster = Cluster(1)
    client = cluster.client()
    result_of(cluster.store.create(ledger_path(3), b"{oops"))
    error = failure_of(client.open_ledger(3), LedgerMetadataError)
    assert "not valid JSON" in str(error)
    failure_of(client.open_ledger(3, recovery=False), LedgerMetadataError)
    result_of(cluster.store.create(ID_COUNTER_PATH, b"seven"))
    failure_of(client.create_ledger(1, 1, 1), LedgerMetadataError)
    assert result_of(cluster.store.get(ledger_path(3))).value == b"{oops"  # left untouched


def test_node_pool_follows_registered_nodes():
    store = FakeStore()
    nodes: dict[str, FakeNode] = {}

    def factory(address: str) -> FakeNode:
        return nodes.setdefault(address, FakeNode(address))

    pool = result_of(defer.ensureDeferred(NodePool.for_cluster(store, factory)))
    assert pool.live_addresses() == frozenset()
    result_of(store.create("/storage-nodes/h1:1", b"", ephemeral=True))
    result_of(store.create("/storage-nodes/h2:2", b"", ephemeral=True))
    assert pool.live_addresses() == {"h1:1", "h2:2"}
    result_of(store.delete("/storage-nodes/h1:1"))
    assert pool.live_addresses() == {"h2:2"}
    assert pool.client("h1:1") is pool.client("h1:1")
    result_of(defer.ensureDeferred(pool.close()))
    assert nodes["h1:1"].closed
    result_of(store.create("/storage-nodes/h3:3", b"", ephemeral=True))
    assert pool.live_addresses() == {"h2:2"}  # no longer watching


def test_local_pool_serves_one_fixed_node():
    node = FakeNode("local:/data")
    pool = NodePool.for_local_node(node)
    assert pool.live_addresses() == {"local:/data"}
    assert pool.client("local:/data") is node


def test_pool_suspects_failed_nodes_for_a_while_and_tries_them_last():
    clock = task.Clock()
    pool = NodePool(FakeNode, fixed_addresses=["a", "b", "c"], clock=clock, suspect_seconds=30)
    pool.report_failure("a")
    assert pool.suspects() == {"a"}
    assert pool.preferred_order(["a", "b", "c"]) == ["b", "c", "a"]
    pool.report_success("a")
    assert pool.suspects() == frozenset()
    assert pool.preferred_order(["a", "b", "c"]) == ["a", "b", "c"]
    pool.report_failure("b")
    clock.advance(31)
    assert pool.suspects() == frozenset()  # suspicion expires


def test_a_node_registering_again_is_no_longer_suspect():
    cluster = Cluster(2)
    cluster.pool.report_failure("n1")
    result_of(cluster.store.delete("/storage-nodes/n1"))
    assert cluster.pool.suspects() == {"n1"}
    result_of(cluster.store.create("/storage-nodes/n1", b"", ephemeral=True))
    assert cluster.pool.suspects() == frozenset()


def test_new_ledgers_avoid_suspect_nodes_when_they_can():
    cluster = Cluster(4)
    cluster.pool.report_failure("n2")
    for seed in range(10):
        writer = result_of(cluster.client(seed).create_ledger(3, 2, 2))
        assert "n2" not in writer.metadata.current_ensemble.nodes
    cluster.pool.report_failure("n3")  # now only 2 healthy nodes: suspects are used
    writer = result_of(cluster.client().create_ledger(3, 2, 2))
    assert len(set(writer.metadata.current_ensemble.nodes)) == 3
