"""Ledger garbage collection on a storage node: delete ledgers nobody will ever read again.

`LedgerClient.delete_ledger` deletes a ledger's data on the nodes it can reach, then its
metadata; a node that was down keeps its copy. Auto-recovery may also leave copies behind
(on a lost node that came back after being replaced, or on a replacement chosen by a worker
that died before recording it). The collector, run periodically inside each storage node
with a metadata store, finds them:

- *orphans*: ledgers the node holds whose metadata (/ledgers/<id>) no longer exists;
- *over-replicated* ledgers: their metadata exists but names this node in no segment.

Safety margins, because deleting live data is the one mistake that cannot be undone:
- the node's ledger list is read before the metadata, and a ledger's metadata is always
  created before any node stores an entry of it, so a missing metadata node means deleted;
- a ledger is deleted only when two consecutive scans found it a candidate (a lagging
  ZooKeeper follower, a race with a creation);
- ledger ids the metadata store has never handed out (at or above /ledger-id-counter) are
  never deleted: they mean the node points at the wrong metadata store;
- over-replicated ledgers are deleted under the ledger's re-replication lock, after reading
  the metadata again: a worker copies entries to a node before naming it in the metadata,
  and holds that lock while it does;
- over-replicated ledgers are collected only while the node keeps the address it first
  registered with (`confirmed_address`): ledgers name nodes by address, so a node moved to
  a new address would otherwise find itself named nowhere and delete everything.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime

from storage.ledger.errors import LedgerMetadataError, NoSuchLedgerError
from storage.ledger.ledger_store import ID_COUNTER_PATH, LEDGERS_PATH, LedgerMetadataStore
from storage.ledger.under_replication import UnderReplication, parse_ledger_ids
from storage.metadata.api import MetadataStore

log = logging.getLogger(__name__)

ADDRESS_FILE = "ledger-gc-address"
"""In a node's data directory: the address its ledgers know it by."""


def confirmed_address(data_dir: str | os.PathLike[str], address: str) -> str | None:
    """`address` if the node in `data_dir` always registered with it (recorded on first
    use), else None: over-replicated ledgers must then not be collected."""
    path = Path(data_dir) / ADDRESS_FILE
    try:
        recorded = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(address + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        return address
    if recorded != address:
        log.error("this node's ledgers know it as %s but it now registers as %s: ledgers not "
                  "naming %s are kept (delete %s once they were re-replicated)", recorded,
                  address, address, path)
        return None
    return address


class LedgerHoldingNode(Protocol):
    """What the collector needs of a storage node (storage.node.StorageNode has it)."""

    def ledger_ids(self) -> list[int]: ...

    def delete_ledger(self, ledger_id: int) -> defer.Deferred[None]: ...


@dataclass
class CollectionReport:
    deleted_orphans: list[int] = field(default_factory=list)
    deleted_over_replicated: list[int] = field(default_factory=list)
    candidates: set[int] = field(default_factory=set)  # deleted next time if still candidates
    unknown: list[int] = field(default_factory=list)  # ids the store never handed out: kept


class LedgerGarbageCollector:
    """Deletes orphan and over-replicated ledgers from one node; see the module docstring.

    `address` is the node's registered address; without it only orphans are collected.
    """

    def __init__(self, store: MetadataStore, node: LedgerHoldingNode, *,
                 address: str | None = None, interval: float = 300.0,
                 clock: IReactorTime | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self._store = store
        self._ledgers = LedgerMetadataStore(store)
        self._locks = UnderReplication(store)
        self._node = node
        self._address = address
        self._interval = interval
        self._clock = clock
        self._owner = f"ledger-gc:{address or id(self)}"
        self._previous_orphans: set[int] = set()
        self._previous_over_replicated: set[int] = set()
        self._loop: task.LoopingCall | None = None
        self._lock = defer.DeferredLock()  # one scan at a time

    def start(self) -> None:
        """Scan every `interval` seconds (the first scan after one interval)."""
        self._loop = task.LoopingCall(self._collect_logging_errors)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=False)

    async def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        await self._lock.acquire()  # let a scan in progress finish
        self._lock.release()

    async def _collect_logging_errors(self) -> None:
        try:
            await self.collect()
        except Exception as error:
            log.error("ledger garbage collection failed: %s", error)

    def collect(self) -> defer.Deferred[CollectionReport]:
        """One scan; deletes the ledgers that were candidates in the previous scan too."""
        return self._lock.run(lambda: defer.ensureDeferred(self._collect()))

    async def _collect(self) -> CollectionReport:
        report = CollectionReport()
        on_node = list(self._node.ledger_ids())  # before reading the metadata: see above
        counter = await self._ledger_id_counter()
        existing = set(parse_ledger_ids(await self._store.children(LEDGERS_PATH),
                                        LEDGERS_PATH))
        orphans = set()
        for ledger_id in on_node:
            if ledger_id in existing:
                continue
            if counter is None or ledger_id >= counter:
                report.unknown.append(ledger_id)
            else:
                orphans.add(ledger_id)
        if report.unknown:
            log.error("ledgers %s on this node were never created in this metadata store "
                      "(next id %s): is the node pointed at the right one? Keeping them.",
                      report.unknown[:10], counter)
        for ledger_id in sorted(orphans & self._previous_orphans):
            await self._node.delete_ledger(ledger_id)
            report.deleted_orphans.append(ledger_id)
        self._previous_orphans = orphans - self._previous_orphans
        report.candidates |= self._previous_orphans
        if self._address is not None:
            over = await self._over_replicated(sorted(set(on_node) & existing))
            for ledger_id in sorted(over & self._previous_over_replicated):
                if await self._delete_if_still_unnamed(ledger_id):
                    report.deleted_over_replicated.append(ledger_id)
            self._previous_over_replicated = over - self._previous_over_replicated
            report.candidates |= self._previous_over_replicated
        deleted = report.deleted_orphans + report.deleted_over_replicated
        if deleted:
            log.info("ledger garbage collection deleted %d ledgers: %s", len(deleted),
                     deleted[:20])
        return report

    async def _ledger_id_counter(self) -> int | None:
        found = await self._store.get(ID_COUNTER_PATH)
        if found is None:
            return None
        try:
            return int(found.value.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise LedgerMetadataError(
                f"{ID_COUNTER_PATH} holds {found.value!r}, not a ledger id") from None

    async def _over_replicated(self, ledger_ids: list[int]) -> set[int]:
        over = set()
        for ledger_id in ledger_ids:
            if await self._names_this_node(ledger_id) is False:
                over.add(ledger_id)
        return over

    async def _names_this_node(self, ledger_id: int) -> bool | None:
        """Whether the ledger's metadata names this node; None if it cannot be told."""
        try:
            metadata, _ = await self._ledgers.read(ledger_id)
        except NoSuchLedgerError:
            return None  # deleted meanwhile: an orphan, handled by the next scan
        except LedgerMetadataError as error:
            log.error("ledger %d: unreadable metadata, kept: %s", ledger_id, error)
            return None
        return self._address in metadata.all_nodes()

    async def _delete_if_still_unnamed(self, ledger_id: int) -> bool:
        if not await self._locks.try_lock(ledger_id, self._owner):
            return False  # being re-replicated, maybe to this very node
        try:
            if await self._names_this_node(ledger_id) is not False:
                return False
            await self._node.delete_ledger(ledger_id)
            return True
        finally:
            await self._locks.unlock(ledger_id, self._owner)
