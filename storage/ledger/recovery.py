"""Ledger recovery: how a new owner seals a ledger whose writer may still be alive or gone.

Steps (BookKeeper's algorithm):
 1. Mark the metadata IN_RECOVERY (compare-and-set): the old writer can no longer change its
    ensemble, so it keeps writing only to the nodes we are about to fence.
 2. Fence: ask the current ensemble for its last-add-confirmed with fence=True until the
    answers cover every write set — from then on no write can reach an ack quorum.
 3. Every entry up to the highest LAC seen, and before the current ensemble's first entry,
    was acknowledged. Read forward from there (recovery reads): an entry found on any replica
    may have been acknowledged, so it is re-added (recovery=True) through a recovery writer
    that replicates it to its full write set, replacing failed nodes if needed; the first
    entry that Qw - Qa + 1 replicas lack was never acknowledged and ends the ledger.
 4. Close the ledger at the last entry kept (compare-and-set).
Concurrent recoveries are safe: metadata writes are compare-and-sets; the loser re-reads, and
adopts the ledger as the winner closed it.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import replace

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from storage.ledger.entry_format import unframe_entry
from storage.ledger.errors import (
    CorruptEntryError,
    LedgerError,
    LedgerFencedError,
    LedgerRecoveryError,
)
from storage.ledger.ledger_store import LedgerMetadataStore, MetadataConflictError
from storage.ledger.metadata import LedgerMetadata, LedgerState
from storage.ledger.node_pool import NodePool
from storage.ledger.quorum import ReadOutcome, RecoveryReadQuorum, write_set
from storage.ledger.reader import query_last_add_confirmed, read_entry, replica_addresses
from storage.ledger.settings import LedgerClientSettings
from storage.ledger.writer import WriteHandle
from storage.node import errors as node_errors

log = logging.getLogger(__name__)

RECOVERY_READ_AHEAD = 32  # entries whose recovery reads are in flight at once


class _InterferedError(Exception):
    """Someone else changed the ledger's metadata while we recovered it: start over."""


class _RecoveredEntry:
    __slots__ = ("stored", "running_length", "payload_size")

    def __init__(self, stored: bytes, running_length: int, payload_size: int) -> None:
        self.stored = stored
        self.running_length = running_length
        self.payload_size = payload_size


async def recover_ledger(
    ledger_store: LedgerMetadataStore,
    pool: NodePool,
    ledger_id: int,
    *,
    clock: IReactorTime,
    settings: LedgerClientSettings,
    rng: random.Random,
) -> LedgerMetadata:
    """Fence, recover and close ledger `ledger_id`; returns its closed metadata."""
    for attempt in range(1, settings.recovery_attempts + 1):
        metadata, version = await ledger_store.read(ledger_id)
        if metadata.is_closed:
            return metadata
        if metadata.state is LedgerState.OPEN:
            metadata = replace(metadata, state=LedgerState.IN_RECOVERY)
            try:
                version = await ledger_store.write(metadata, version)
            except MetadataConflictError:
                continue  # the writer changed its ensemble, or another recovery started
        try:
            return await _recover(
                ledger_store, pool, metadata, version, clock=clock, settings=settings, rng=rng
            )
        except _InterferedError as interference:
            log.info("ledger %d: recovery attempt %d interrupted: %s",
                     ledger_id, attempt, interference)
    raise LedgerRecoveryError(
        f"ledger {ledger_id}: gave up after {settings.recovery_attempts} recovery attempts "
        "(its metadata kept changing underneath)"
    )


async def _recover(
    ledger_store: LedgerMetadataStore,
    pool: NodePool,
    metadata: LedgerMetadata,
    version: int,
    *,
    clock: IReactorTime,
    settings: LedgerClientSettings,
    rng: random.Random,
) -> LedgerMetadata:
    ledger_id = metadata.ledger_id
    fencing = await query_last_add_confirmed(pool, metadata, fence=True)
    if not fencing.sufficient:
        raise LedgerRecoveryError(
            f"ledger {ledger_id}: only {len(fencing.answered)} of {metadata.ensemble_size} "
            f"nodes of {list(metadata.current_ensemble.nodes)} could be fenced, not enough to "
            "stop the previous writer"
        )
    confirmed = max(fencing.max_last_add_confirmed,
                    metadata.current_ensemble.first_entry_id - 1)
    writer = WriteHandle(
        ledger_store, pool, metadata, version, clock=clock, settings=settings, rng=rng,
        recovery=True, last_add_confirmed=confirmed,
        length=await _running_length_at(pool, metadata, confirmed),
    )
    re_adds: list[defer.Deferred[int]] = []
    fenced = {metadata.current_ensemble.nodes[index] for index in fencing.answered}
    async for entry in _entries_after(pool, metadata, confirmed + 1, fenced):
        re_adds.append(writer.append_stored(entry.stored, entry.running_length,
                                            entry.payload_size))
    await _wait_for_re_adds(ledger_id, re_adds)
    try:
        await writer.close()
    except LedgerFencedError:
        current, _ = await ledger_store.read(ledger_id)
        if current.is_closed:
            return current  # a concurrent recovery finished first: its result stands
        raise _InterferedError("metadata changed while closing") from None
    log.info("ledger %d: recovered, last entry %d (%d re-replicated)",
             ledger_id, writer.last_add_confirmed, len(re_adds))
    return writer.metadata


