"""NodePool: one client per storage node address, and the set of nodes that are live now.

In a cluster, live nodes are the children of /storage-nodes in the metadata store (each node
registers itself there as an ephemeral entry); the pool watches that path. In standalone mode
the pool wraps one fixed, in-process node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from twisted.internet import defer

from storage.metadata.api import MetadataStore

log = logging.getLogger(__name__)

NODES_PATH = "/storage-nodes"


class LacResultLike(Protocol):
    last_add_confirmed: int
    last_entry_id: int


class StorageNodeClient(Protocol):
    """What the ledger client needs from a storage node client (see storage/node)."""

    address: str

    def add_entry(
        self, ledger_id: int, entry_id: int, last_add_confirmed: int, payload: bytes,
        *, recovery: bool = False,
    ) -> defer.Deferred[None]: ...

    def read_entry(
        self, ledger_id: int, entry_id: int, *, fence: bool = False
    ) -> defer.Deferred[bytes]: ...

    def read_last_add_confirmed(
        self, ledger_id: int, *, fence: bool = False
    ) -> defer.Deferred[LacResultLike]: ...

    def delete_ledger(self, ledger_id: int) -> defer.Deferred[None]: ...

    def close(self) -> defer.Deferred[None]: ...


ClientFactory = Callable[[str], StorageNodeClient]


def _remote_client(address: str) -> StorageNodeClient:
    from storage.node import RemoteStorageNodeClient  # imported late: only clusters need it

    return RemoteStorageNodeClient(address)


class NodePool:
    """Clients by address (created on first use, kept open) and the live address set."""

    def __init__(
        self,
        client_factory: ClientFactory = _remote_client,
        *,
        store: MetadataStore | None = None,
        fixed_addresses: Iterable[str] = (),
    ) -> None:
        self._client_factory = client_factory
        self._store = store
        self._clients: dict[str, StorageNodeClient] = {}
        self._live: frozenset[str] = frozenset(fixed_addresses)
        self._cancel_watch: Callable[[], None] | None = None
        self._refresh_generation = 0
        # Nodes whose last request failed: readers try them last until one succeeds again.
        self._suspects: set[str] = set()

    @classmethod
    def for_local_node(cls, client: StorageNodeClient) -> NodePool:
        """A pool of exactly one in-process node (standalone mode)."""
        pool = cls(lambda address: client, fixed_addresses=[client.address])
        pool._clients[client.address] = client
        return pool

    @classmethod
    async def for_cluster(
        cls, store: MetadataStore, client_factory: ClientFactory = _remote_client
    ) -> NodePool:
        """A pool tracking the nodes registered under /storage-nodes; ready when returned."""
        pool = cls(client_factory, store=store)
        await pool.start()
        return pool

    async def start(self) -> None:
        """Load the live set and keep it current by watching /storage-nodes."""
        if self._store is None or self._cancel_watch is not None:
            return
        self._cancel_watch = self._store.watch(NODES_PATH, self._on_nodes_changed)
        await self._refresh()

    def live_addresses(self) -> frozenset[str]:
        return self._live

    def client(self, address: str) -> StorageNodeClient:
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = self._client_factory(address)
        return client

    def report_failure(self, address: str) -> None:
        self._suspects.add(address)

    def report_success(self, address: str) -> None:
        self._suspects.discard(address)

    def suspects(self) -> frozenset[str]:
        """Nodes whose last request failed."""
        return frozenset(self._suspects)

    def preferred_order(self, addresses: Iterable[str]) -> list[str]:
        """`addresses` with nodes that failed recently moved to the end (order kept otherwise)."""
        if not self._suspects:
            return list(addresses)
        return sorted(addresses, key=lambda address: address in self._suspects)

    async def close(self) -> None:
        if self._cancel_watch is not None:
            self._cancel_watch()
            self._cancel_watch = None
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                await client.close()
            except Exception:
                log.exception("closing storage node client %s", client.address)

    def _on_nodes_changed(self, path: str) -> None:
        defer.ensureDeferred(self._refresh()).addErrback(
            lambda failure: log.error("refreshing live storage nodes: %s", failure.value)
        )

    async def _refresh(self) -> None:
        assert self._store is not None
        self._refresh_generation += 1
        generation = self._refresh_generation
        names = await self._store.children(NODES_PATH)
        if generation == self._refresh_generation:  # a later refresh already started: it wins
            self._live = frozenset(names)
