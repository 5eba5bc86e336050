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
from twisted.internet.interfaces import IReactorTime

from storage.metadata.api import MetadataStore

log = logging.getLogger(__name__)

NODES_PATH = "/storage-nodes"

# How long a node that failed a request stays suspect (avoided for new ensembles and
# replacements, tried last by readers) unless it answers again or re-registers.
DEFAULT_SUSPECT_SECONDS = 30.0


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

    def list_entries(
        self, ledger_id: int, first_entry_id: int, count: int
    ) -> defer.Deferred[bytes]: ...

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
        clock: IReactorTime | None = None,
        suspect_seconds: float = DEFAULT_SUSPECT_SECONDS,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self._clock = clock
        self._suspect_seconds = suspect_seconds
        self._client_factory = client_factory
        self._store = store
        self._clients: dict[str, StorageNodeClient] = {}
        self._live: frozenset[str] = frozenset(fixed_addresses)
        self._cancel_watch: Callable[[], None] | None = None
        self._refresh_generation = 0
        self._failed_at: dict[str, float] = {}  # address → when its last request failed

    @classmethod
    def for_local_node(cls, client: StorageNodeClient) -> NodePool:
        """A pool of exactly one in-process node (standalone mode)."""
        pool = cls(lambda address: client, fixed_addresses=[client.address])
        pool._clients[client.address] = client
        return pool

    @classmethod
    async def for_cluster(
        cls, store: MetadataStore, client_factory: ClientFactory = _remote_client,
        *, clock: IReactorTime | None = None,
    ) -> NodePool:
        """A pool tracking the nodes registered under /storage-nodes; ready when returned."""
        pool = cls(client_factory, store=store, clock=clock)
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
        """A request to `address` failed: treat it as suspect for a while."""
        self._failed_at[address] = self._clock.seconds()

    def report_success(self, address: str) -> None:
        self._failed_at.pop(address, None)

    def suspects(self) -> frozenset[str]:
        """Nodes that failed a request recently and have not answered since."""
        if not self._failed_at:
            return frozenset()
        recent = self._clock.seconds() - self._suspect_seconds
        return frozenset(a for a, failed_at in self._failed_at.items() if failed_at > recent)

    def preferred_order(self, addresses: Iterable[str]) -> list[str]:
        """`addresses` with suspect nodes moved to the end (order kept otherwise)."""
        if not self._failed_at:
            return list(addresses)
        suspects = self.suspects()
        return sorted(addresses, key=lambda address: address in suspects)

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
        if generation != self._refresh_generation:
            return  # a later refresh already started: it wins
        live = frozenset(names)
        for address in live - self._live:
            self._failed_at.pop(address, None)  # (re)registered: it restarted, try it again
        self._live = live