async def _running_length_at(pool: NodePool, metadata: LedgerMetadata, entry_id: int) -> int:
    if entry_id < 0:
        return 0
    try:
        running_length, _ = await read_entry(pool, metadata, entry_id)
    except LedgerError as error:
        raise LedgerRecoveryError(
            f"ledger {metadata.ledger_id}: cannot read confirmed entry {entry_id}: {error}"
        ) from None
    return running_length


async def _wait_for_re_adds(ledger_id: int, re_adds: list[defer.Deferred[int]]) -> None:
    results = await defer.DeferredList(re_adds, consumeErrors=True)
    for succeeded, value in results:
        if succeeded:
            continue
        assert isinstance(value, Failure)
        if value.check(LedgerFencedError):
            raise _InterferedError(str(value.value))
        raise LedgerRecoveryError(
            f"ledger {ledger_id}: could not re-replicate recovered entries: "
            f"{value.getErrorMessage()}"
        )


async def _entries_after(
    pool: NodePool, metadata: LedgerMetadata, first_entry_id: int, fenced: set[str]
):
    """Yield, in order, the entries from `first_entry_id` on that may have been acknowledged.

    Reads run RECOVERY_READ_AHEAD entries ahead; the first absent entry ends the sequence.
    """
    in_flight: deque[defer.Deferred[RecoveryReadQuorum[_RecoveredEntry]]] = deque()
    next_to_read = first_entry_id
    entry_id = first_entry_id
    while True:
        while len(in_flight) < RECOVERY_READ_AHEAD:
            in_flight.append(recovery_read(pool, metadata, next_to_read, fenced))
            next_to_read += 1
        decision = await in_flight.popleft()
        if decision.outcome is ReadOutcome.ABSENT:
            return
        if decision.outcome is ReadOutcome.UNDECIDABLE:
            raise LedgerRecoveryError(
                f"ledger {metadata.ledger_id}: cannot tell whether entry {entry_id} was "
                f"acknowledged: replicas {replica_addresses(metadata, entry_id)} are "
                f"unreachable or damaged (missing on {len(decision.missing)}, errors on "
                f"{len(decision.errors)})"
            )
        assert decision.value is not None
        yield decision.value
        entry_id += 1


def recovery_read(
    pool: NodePool, metadata: LedgerMetadata, entry_id: int, fenced: set[str]
) -> defer.Deferred[RecoveryReadQuorum[_RecoveredEntry]]:
    """Ask the whole write set of `entry_id` for it; fires with the decision as soon as one
    can be made. Nodes not in `fenced` (they missed the fencing round) are fenced as they
    are read; fencing an already fenced node again would cost it a journal write."""
    quorum: RecoveryReadQuorum[_RecoveredEntry] = RecoveryReadQuorum(
        metadata.write_quorum, metadata.ack_quorum
    )
    result: defer.Deferred[RecoveryReadQuorum[_RecoveredEntry]] = defer.Deferred()

    def settle(outcome: ReadOutcome) -> None:
        if outcome is not ReadOutcome.PENDING and not result.called:
            result.callback(quorum)

    def on_stored(stored: bytes, index: int) -> None:
        try:
            running_length, payload = unframe_entry(metadata.ledger_id, entry_id, stored)
        except CorruptEntryError:
            settle(quorum.record_error(index))
            return
        settle(quorum.record_found(index, _RecoveredEntry(stored, running_length, len(payload))))

    def on_error(failure: Failure, index: int) -> None:
        if failure.check(node_errors.NoSuchEntryError, node_errors.NoSuchLedgerError):
            settle(quorum.record_missing(index))
        else:
            settle(quorum.record_error(index))

    segment = metadata.segment_for(entry_id)
    for index in write_set(entry_id, metadata.ensemble_size, metadata.write_quorum):
        address = segment.nodes[index]
        reading = pool.client(address).read_entry(
            metadata.ledger_id, entry_id, fence=address not in fenced
        )
        reading.addCallbacks(on_stored, on_error, (index,), None, (index,))
    return result
