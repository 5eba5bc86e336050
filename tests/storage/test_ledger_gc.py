"""Ledger garbage collection on a storage node (storage/ledger/gc.py), against a real
in-process StorageNode and a real embedded metadata store."""

from __future__ import annotations

from dataclasses import replace

import pytest
import pytest_twisted

from storage.ledger import LedgerClient, LedgerMetadataError, NodePool
from storage.ledger.gc import LedgerGarbageCollector, confirmed_address
from storage.ledger.ledger_store import ID_COUNTER_PATH, LedgerMetadataStore
from storage.ledger.metadata import Segment
from storage.ledger.under_replication import lock_path
from storage.metadata import EmbeddedStore
from storage.node import LocalStorageNodeClient, NoSuchLedgerError, StorageNode, StorageNodeConfig


class Layout:
    def __init__(self, node: StorageNode, store: EmbeddedStore) -> None:
        self.node = node
        self.store = store
        self.client = LocalStorageNodeClient(node)
        self.ledgers = LedgerClient(store, NodePool.for_local_node(self.client))
        self.metadata = LedgerMetadataStore(store)

    def collector(self, *, with_address: bool = True) -> LedgerGarbageCollector:
        return LedgerGarbageCollector(
            self.store, self.node, address=self.client.address if with_address else None)

    async def ledger(self, entries: int = 3) -> int:
        writer = await self.ledgers.create_ledger(1, 1, 1)
        for entry_id in range(entries):
            await writer.append(b"entry %d" % entry_id)
        await writer.close()
        return writer.ledger_id


@pytest.fixture
def layout(tmp_path):
    node = pytest_twisted.blockon(StorageNode.open(
        tmp_path / "node", StorageNodeConfig(gc_interval_seconds=None)))
    store = EmbeddedStore(tmp_path / "metadata")
    yield Layout(node, store)
    pytest_twisted.blockon(store.close())
    pytest_twisted.blockon(node.close())


@pytest_twisted.ensureDeferred
async def test_a_ledger_whose_metadata_is_gone_is_deleted_on_the_second_scan(layout, tmp_path):
    kept, deleted = await layout.ledger(), await layout.ledger()
    await layout.metadata.delete(deleted)  # as delete_ledger does while this node is down
    collector = layout.collector()
    first = await collector.collect()
    assert first.deleted_orphans == [] and first.candidates == {deleted}
    assert layout.node.ledger_ids() == [kept, deleted]
    second = await collector.collect()
    assert second.deleted_orphans == [deleted]
    assert layout.node.ledger_ids() == [kept]
    assert (await layout.ledgers.open_ledger(kept)).last_add_confirmed == 2
    await layout.node.close()  # the delete is durable
    layout.node = await StorageNode.open(tmp_path / "node",
                                         StorageNodeConfig(gc_interval_seconds=None))
    with pytest.raises(NoSuchLedgerError):
        await layout.node.read_entry(deleted, 0)


@pytest_twisted.ensureDeferred
async def test_metadata_missing_in_only_one_scan_deletes_nothing(layout):
    ledger_id = await layout.ledger()
    metadata, _ = await layout.metadata.read(ledger_id)
    await layout.metadata.delete(ledger_id)
    collector = layout.collector()
    assert (await collector.collect()).candidates == {ledger_id}
    await layout.metadata.create(metadata)  # a lagging view of the store caught up
    for _ in range(3):
        report = await collector.collect()
        assert (report.deleted_orphans, report.candidates) == ([], set())
    assert layout.node.ledger_ids() == [ledger_id]


@pytest_twisted.ensureDeferred
async def test_ledger_ids_the_store_never_handed_out_are_kept(layout):
    await layout.node.add_entry(10**9, 0, -1, b"from another cluster")
    await layout.ledger()
    collector = layout.collector()
    for _ in range(3):
        report = await collector.collect()
        assert report.unknown == [10**9] and report.deleted_orphans == []
    assert 10**9 in layout.node.ledger_ids()


@pytest_twisted.ensureDeferred
async def test_a_node_pointed_at_an_empty_store_deletes_nothing(layout):
    ledger_id = await layout.ledger()
    await layout.store.delete("/ledgers", recursive=True)
    await layout.store.delete(ID_COUNTER_PATH)
    collector = layout.collector()
    for _ in range(3):
        assert (await collector.collect()).unknown == [ledger_id]
    assert layout.node.ledger_ids() == [ledger_id]


@pytest_twisted.ensureDeferred
async def test_a_ledger_not_naming_this_node_is_deleted_unless_being_re_replicated(layout):
    named, moved = await layout.ledger(), await layout.ledger()
    metadata, version = await layout.metadata.read(moved)
    elsewhere = replace(metadata, ensembles=(Segment(0, ("127.0.0.1:9",)),))
    await layout.metadata.write(elsewhere, version)
    assert (await layout.collector(with_address=False).collect()).candidates == set()
    collector = layout.collector()
    assert (await collector.collect()).candidates == {moved}
    await layout.store.create(lock_path(moved), b"a replication worker", ephemeral=True)
    report = await collector.collect()
    assert report.deleted_over_replicated == [] and moved in layout.node.ledger_ids()
    await layout.store.delete(lock_path(moved))
    for _ in range(2):
        report = await collector.collect()
    assert report.deleted_over_replicated == [moved]
    assert layout.node.ledger_ids() == [named]
    assert (await layout.store.get(lock_path(moved))) is None  # its lock was released


@pytest_twisted.ensureDeferred
async def test_periodic_scans_run_until_stopped(layout):
    from twisted.internet import task

    clock = task.Clock()
    ledger_id = await layout.ledger()
    await layout.metadata.delete(ledger_id)
    collector = LedgerGarbageCollector(layout.store, layout.node, interval=10, clock=clock)
    collector.start()
    clock.advance(10)
    await collector.collect()  # waits for the scan the clock started; this is the second
    assert layout.node.ledger_ids() == []
    await collector.stop()
    assert not clock.getDelayedCalls()


@pytest_twisted.ensureDeferred
async def test_a_damaged_id_counter_stops_the_scan_with_a_clear_error(layout):
    ledger_id = await layout.ledger()
    await layout.metadata.delete(ledger_id)
    found = await layout.store.get(ID_COUNTER_PATH)
    await layout.store.set(ID_COUNTER_PATH, b"twelve", expected_version=found.version)
    collector = layout.collector()
    for _ in range(2):
        with pytest.raises(LedgerMetadataError, match="not a ledger id"):
            await collector.collect()
    assert layout.node.ledger_ids() == [ledger_id]


def test_over_replication_is_collected_only_under_the_first_address(tmp_path, caplog):
    assert confirmed_address(tmp_path, "10.0.0.5:3181") == "10.0.0.5:3181"
    assert confirmed_address(tmp_path, "10.0.0.5:3181") == "10.0.0.5:3181"
    assert confirmed_address(tmp_path, "node1:3181") is None
    assert "know it as 10.0.0.5:3181 but it now registers as node1:3181" in caplog.text
