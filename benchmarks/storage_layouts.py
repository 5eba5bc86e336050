"""Managed-ledger layouts for the storage benchmark (`python -m benchmarks.storage_bench`).

- one-node:    the standalone layout: embedded metadata store, one in-process storage node,
               E=Qw=Qa=1;
- three-nodes: three storage-node processes on loopback, E=3 Qw=2 Qa=2.
Each layout function returns (factory, config, close).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from storage.ledger import LedgerClient, NodePool
from storage.managed_ledger import ManagedLedgerConfig, ManagedLedgerFactory
from storage.metadata import open_metadata_store
from storage.node import LocalStorageNodeClient, RemoteStorageNodeClient, StorageNode

Layout = Callable[[Path], Awaitable[tuple[ManagedLedgerFactory, ManagedLedgerConfig,
                                          Callable[[], Awaitable[None]]]]]


async def one_node_layout(directory: Path):
    """Standalone: embedded metadata store and one in-process storage node."""
    store = open_metadata_store(str(directory / "metadata"))
    node = await StorageNode.open(directory / "node")
    pool = NodePool.for_local_node(LocalStorageNodeClient(node))
    factory = ManagedLedgerFactory(store, LedgerClient(store, pool))

    async def close() -> None:
        await factory.close()
        await node.close()
        await store.close()

    return factory, ManagedLedgerConfig(), close


async def three_nodes_layout(directory: Path):
    """Three storage-node processes on loopback; the ledgers' metadata in an embedded store
    of this process (the nodes need no metadata store to serve)."""
    from storage.node.testing import StorageNodeProcess

    processes = [StorageNodeProcess(directory / f"node{i}") for i in range(3)]
    addresses = [process.start() for process in processes]
    store = open_metadata_store(str(directory / "metadata"))
    pool = NodePool(RemoteStorageNodeClient, fixed_addresses=addresses)
    factory = ManagedLedgerFactory(store, LedgerClient(store, pool))

    async def close() -> None:
        await factory.close()
        await pool.close()
        await store.close()
        for process in processes:
            process.stop()

    config = ManagedLedgerConfig(ensemble_size=3, write_quorum=2, ack_quorum=2)
    return factory, config, close


LAYOUTS: dict[str, tuple[str, Layout]] = {
    "one-node": ("managed ledger, 1 node, Qa=1", one_node_layout),
    "three-nodes": ("managed ledger, 3 nodes, Qw=2 Qa=2", three_nodes_layout),
}
