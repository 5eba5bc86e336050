"""The quorum rules of replicated ledgers, as plain classes with no I/O.

Vocabulary (as in BookKeeper): a ledger's *ensemble* is a list of E storage nodes; entry e is
written to its *write set*, the Qw nodes at ensemble indexes (e + k) % E for k < Qw; an append
is acknowledged once Qa of them confirmed it (the *ack quorum*) and every earlier entry was
acknowledged too, which is what makes the last-add-confirmed (LAC) advance in order.

Everything here is decided from counts and indexes only, so it is unit-tested exhaustively
without sockets; the writer, reader and recovery modules feed it events and act on answers.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


def write_set(entry_id: int, ensemble_size: int, write_quorum: int) -> tuple[int, ...]:
    """Ensemble indexes that store `entry_id`, in the order readers should try them."""
    return tuple((entry_id + k) % ensemble_size for k in range(write_quorum))


def every_write_set_covered(
    responded: Iterable[int], ensemble_size: int, write_quorum: int, ack_quorum: int
) -> bool:
    """True when, in every possible write set, fewer than Qa nodes are missing from `responded`.

    This is the fencing condition: if each write set has at least Qw - Qa + 1 fenced nodes, no
    writer can still collect Qa acknowledgements for any entry without a fenced node.
    """
    answered = set(responded)
    for first in range(ensemble_size):
        silent = sum(1 for index in write_set(first, ensemble_size, write_quorum)
                     if index not in answered)
        if silent >= ack_quorum:
            return False
    return True


@dataclass
class PendingEntry(Generic[T]):
    entry_id: int
    item: T
    write_set: tuple[int, ...]
    acked: set[int] = field(default_factory=set)


class AckQueue(Generic[T]):
    """Appended entries waiting for their ack quorum; they complete strictly in entry order.

    `item` is whatever the writer needs per entry (payload, Deferred, ...): the queue only
    counts acknowledgements per ensemble index and decides when entries are done.
    """

    def __init__(
        self, ensemble_size: int, write_quorum: int, ack_quorum: int,
        last_add_confirmed: int = -1,
    ) -> None:
        self.ensemble_size = ensemble_size
        self.write_quorum = write_quorum
        self.ack_quorum = ack_quorum
        self.last_add_confirmed = last_add_confirmed
        self.next_entry_id = last_add_confirmed + 1
        # Keyed by entry id; ids are contiguous from last_add_confirmed + 1 to next_entry_id - 1.
        self._pending: dict[int, PendingEntry[T]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[PendingEntry[T]]:
        """Pending entries in entry order."""
        for entry_id in range(self.last_add_confirmed + 1, self.next_entry_id):
            pending = self._pending.get(entry_id)
            if pending is not None:
                yield pending

    def push(self, item: T) -> PendingEntry[T]:
        """Assign the next entry id to `item`; returns its pending record."""
        entry_id = self.next_entry_id
        self.next_entry_id += 1
        pending = PendingEntry(
            entry_id, item, write_set(entry_id, self.ensemble_size, self.write_quorum)
        )
        self._pending[entry_id] = pending
        return pending

    def record_ack(self, entry_id: int, index: int) -> bool:
        """Count an acknowledgement of `entry_id` by ensemble `index`.

        Returns True when this ack made the entry reach its ack quorum. Acks for entries that
        are no longer pending, or from an index outside the entry's write set, are ignored.
        """
        pending = self._pending.get(entry_id)
        if pending is None or index not in pending.write_set or index in pending.acked:
            return False
        pending.acked.add(index)
        return len(pending.acked) == self.ack_quorum

    def pop_completed(self) -> list[PendingEntry[T]]:
        """Remove and return, in order, the leading entries that reached their ack quorum."""
        done: list[PendingEntry[T]] = []
        while True:
            pending = self._pending.get(self.last_add_confirmed + 1)
            if pending is None or len(pending.acked) < self.ack_quorum:
                return done
            del self._pending[pending.entry_id]
            self.last_add_confirmed = pending.entry_id
            done.append(pending)

    def forget_index(self, index: int) -> list[PendingEntry[T]]:
        """The node at `index` was replaced: its acks no longer count (the metadata now says
        another node stores these entries). Returns the pending entries it must receive."""
        affected = [pending for pending in self if index in pending.write_set]
        for pending in affected:
            pending.acked.discard(index)
        return affected

    def missing_at(self, index: int) -> list[PendingEntry[T]]:
        """Pending entries that ensemble `index` should store but has not acknowledged."""
        return [p for p in self if index in p.write_set and index not in p.acked]

    def drain(self) -> list[PendingEntry[T]]:
        """Remove and return every pending entry (used when the writer fails)."""
        drained = list(self)
        self._pending.clear()
        return drained


class LastAddConfirmedQuorum:
    """Collects the answers of one ensemble's nodes to a last-add-confirmed query.

    For a fencing query (fence=True), the ledger is safely fenced once the answers cover
    every write set (see `every_write_set_covered`); that is `sufficient`. It is `hopeless`
    once all nodes answered and that still does not hold.
    """

    def __init__(self, ensemble_size: int, write_quorum: int, ack_quorum: int) -> None:
        self.ensemble_size = ensemble_size
        self.write_quorum = write_quorum
        self.ack_quorum = ack_quorum
        self.answered: set[int] = set()
        self.failed: set[int] = set()
        self.max_last_add_confirmed = -1

    def record_answer(self, index: int, last_add_confirmed: int) -> None:
        self.answered.add(index)
        self.max_last_add_confirmed = max(self.max_last_add_confirmed, last_add_confirmed)

    def record_failure(self, index: int) -> None:
        self.failed.add(index)

    @property
    def complete(self) -> bool:
        """Every node either answered or failed."""
        return len(self.answered | self.failed) >= self.ensemble_size

    @property
    def sufficient(self) -> bool:
        return every_write_set_covered(
            self.answered, self.ensemble_size, self.write_quorum, self.ack_quorum
        )

    @property
    def hopeless(self) -> bool:
        return self.complete and not self.sufficient


class ReadOutcome(enum.Enum):
    PENDING = "pending"  # wait for more answers
    FOUND = "found"  # some replica has the entry: it may have been acknowledged
    ABSENT = "absent"  # enough replicas lack it that it cannot have been acknowledged
    UNDECIDABLE = "undecidable"  # everyone answered, too many with errors to tell


class RecoveryReadQuorum(Generic[T]):
    """Decides, from the answers of one entry's write set, whether recovery must keep it.

    Found on any replica → it may have been acknowledged, so recovery re-replicates it.
    Absent only when Qw - Qa + 1 replicas say "no such entry": then at most Qa - 1 replicas
    can hold it, so no writer ever got its ack quorum.
    """

    def __init__(self, write_quorum: int, ack_quorum: int) -> None:
        self.write_quorum = write_quorum
        self.absent_needed = write_quorum - ack_quorum + 1
        self.missing: set[int] = set()
        self.errors: set[int] = set()
        self.value: T | None = None
        self.outcome = ReadOutcome.PENDING

    def record_found(self, index: int, value: T) -> ReadOutcome:
        if self.outcome is ReadOutcome.PENDING:
            self.value = value
            self.outcome = ReadOutcome.FOUND
        return self.outcome

    def record_missing(self, index: int) -> ReadOutcome:
        self.missing.add(index)
        return self._decide()

    def record_error(self, index: int) -> ReadOutcome:
        self.errors.add(index)
        return self._decide()

    def _decide(self) -> ReadOutcome:
        if self.outcome is not ReadOutcome.PENDING:
            return self.outcome
        if len(self.missing) >= self.absent_needed:
            self.outcome = ReadOutcome.ABSENT
        elif len(self.missing) + len(self.errors) >= self.write_quorum:
            self.outcome = ReadOutcome.UNDECIDABLE
        return self.outcome


def choose_ensemble(live: Iterable[str], size: int, rng: random.Random) -> list[str] | None:
    """`size` distinct nodes picked at random from `live`, or None if there are too few."""
    candidates = sorted(set(live))
    if len(candidates) < size:
        return None
    return rng.sample(candidates, size)


def choose_replacements(
    ensemble: Sequence[str],
    failed_indexes: Iterable[int],
    candidates: Iterable[str],
    rng: random.Random,
) -> dict[int, str]:
    """Pick a distinct new node for as many failed indexes as possible.

    Candidates already in the ensemble are never chosen (a node may hold only one index).
    Indexes left out of the answer have no replacement available right now.
    """
    available = sorted(set(candidates) - set(ensemble))
    rng.shuffle(available)
    return dict(zip(sorted(set(failed_indexes)), available, strict=False))
