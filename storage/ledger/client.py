"""LedgerClient: create, open (with or without recovery) and delete replicated ledgers."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from storage.ledger.errors import NotEnoughNodesError
from storage.ledger.ledger_store import LedgerMetadataStore
from storage.ledger.metadata import LedgerMetadata, Segment, check_quorum_sizes
from storage.ledger.node_pool import NodePool
from storage.ledger.quorum import choose_ensemble
from storage.ledger.reader import ReadHandle
from storage.ledger.recovery import recover_ledger
from storage.ledger.settings import LedgerClientSettings
from storage.ledger.writer import WriteHandle
from storage.metadata.api import MetadataStore
from storage.node import errors as node_errors

log = logging.getLogger(__name__)


class LedgerClient:
    """Entry point to ledgers: metadata in `store`, data on the nodes of `pool`."""

    def __init__(
        self,
        store: MetadataStore,
        pool: NodePool,
        *,
        settings: LedgerClientSettings | None = None,
        clock: IReactorTime | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.store = store
        self.pool = pool
        self.settings = settings or LedgerClientSettings()
        self._ledgers = LedgerMetadataStore(store)
        self._clock = clock
        self._rng = rng or random.Random()

    def create_ledger(
        self, ensemble_size: int, write_quorum: int, ack_quorum: int,
        custom: Mapping[str, str] | None = None,
    ) -> defer.Deferred[WriteHandle]:
        """A new, empty ledger on `ensemble_size` live nodes, open for appends."""
        return defer.ensureDeferred(
            self._create_ledger(ensemble_size, write_quorum, ack_quorum, dict(custom or {}))
        )

    async def _create_ledger(
        self, ensemble_size: int, write_quorum: int, ack_quorum: int, custom: dict[str, str]
    ) -> WriteHandle:
        check_quorum_sizes(ensemble_size, write_quorum, ack_quorum)
        ensemble = self._choose_ensemble(ensemble_size)
        ledger_id = await self._ledgers.allocate_id()
        metadata = LedgerMetadata(
            ledger_id=ledger_id, ensemble_size=ensemble_size, write_quorum=write_quorum,
            ack_quorum=ack_quorum, ensembles=(Segment(0, tuple(ensemble)),),
            ctime=time.time(), custom=custom,
        )
        version = await self._ledgers.create(metadata)
        return self._writer(metadata, version)

    def _choose_ensemble(self, size: int) -> list[str]:
        live = self.pool.live_addresses()
        healthy = live - self.pool.suspects()
        ensemble = choose_ensemble(healthy, size, self._rng) or choose_ensemble(
            live, size, self._rng
        )
        if ensemble is None:
            raise NotEnoughNodesError(
                f"an ensemble of {size} nodes is needed but only {len(live)} storage nodes "
                f"are live: {sorted(live)}"
            )
        return ensemble

    def _writer(self, metadata: LedgerMetadata, version: int) -> WriteHandle:
        return WriteHandle(
            self._ledgers, self.pool, metadata, version,
            clock=self._clock, settings=self.settings, rng=self._rng,
        )

    def open_ledger(self, ledger_id: int, *, recovery: bool = True) -> defer.Deferred[ReadHandle]:
        """A read handle on an existing ledger.

        recovery=True (what a new owner does): fence the ledger so its previous writer can no
        longer append, make every entry that may have been acknowledged fully replicated,
        close it; the handle then reads exactly the acknowledged entries.
        recovery=False: read what is confirmed so far without disturbing a live writer.
        """
        return defer.ensureDeferred(self._open_ledger(ledger_id, recovery))

    async def _open_ledger(self, ledger_id: int, recovery: bool) -> ReadHandle:
        if recovery:
            metadata = await recover_ledger(
                self._ledgers, self.pool, ledger_id,
                clock=self._clock, settings=self.settings, rng=self._rng,
            )
            return self._reader(metadata, metadata.last_entry_id)
        metadata, _ = await self._ledgers.read(ledger_id)
        handle = self._reader(metadata, metadata.last_entry_id if metadata.is_closed else -1)
        if not metadata.is_closed:
            await handle.read_last_add_confirmed()
        return handle

    def _reader(self, metadata: LedgerMetadata, last_add_confirmed: int) -> ReadHandle:
        return ReadHandle(
            self._ledgers, self.pool, metadata, last_add_confirmed,
            read_window=self.settings.read_window,
        )

    def delete_ledger(self, ledger_id: int) -> defer.Deferred[None]:
        """Delete the ledger's data on its nodes, then its metadata.

        A node that cannot be reached keeps its copy (logged); the metadata goes regardless,
        so the ledger is gone for every reader. NoSuchLedgerError if it does not exist.
        """
        return defer.ensureDeferred(self._delete_ledger(ledger_id))

    async def _delete_ledger(self, ledger_id: int) -> None:
        metadata, _ = await self._ledgers.read(ledger_id)
        deletions = [
            self.pool.client(address).delete_ledger(ledger_id)
            for address in sorted(metadata.all_nodes())
        ]
        results = await defer.DeferredList(deletions, consumeErrors=True)
        for address, (succeeded, value) in zip(sorted(metadata.all_nodes()), results,
                                               strict=True):
            if not succeeded and not value.check(node_errors.NoSuchLedgerError):
                log.warning("ledger %d: could not delete its data on %s: %s",
                            ledger_id, address, value.getErrorMessage())
        await self._ledgers.delete(ledger_id)
