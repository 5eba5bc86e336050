"""Reading ledger entries: ReadHandle, replica fail-over and last-add-confirmed queries.

An entry is read from the first replica of its write set; on any failure (node down, entry
missing there, damaged copy) the next replica is tried. Ranges are read with a bounded number
of entries in flight. Everything is callback-driven (no coroutine per entry): reads are a hot
path when consumers catch up.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.python.failure import Failure

from storage.ledger.entry_format import unframe_entry
from storage.ledger.errors import (
    CorruptEntryError,
    EntryRangeError,
    LedgerReadError,
    NoSuchEntryError,
)
from storage.ledger.ledger_store import LedgerMetadataStore
from storage.ledger.metadata import LedgerMetadata
from storage.ledger.node_pool import NodePool
from storage.ledger.quorum import LastAddConfirmedQuorum, write_set
from storage.node import errors as node_errors

DEFAULT_READ_WINDOW = 256  # entries of one range read in flight at once


def replica_addresses(metadata: LedgerMetadata, entry_id: int) -> list[str]:
    """The nodes holding `entry_id`, in write-set order."""
    segment = metadata.segment_for(entry_id)
    indexes = write_set(entry_id, metadata.ensemble_size, metadata.write_quorum)
    return [segment.nodes[index] for index in indexes]


def read_entry(
    pool: NodePool, metadata: LedgerMetadata, entry_id: int
) -> defer.Deferred[tuple[int, bytes]]:
    """(running length, payload) of one entry, from whichever replica has a verified copy."""
    addresses = pool.preferred_order(replica_addresses(metadata, entry_id))
    return _ReplicaRead(pool, metadata.ledger_id, entry_id, addresses).start()


class _ReplicaRead:
    """Tries the replicas of one entry in turn until one returns a copy that verifies."""

    def __init__(self, pool: NodePool, ledger_id: int, entry_id: int, addresses: list[str]):
        self._pool = pool
        self._ledger_id = ledger_id
        self._entry_id = entry_id
        self._addresses = addresses
        self._attempt = 0
        self._problems: list[tuple[str, str, str]] = []  # (address, kind, message)
        self._result: defer.Deferred[tuple[int, bytes]] = defer.Deferred()

    def start(self) -> defer.Deferred[tuple[int, bytes]]:
        self._try_next()
        return self._result

    def _try_next(self) -> None:
        if self._attempt == len(self._addresses):
            self._result.errback(self._final_error())
            return
        address = self._addresses[self._attempt]
        self._attempt += 1
        reading = self._pool.client(address).read_entry(self._ledger_id, self._entry_id)
        reading.addCallbacks(self._on_stored, self._on_failed, (address,), None, (address,))

    def _on_stored(self, stored: bytes, address: str) -> None:
        try:
            unframed = unframe_entry(self._ledger_id, self._entry_id, stored)
        except CorruptEntryError as error:
            self._problems.append((address, "corrupt", str(error)))
            self._try_next()
            return
        self._pool.report_success(address)
        self._result.callback(unframed)

    def _on_failed(self, failure: Failure, address: str) -> None:
        if failure.check(node_errors.NoSuchEntryError, node_errors.NoSuchLedgerError):
            kind = "missing"
        elif failure.check(node_errors.CorruptEntryError):
            kind = "corrupt"
        else:
            kind = "unavailable"
            self._pool.report_failure(address)
        self._problems.append((address, kind, str(failure.value)))
        self._try_next()

    def _final_error(self) -> Exception:
        kinds = {kind for _, kind, _ in self._problems}
        details = "; ".join(f"{address}: {message}" for address, _, message in self._problems)
        what = f"ledger {self._ledger_id} entry {self._entry_id}"
        if "corrupt" in kinds:
            return CorruptEntryError(f"{what}: no intact replica ({details})")
        if kinds == {"missing"}:
            return NoSuchEntryError(f"{what}: no replica holds it ({details})")
        return LedgerReadError(f"{what}: no replica could be read ({details})")


class _RangeRead:
    """Reads first..last with at most `window` entries in flight; fails on the first error."""

    def __init__(
        self, pool: NodePool, metadata: LedgerMetadata, first: int, last: int, window: int
    ) -> None:
        self._pool = pool
        self._metadata = metadata
        self._first = first
        self._last = last
        self._window = window
        self._next = first
        self._outstanding = 0
        self._filling = False
        self._payloads: list[bytes] = [b""] * (last - first + 1)
        self._result: defer.Deferred[list[bytes]] = defer.Deferred()

    def start(self) -> defer.Deferred[list[bytes]]:
        self._fill()
        return self._result

    def _fill(self) -> None:
        # Replies may arrive synchronously (in-process nodes); the flag turns what would be
        # deep recursion into this loop.
        if self._filling:
            return
        self._filling = True
        try:
            while (not self._result.called and self._next <= self._last
                   and self._outstanding < self._window):
                entry_id = self._next
                self._next += 1
                self._outstanding += 1
                reading = read_entry(self._pool, self._metadata, entry_id)
                reading.addCallbacks(self._on_payload, self._on_error, (entry_id,))
        finally:
            self._filling = False
        if self._outstanding == 0 and not self._result.called:
            self._result.callback(self._payloads)

    def _on_payload(self, unframed: tuple[int, bytes], entry_id: int) -> None:
        self._outstanding -= 1
        self._payloads[entry_id - self._first] = unframed[1]
        self._fill()

    def _on_error(self, failure: Failure) -> None:
        self._outstanding -= 1
        if not self._result.called:
            self._result.errback(failure)


def query_last_add_confirmed(
    pool: NodePool, metadata: LedgerMetadata, *, fence: bool
) -> defer.Deferred[LastAddConfirmedQuorum]:
    """Ask every node of the current ensemble for its last-add-confirmed.

    Fires with the collected answers once they cover every write set (for a fencing read,
    that is when the ledger is safely fenced), or once every node answered; the caller
    decides whether what was gathered is enough (`LastAddConfirmedQuorum.sufficient`).
    """
    quorum = LastAddConfirmedQuorum(metadata.ensemble_size, metadata.write_quorum, metadata.ack_quorum)
    result: defer.Deferred[LastAddConfirmedQuorum] = defer.Deferred()

    def settle() -> None:
        if not result.called and (quorum.sufficient or quorum.complete):
            result.callback(quorum)

    def on_answer(lac_result, index: int, address: str) -> None:
        pool.report_success(address)
        quorum.record_answer(index, lac_result.last_add_confirmed)
        settle()

    def on_error(failure: Failure, index: int, address: str) -> None:
        if failure.check(node_errors.NoSuchLedgerError):
            # The node never stored an entry of this ledger; with fence=True it is now fenced.
            quorum.record_answer(index, -1)
        else:
            pool.report_failure(address)
            quorum.record_failure(index)
        settle()

    for index, address in enumerate(metadata.current_ensemble.nodes):
        asking = pool.client(address).read_last_add_confirmed(metadata.ledger_id, fence=fence)
        asking.addCallbacks(on_answer, on_error, (index, address), None, (index, address))
    return result


class ReadHandle:
    """Reads entries 0..last_add_confirmed of one ledger."""

    def __init__(
        self,
        ledger_store: LedgerMetadataStore,
        pool: NodePool,
        metadata: LedgerMetadata,
        last_add_confirmed: int,
        *,
        read_window: int = DEFAULT_READ_WINDOW,
    ) -> None:
        self.ledger_id = metadata.ledger_id
        self.metadata = metadata
        self.last_add_confirmed = last_add_confirmed
        self._ledger_store = ledger_store
        self._pool = pool
        self._read_window = read_window

    def read(self, first_entry: int, last_entry: int) -> defer.Deferred[list[bytes]]:
        """Payloads of entries first_entry..last_entry (inclusive), in order."""
        if not 0 <= first_entry <= last_entry <= self.last_add_confirmed:
            return defer.fail(EntryRangeError(
                f"ledger {self.ledger_id}: cannot read entries {first_entry}..{last_entry}; "
                f"readable entries are 0..{self.last_add_confirmed}"
            ))
        return _RangeRead(
            self._pool, self.metadata, first_entry, last_entry, self._read_window
        ).start()

    def read_last_add_confirmed(self) -> defer.Deferred[int]:
        """Refresh last_add_confirmed from the ledger's nodes (an open ledger grows)."""
        return defer.ensureDeferred(self._refresh_last_add_confirmed())

    async def _refresh_last_add_confirmed(self) -> int:
        if not self.metadata.is_closed:
            # The writer may have changed ensembles or closed the ledger since we looked.
            self.metadata, _ = await self._ledger_store.read(self.ledger_id)
        if self.metadata.is_closed:
            self.last_add_confirmed = self.metadata.last_entry_id
            return self.last_add_confirmed
        answers = await query_last_add_confirmed(self._pool, self.metadata, fence=False)
        if not answers.answered:
            raise LedgerReadError(
                f"ledger {self.ledger_id}: no node of {list(self.metadata.current_ensemble.nodes)}"
                " answered a last-add-confirmed query"
            )
        self.last_add_confirmed = max(self.last_add_confirmed, answers.max_last_add_confirmed)
        return self.last_add_confirmed

    def close(self) -> defer.Deferred[None]:
        """Reading needs no cleanup; present so every handle can be closed alike."""
        return defer.succeed(None)
