"""Looking at a cluster's ledgers directly — metadata in ZooKeeper, copies on the storage nodes —
not through the brokers: which ledgers name a node, which are marked under-replicated, and
whether every entry of a ledger has its write-quorum copies, intact and byte-identical.

    inspector = StorageInspector.open(cluster.metadata_url)
    ledgers = inspector.ledgers()                             # ledger id -> LedgerMetadata
    problems = inspector.copy_problems(ledgers[7], live)      # [] when fully replicated
    inspector.close()

The methods block, and are called from a thread other than the reactor's: each hands its
work to the reactor and waits for the answer. A cluster test runs its thread-based scenario
with `threads.deferToThread` from a pytest-twisted test, so the reactor runs meanwhile.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet import defer, reactor, threads

from storage.ledger import LedgerMetadata, NodePool
from storage.ledger.auditor import AUDITOR_PATH
from storage.ledger.entry_format import unframe_entry
from storage.ledger.errors import CorruptEntryError, LedgerMetadataError, NoSuchLedgerError
from storage.ledger.ledger_store import LEDGERS_PATH, LedgerMetadataStore
from storage.ledger.node_pool import NODES_PATH
from storage.ledger.reader import replica_addresses
from storage.ledger.replication import run_bounded
from storage.ledger.under_replication import UnderReplication, parse_ledger_ids
from storage.metadata import MetadataStore, open_metadata_store
from storage.node import errors as node_errors

T = TypeVar("T")
READS_AT_ONCE = 64
MANAGED_LEDGER_KEY = "managed-ledger"  # the custom metadata naming a ledger's managed ledger


def blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the reactor; its result, once in (call from another thread)."""
    return threads.blockingCallFromThread(reactor, defer.ensureDeferred, coroutine)


def managed_ledger_of(metadata: LedgerMetadata) -> str:
    return metadata.custom.get(MANAGED_LEDGER_KEY, "")


class StorageInspector:
    def __init__(self, store: MetadataStore, pool: NodePool) -> None:
        self._store = store
        self._pool = pool
        self._ledgers = LedgerMetadataStore(store)

    @classmethod
    def open(cls, metadata_url: str) -> StorageInspector:
        async def opening() -> StorageInspector:
            store = open_metadata_store(metadata_url)
            await store.ready(30)
            return cls(store, await NodePool.for_cluster(store))

        return blocking(opening())

    def close(self) -> None:
        async def closing() -> None:
            await self._pool.close()
            await self._store.close()

        blocking(closing())

    # -- metadata ---------------------------------------------------------------------------

    def ledgers(self) -> dict[int, LedgerMetadata]:
        """Every ledger that exists now."""
        return blocking(self._read_ledgers())

    async def _read_ledgers(self) -> dict[int, LedgerMetadata]:
        found: dict[int, LedgerMetadata] = {}
        for ledger_id in parse_ledger_ids(await self._store.children(LEDGERS_PATH),
                                          LEDGERS_PATH):
            try:
                found[ledger_id], _ = await self._ledgers.read(ledger_id)
            except NoSuchLedgerError:
                continue  # deleted between the two reads
        return found

    def marked(self) -> list[int]:
        """Ledgers marked under-replicated (auto-recovery has work left)."""
        return blocking(UnderReplication(self._store).marked_ledgers())

    def auditor(self) -> str | None:
        """The identity of the auto-recovery process elected auditor, if any."""
        found = blocking(self._store.get(AUDITOR_PATH))
        return None if found is None else found.value.decode()

    def live_nodes(self) -> set[str]:
        """Storage nodes registered now (read from the store, not from a cached view)."""
        return set(blocking(self._store.children(NODES_PATH)))

    # -- copies -----------------------------------------------------------------------------

    def copy_problems(self, metadata: LedgerMetadata, live: set[str]) -> list[str]:
        """What keeps a closed ledger from having, for every entry, a verified copy on each
        node of its write set — all of them live and all copies the same bytes."""
        return blocking(self._copy_problems(metadata, live))

    async def _copy_problems(self, metadata: LedgerMetadata, live: set[str]) -> list[str]:
        ledger_id = metadata.ledger_id
        if not metadata.is_closed:
            return [f"ledger {ledger_id} is {metadata.state.value}, not closed"]
        problems: list[str] = []

        async def check(entry_id: int) -> None:
            addresses = replica_addresses(metadata, entry_id)
            where = f"ledger {ledger_id} entry {entry_id}"
            if len(set(addresses)) != metadata.write_quorum:
                problems.append(f"{where}: write set {addresses}")
            copies: dict[str, bytes] = {}
            for address in addresses:
                if address not in live:
                    problems.append(f"{where}: named on {address}, which is gone")
                    continue
                try:
                    stored = await self._pool.client(address).read_entry(ledger_id, entry_id)
                    unframe_entry(ledger_id, entry_id, stored)
                except (node_errors.StorageNodeError, CorruptEntryError,
                        LedgerMetadataError) as error:
                    problems.append(f"{where} on {address}: {error}")
                    continue
                copies[address] = bytes(stored)
            if len(set(copies.values())) > 1:
                problems.append(f"{where}: copies differ between {sorted(copies)}")

        await run_bounded(range(metadata.last_entry_id + 1), READS_AT_ONCE, check)
        return problems
