"""WriteHandle: the single writer of an open ledger.

append() stripes each entry over its write set, piggybacks the last-add-confirmed, and
completes appends strictly in entry order once each reached its ack quorum (AckQueue).

When a node of the ensemble fails, the writer repairs the ensemble without failing appends:
  * if a live node outside the ensemble exists, it records an ensemble change in the ledger
    metadata (compare-and-set; entries from LAC + 1 on now live on the new node list), drops
    the failed node's acks for pending entries and sends them to the replacement. Completions
    are held while the change is in flight so the change point (LAC + 1) cannot move;
  * otherwise it waits (with back-off) for a replacement or for the failed node to answer
    again, then resends what that node is missing. Appends that make no progress for
    `node_wait_timeout` fail with NotEnoughNodesError.
A lost compare-and-set means someone else (a recovery) changed the metadata, and a node
answering "fenced" means the same: the writer then fails every pending and later append with
LedgerFencedError.
With Qa < Qw, entries acknowledged while a node was failing lack that node's copy; the
writer marks the ledger under-replicated so that auto-recovery checks it once it is closed.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from storage.ledger.entry_format import frame_entry_parts
from storage.ledger.errors import (
    EntryTooLargeError,
    LedgerClosedError,
    LedgerError,
    LedgerFencedError,
    NoSuchLedgerError,
    NotEnoughNodesError,
)
from storage.ledger.ledger_store import LedgerMetadataStore, MetadataConflictError
from storage.ledger.metadata import LedgerMetadata, LedgerState
from storage.ledger.node_pool import NodePool
from storage.ledger.quorum import AckQueue, PendingEntry, choose_replacements
from storage.ledger.reader import ReadHandle
from storage.ledger.settings import LedgerClientSettings
from storage.ledger.under_replication import UnderReplication
from storage.node import errors as node_errors
from storage.node.buffers import Payload, payload_length

log = logging.getLogger(__name__)


@dataclass
class _Append:
    """What the writer keeps per pending entry."""

    stored: Payload  # the framed entry sent to the nodes: bytes, or parts never joined here
    running_length: int  # payload bytes of the ledger up to and including this entry
    done: defer.Deferred[int]


class _SharedOutcome:
    """Lets any number of callers wait for one operation (close) and all see its outcome."""

    def __init__(self, operation: defer.Deferred[None]) -> None:
        self._settled = False
        self._outcome: object = None
        self._waiters: list[defer.Deferred[None]] = []
        operation.addBoth(self._settle)

    def _settle(self, outcome: object) -> None:
        self._settled, self._outcome = True, outcome
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._fire(waiter)

    def _fire(self, waiter: defer.Deferred[None]) -> None:
        if isinstance(self._outcome, Failure):
            waiter.errback(self._outcome)
        else:
            waiter.callback(None)

    def observe(self) -> defer.Deferred[None]:
        waiter: defer.Deferred[None] = defer.Deferred()
        if self._settled:
            self._fire(waiter)
        else:
            self._waiters.append(waiter)
        return waiter


class WriteHandle(ReadHandle):
    """Appends entries to one ledger, replicated over its ensemble."""

    def __init__(
        self,
        ledger_store: LedgerMetadataStore,
        pool: NodePool,
        metadata: LedgerMetadata,
        version: int,
        *,
        clock: IReactorTime,
        settings: LedgerClientSettings,
        rng: random.Random | None = None,
        recovery: bool = False,
        last_add_confirmed: int = -1,
        length: int = 0,
    ) -> None:
        super().__init__(
            ledger_store, pool, metadata, last_add_confirmed, read_window=settings.read_window
        )
        self.length = length  # payload bytes appended so far, acknowledged or not
        self._version = version
        self._clock = clock
        self._settings = settings
        self._rng = rng or random.Random()
        self._recovery = recovery  # recovery writers re-add entries of a fenced ledger
        self._queue: AckQueue[_Append] = AckQueue(
            metadata.ensemble_size, metadata.write_quorum, metadata.ack_quorum,
            last_add_confirmed,
        )
        self._confirmed_length = length
        self._failure: LedgerError | None = None
        self._closing = False
        self._close_outcome: _SharedOutcome | None = None
        # Ensemble indexes whose node failed and is not yet replaced or back: index → address.
        self._unavailable: dict[int, str] = {}
        self._repairing = False
        self._reported_missing_copies = False
        self._holding_completions = False
        self._completing = False
        self._complete_again = False
        self._idle_waiters: list[defer.Deferred[None]] = []

    # -- appending -------------------------------------------------------------------------

    def append(self, payload: Payload) -> defer.Deferred[int]:
        """Append `payload` (bytes, or parts: stored as if joined, without joining them) as
        the next entry; fires with its entry id once acknowledged. The payload's buffers must
        not change until then.

        A payload above `max_entry_bytes` fails with EntryTooLargeError and leaves the
        ledger untouched.
        """
        size = payload_length(payload)
        if size > self._settings.max_entry_bytes:
            return defer.fail(EntryTooLargeError(
                f"ledger {self.ledger_id}: entry of {size} bytes exceeds the "
                f"{self._settings.max_entry_bytes}-byte limit"
            ))
        entry_id = self._queue.next_entry_id
        running_length = self.length + size
        stored = frame_entry_parts(self.ledger_id, entry_id, running_length, payload)
        return self.append_stored(stored, running_length, size)

    def append_stored(
        self, stored: Payload, running_length: int, payload_size: int
    ) -> defer.Deferred[int]:
        """Append an already framed entry (recovery re-adds the exact bytes it read)."""
        if self._failure is not None:
            return defer.fail(self._failure)
        if self._closing:
            return defer.fail(LedgerClosedError(f"ledger {self.ledger_id} is closed"))
        self.length += payload_size
        append = _Append(stored, running_length, defer.Deferred())
        pending = self._queue.push(append)
        for index in pending.write_set:
            if index not in self._unavailable:
                self._send(pending, index)
        return append.done

    def _send(self, pending: PendingEntry[_Append], index: int) -> None:
        address = self.metadata.current_ensemble.nodes[index]
        sending = self._pool.client(address).add_entry(
            self.ledger_id, pending.entry_id, self.last_add_confirmed, pending.item.stored,
            recovery=self._recovery,
        )
        where = (pending.entry_id, index, address)
        sending.addCallbacks(self._on_added, self._on_add_failed, where, None, where)

    def _on_added(self, _: object, entry_id: int, index: int, address: str) -> None:
        if self._failure is not None or self.metadata.current_ensemble.nodes[index] != address:
            return  # the writer failed, or this node was replaced: its ack no longer counts
        if self._queue.record_ack(entry_id, index):
            self._complete_ready()

    def _complete_ready(self) -> None:
        """Fire, in entry order, every append that (with all before it) reached Qa."""
        if self._holding_completions:
            return
        if self._completing:
            # A callback we fired appended and got acked synchronously: let the outer loop
            # fire those, so Deferreds still fire in entry order.
            self._complete_again = True
            return
        self._completing = True
        try:
            while True:
                self._complete_again = False
                done = self._queue.pop_completed()
                if done:
                    self.last_add_confirmed = self._queue.last_add_confirmed
                    self._confirmed_length = done[-1].item.running_length
                    for pending in done:
                        pending.item.done.callback(pending.entry_id)
                if not self._complete_again:
                    break
        finally:
            self._completing = False
        self._wake_idle_waiters()

    # -- failures --------------------------------------------------------------------------

    def _on_add_failed(self, failure: Failure, entry_id: int, index: int, address: str) -> None:
        if self._failure is not None:
            return
        if failure.check(node_errors.LedgerFencedError):
            self._fail(LedgerFencedError(
                f"ledger {self.ledger_id} is fenced on {address}: another owner recovered it"
            ))
            return
        # Errors about the request or the ledger itself would follow it to any other node:
        # replacing the node cannot help.
        if failure.check(node_errors.NoSuchLedgerError):
            self._fail(NoSuchLedgerError(
                f"ledger {self.ledger_id} was deleted on {address} while being written"
            ))
            return
        if failure.check(node_errors.InvalidRequestError):
            self._fail(LedgerError(
                f"ledger {self.ledger_id}: {address} refused entry {entry_id}: "
                f"{failure.getErrorMessage()}"
            ))
            return
        if self.metadata.current_ensemble.nodes[index] != address or index in self._unavailable:
            return  # already being handled (or already replaced)
        log.warning(
            "ledger %d: node %s (ensemble index %d) failed entry %d: %s",
            self.ledger_id, address, index, entry_id, failure.getErrorMessage(),
        )
        self._unavailable[index] = address
        self._pool.report_failure(address)
        self._report_missing_copies(address)
        if not self._repairing:
            self._repairing = True
            defer.ensureDeferred(self._repair()).addErrback(self._on_repair_crashed)

    def _report_missing_copies(self, address: str) -> None:
        """With Qa < Qw, entries acknowledged without `address` stay a copy short even if it
        answers again; mark the ledger so auto-recovery checks it once closed (once per
        writer: the check covers every entry)."""
        if self._reported_missing_copies or self.metadata.ack_quorum == self.metadata.write_quorum:
            return
        self._reported_missing_copies = True
        marking = defer.ensureDeferred(UnderReplication(self._ledger_store.store).mark(
            self.ledger_id, frozenset(), f"its writer saw storage node {address} fail"))
        marking.addErrback(lambda failure: log.warning(
            "ledger %d: could not mark it under-replicated: %s", self.ledger_id,
            failure.getErrorMessage()))

    def _fail(self, error: LedgerError) -> None:
        """Fail every pending and future append with `error`; the handle is unusable after."""
        if self._failure is not None:
            return
        self._failure = error
        log.warning("ledger %d: writer failed: %s", self.ledger_id, error)
        for pending in self._queue.drain():
            pending.item.done.errback(error)
        self._wake_idle_waiters()

    def _on_repair_crashed(self, failure: Failure) -> None:
        self._repairing = False
        log.error("ledger %d: ensemble repair failed: %s", self.ledger_id, failure.value)
        self._fail(LedgerError(
            f"ledger {self.ledger_id}: could not repair the ensemble: {failure.getErrorMessage()}"
        ))

    async def _repair(self) -> None:
        """Replace or wait out failed nodes until none is left (or the writer fails)."""
        delay = self._settings.retry_initial_delay
        progress_mark = self.last_add_confirmed
        deadline = self._clock.seconds() + self._settings.node_wait_timeout
        try:
            while self._unavailable and self._failure is None:
                if self._closing and not self._queue:
                    return  # nothing left to deliver; close seals at the current LAC
                replacements = choose_replacements(
                    self.metadata.current_ensemble.nodes, self._unavailable,
                    self._replacement_candidates(), self._rng,
                )
                if replacements:
                    await self._change_ensemble(replacements)
                    continue
                await self._reconnect_failed_nodes()
                if not self._unavailable or self._failure is not None:
                    return
                now = self._clock.seconds()
                if not self._queue or self.last_add_confirmed != progress_mark:
                    progress_mark = self.last_add_confirmed
                    deadline = now + self._settings.node_wait_timeout
                elif now >= deadline:
                    self._fail(NotEnoughNodesError(
                        f"ledger {self.ledger_id}: nodes {sorted(self._unavailable.values())} "
                        f"unavailable for {self._settings.node_wait_timeout:g} s and no "
                        "replacement among the live nodes"
                    ))
                    return
                await task.deferLater(self._clock, delay)
                delay = min(delay * 2, self._settings.retry_max_delay)
        finally:
            self._repairing = False
            self._wake_idle_waiters()

    def _replacement_candidates(self) -> frozenset[str]:
        return self._pool.live_addresses() - self._pool.suspects()

    async def _change_ensemble(self, replacements: dict[int, str]) -> None:
        self._holding_completions = True  # keeps LAC, hence the change point, still
        try:
            first_entry_id = self.last_add_confirmed + 1
            updated = self.metadata.with_ensemble_change(first_entry_id, replacements)
            try:
                self._version = await self._ledger_store.write(updated, self._version)
            except MetadataConflictError:
                self._fail(LedgerFencedError(
                    f"ledger {self.ledger_id}: metadata changed under the writer during an "
                    "ensemble change (the ledger is being recovered)"
                ))
                return
            if self._failure is not None:
                return
            log.info(
                "ledger %d: ensemble change at entry %d: %s", self.ledger_id, first_entry_id,
                {self._unavailable.get(i): new for i, new in replacements.items()},
            )
            self.metadata = updated
            for index in replacements:
                self._unavailable.pop(index, None)
                for pending in self._queue.forget_index(index):
                    self._send(pending, index)
        finally:
            self._holding_completions = False
        self._complete_ready()

    async def _reconnect_failed_nodes(self) -> None:
        """Resume sending to failed nodes that answer again (no replacement was available)."""
        for index, address in list(self._unavailable.items()):
            if not await self._answers(address) or self._failure is not None:
                continue
            if self._unavailable.get(index) != address:
                continue
            log.info("ledger %d: node %s answers again", self.ledger_id, address)
            del self._unavailable[index]
            self._pool.report_success(address)
            for pending in self._queue.missing_at(index):
                self._send(pending, index)

    async def _answers(self, address: str) -> bool:
        try:
            await self._pool.client(address).read_last_add_confirmed(self.ledger_id)
        except node_errors.NodeUnavailableError:
            return False
        except node_errors.StorageNodeError:
            return True  # it answered, if only to say it has nothing for this ledger
        return True

    # -- reading and closing ---------------------------------------------------------------

    def read_last_add_confirmed(self) -> defer.Deferred[int]:
        return defer.succeed(self.last_add_confirmed)

    def close(self) -> defer.Deferred[None]:
        """Wait for pending appends, then seal the last acknowledged entry in the metadata.

        Later appends fail with LedgerClosedError. Fails with LedgerFencedError if another
        owner recovered the ledger first.
        """
        if self._close_outcome is None:
            self._closing = True
            self._close_outcome = _SharedOutcome(defer.ensureDeferred(self._close()))
        return self._close_outcome.observe()

    async def _close(self) -> None:
        while self._queue or self._repairing:
            waiter: defer.Deferred[None] = defer.Deferred()
            self._idle_waiters.append(waiter)
            await waiter
        if isinstance(self._failure, LedgerFencedError):
            raise LedgerFencedError(str(self._failure))
        sealed = replace(
            self.metadata, state=LedgerState.CLOSED,
            last_entry_id=self.last_add_confirmed, length=self._confirmed_length,
        )
        try:
            self._version = await self._ledger_store.write(sealed, self._version)
        except MetadataConflictError:
            current, version = await self._ledger_store.read(self.ledger_id)
            if not (current.is_closed and current.last_entry_id == self.last_add_confirmed):
                raise LedgerFencedError(
                    f"ledger {self.ledger_id} was recovered by another owner "
                    f"(state {current.state.value}, last entry {current.last_entry_id})"
                ) from None
            sealed, self._version = current, version
        self.metadata = sealed

    def _wake_idle_waiters(self) -> None:
        if self._queue or self._repairing:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)
