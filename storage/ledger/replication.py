"""Re-replication: give every entry of a closed ledger its Qw copies again.

`LedgerRepairer.repair(ledger_id, lost)` checks every fragment of the ledger (see
replication_plan): it asks each target node which entries it holds (LIST_ENTRIES), copies
the missing ones byte for byte from a surviving replica (a recovery add, which a fenced
ledger accepts too), and only then records replacement nodes in the metadata with a
compare-and-set. Running it again on a repaired ledger reads a little and changes nothing.

Only CLOSED ledgers are repaired. An open ledger has a writer (or will be recovered by its
next owner): its writer's ensemble changes take care of new entries, and touching its
metadata would fence it. Entries it wrote to a lost node before its ensemble change are
copied once the ledger is closed; the marker waits until then.

`ReplicationWorker` runs in every auto-recovery process: it takes marked ledgers one at a
time, under a per-ledger lock, repairs them, and removes the marker when nothing is left.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from storage.ledger.entry_format import unframe_entry
from storage.ledger.errors import CorruptEntryError, NoSuchLedgerError
from storage.ledger.ledger_store import LedgerMetadataStore, MetadataConflictError
from storage.ledger.metadata import LedgerMetadata
from storage.ledger.node_pool import NodePool
from storage.ledger.replication_plan import (
    Fragment,
    FragmentTarget,
    choose_targets,
    copy_sources,
    missing_entries,
    with_replacements,
)
from storage.ledger.under_replication import MARKERS_PATH, UnderReplication
from storage.node import errors as node_errors
from storage.node.api import MAX_LIST_ENTRIES, decode_entry_bitmap

log = logging.getLogger(__name__)

DEFAULT_COPY_WINDOW = 64  # entries being copied at once, per ledger


class RepairOutcome(enum.Enum):
    REPAIRED = "repaired"  # every entry has all its copies on nodes the metadata names
    WAITING = "waiting"  # open ledger, or something cannot be done now: look again later
    DELETED = "deleted"  # the ledger no longer exists


@dataclass
class RepairReport:
    ledger_id: int
    outcome: RepairOutcome
    entries_copied: int = 0
    replacements: dict[tuple[int, int], str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class FragmentRepairError(Exception):
    """One fragment could not be completed now (node unreachable, no intact source)."""


class TargetRefusedError(FragmentRepairError):
    """The target node refuses the ledger: it deleted its own copy earlier (a tombstone,
    e.g. left by garbage collection of an unrecorded copy) and takes no more entries of it."""


class LedgerRepairer:
    """Repairs one ledger at a time; see the module docstring."""

    # Plans per repair: a lost compare-and-set on the metadata, or a replacement node that
    # refuses the ledger, leads to a new plan.
    PLAN_ATTEMPTS = 3

    def __init__(self, ledger_store: LedgerMetadataStore, pool: NodePool, *,
                 copy_window: int = DEFAULT_COPY_WINDOW,
                 rng: random.Random | None = None) -> None:
        self._ledgers = ledger_store
        self._pool = pool
        self._copy_window = copy_window
        self._rng = rng or random.Random()

    async def repair(self, ledger_id: int, lost: Iterable[str] = ()) -> RepairReport:
        """Restore the copies of `ledger_id`; nodes in `lost` (confirmed gone) are replaced."""
        lost = frozenset(lost)
        report = RepairReport(ledger_id, RepairOutcome.WAITING)
        refusing: set[str] = set()
        for _ in range(self.PLAN_ATTEMPTS):
            try:
                metadata, version = await self._ledgers.read(ledger_id)
            except NoSuchLedgerError:
                report.outcome = RepairOutcome.DELETED
                return report
            if not metadata.is_closed:
                report.problems = [f"ledger is {metadata.state.value}: repaired once closed"]
                return report
            live = self._pool.live_addresses()
            plan = choose_targets(metadata, live, lost, self._rng, avoid=self._pool.suspects(),
                                  exclude=refusing)
            report.problems = list(plan.blocked)
            completed: dict[tuple[int, int], str] = {}
            plan_again = False
            for target in plan.targets:
                try:
                    report.entries_copied += await self._fill(metadata, target, live)
                except TargetRefusedError as error:
                    report.problems.append(str(error))
                    refusing.add(target.address)
                    plan_again = plan_again or target.is_replacement  # another may take it
                    continue
                except FragmentRepairError as error:
                    report.problems.append(str(error))
                    continue
                if target.is_replacement:
                    fragment = target.fragment
                    completed[(fragment.segment_number, fragment.ensemble_index)] = target.address
            if completed:
                try:
                    await self._ledgers.write(with_replacements(metadata, completed), version)
                except MetadataConflictError:
                    continue  # changed under us (deleted, or another worker): plan again
                except NoSuchLedgerError:
                    report.outcome = RepairOutcome.DELETED
                    return report
                report.replacements.update(completed)
                log.info("ledger %d: replaced %s", ledger_id, {
                    metadata.ensembles[number].nodes[index]: address
                    for (number, index), address in completed.items()})
            if plan_again:
                continue
            if not report.problems:
                report.outcome = RepairOutcome.REPAIRED
            return report
        report.problems.append(f"gave up after {self.PLAN_ATTEMPTS} plans (metadata kept "
                               "changing, or replacement nodes refused the ledger)")
        return report

    async def _fill(self, metadata: LedgerMetadata, target: FragmentTarget,
                    live: frozenset[str]) -> int:
        """Copy to the target every entry of its fragment it lacks; returns how many."""
        fragment = target.fragment
        if fragment.is_empty:
            return 0
        held = await self._held_entries(metadata.ledger_id, target.address, fragment)
        missing = missing_entries(fragment, held)
        if not missing:
            return 0
        log.info("ledger %d: copying %d entries of segment %d to %s", metadata.ledger_id,
                 len(missing), fragment.segment_number, target.address)
        client = self._pool.client(target.address)

        async def copy(entry_id: int) -> None:
            stored = await self._intact_copy(metadata, target, entry_id, live)
            try:
                await client.add_entry(metadata.ledger_id, entry_id, metadata.last_entry_id,
                                       stored, recovery=True)
            except node_errors.NoSuchLedgerError as error:
                raise TargetRefusedError(
                    f"{target.address} refuses entries of the ledger: {error}") from None
            except node_errors.StorageNodeError as error:
                raise FragmentRepairError(
                    f"{target.address} did not take entry {entry_id}: {error}") from None

        await run_bounded(missing, self._copy_window, copy)
        return len(missing)

    async def _held_entries(self, ledger_id: int, address: str, fragment: Fragment) -> set[int]:
        client = self._pool.client(address)
        held: set[int] = set()
        first = fragment.first_entry_id
        while first <= fragment.last_entry_id:
            count = min(MAX_LIST_ENTRIES, fragment.last_entry_id - first + 1)
            try:
                bitmap = await client.list_entries(ledger_id, first, count)
            except node_errors.NoSuchLedgerError:
                return held  # the node holds nothing of the ledger (a replacement, or wiped)
            except node_errors.StorageNodeError as error:
                if isinstance(error, node_errors.NodeUnavailableError):
                    self._pool.report_failure(address)
                raise FragmentRepairError(
                    f"cannot list the entries {address} holds: {error}") from None
            held.update(decode_entry_bitmap(bitmap, first))
            first += count
        return held

    async def _intact_copy(self, metadata: LedgerMetadata, target: FragmentTarget,
                           entry_id: int, live: frozenset[str]) -> bytes:
        """The stored bytes of the entry from the first source whose copy verifies."""
        sources = self._pool.preferred_order(copy_sources(metadata, target, entry_id, live))
        problems = []
        for address in sources:
            try:
                stored = await self._pool.client(address).read_entry(metadata.ledger_id,
                                                                     entry_id)
                unframe_entry(metadata.ledger_id, entry_id, stored)
            except CorruptEntryError as error:
                problems.append(f"{address}: {error}")
                continue
            except node_errors.StorageNodeError as error:
                if isinstance(error, node_errors.NodeUnavailableError):
                    self._pool.report_failure(address)
                problems.append(f"{address}: {error}")
                continue
            return stored
        raise FragmentRepairError(
            f"entry {entry_id} has no intact copy to take for {target.address} "
            f"({'; '.join(problems) or 'no live replica'})")


async def run_bounded(items: Iterable[int], window: int,
                      work: Callable[[int], Awaitable[None]]) -> None:
    """Run work(item) for every item, at most `window` at once; stop starting new ones
    after the first failure and re-raise it once the running ones are done."""
    slots = defer.DeferredSemaphore(window)
    failures: list[Failure] = []
    running: set[defer.Deferred[None]] = set()

    def finished(result: object, doing: defer.Deferred[None]) -> None:
        running.discard(doing)
        slots.release()
        if isinstance(result, Failure):
            failures.append(result)

    for item in items:
        await slots.acquire()
        if failures:
            slots.release()
            break
        doing = defer.ensureDeferred(work(item))
        running.add(doing)
        doing.addBoth(finished, doing)
    await defer.DeferredList(list(running))
    if failures:
        failures[0].raiseException()


class ReplicationWorker:
    """Repairs marked ledgers, one at a time, under each ledger's lock."""

    def __init__(self, store_marks: UnderReplication, repairer: LedgerRepairer,
                 ledger_store: LedgerMetadataStore, *, owner: str, retry_interval: float,
                 clock: IReactorTime, rng: random.Random | None = None) -> None:
        self._marks = store_marks
        self._repairer = repairer
        self._ledgers = ledger_store
        self._owner = owner
        self._retry_interval = retry_interval
        self._clock = clock
        self._rng = rng or random.Random()
        self._cancel_watch: Callable[[], None] | None = None
        self._loop: task.LoopingCall | None = None
        self._pass: defer.Deferred[None] | None = None
        self._busy = False  # a pass is running (self._pass fires when it ends)
        self._pass_again = False
        self._stopping = False
        self.reports: list[RepairReport] = []  # the most recent ones, for logs and tests

    def start(self) -> None:
        self._cancel_watch = self._marks.store.watch(MARKERS_PATH, lambda _: self.wake())
        self._loop = task.LoopingCall(self.wake)
        self._loop.clock = self._clock
        self._loop.start(self._retry_interval, now=True)

    def wake(self) -> None:
        """Look at the markers now (or right after the pass in progress)."""
        if self._stopping:
            return
        if self._busy:
            self._pass_again = True
            return
        self._busy = True
        self._pass = defer.ensureDeferred(self._run_passes())
        self._pass.addErrback(lambda failure: log.error(
            "replication pass failed: %s", failure.getErrorMessage()))

    async def _run_passes(self) -> None:
        try:
            while True:
                self._pass_again = False
                await self.run_pass()
                if not self._pass_again or self._stopping:
                    return
        finally:
            self._busy = False

    async def run_pass(self) -> None:
        """One look at every marked ledger."""
        ledger_ids = await self._marks.marked_ledgers()
        self._rng.shuffle(ledger_ids)  # several workers then tend to start apart
        for ledger_id in ledger_ids:
            if self._stopping:
                return
            try:
                await self._work_on(ledger_id)
            except Exception as error:
                log.error("ledger %d: re-replication failed: %s", ledger_id, error)

    async def _work_on(self, ledger_id: int) -> None:
        try:
            metadata, _ = await self._ledgers.read(ledger_id)
            if not metadata.is_closed:
                return  # cheap check first: open ledgers wait, without taking the lock
        except NoSuchLedgerError:
            pass  # the repairer sees it too, and the marker goes
        if not await self._marks.try_lock(ledger_id, self._owner):
            return
        try:
            found = await self._marks.read(ledger_id)
            if found is None:
                return  # another worker finished it
            marker, version = found
            report = await self._repairer.repair(ledger_id, marker.lost)
            self._remember(report)
            if report.outcome is RepairOutcome.WAITING:
                log.info("ledger %d: re-replication waits: %s", ledger_id,
                         "; ".join(report.problems))
                return
            if not await self._marks.clear(ledger_id, version):
                self._pass_again = True  # marked again meanwhile: look once more
            elif report.outcome is RepairOutcome.REPAIRED:
                log.info("ledger %d: fully replicated (%d entries copied)", ledger_id,
                         report.entries_copied)
        finally:
            await self._marks.unlock(ledger_id, self._owner)

    def _remember(self, report: RepairReport) -> None:
        self.reports.append(report)
        del self.reports[:-100]

    async def stop(self) -> None:
        """Stop after the ledger being repaired now."""
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._cancel_watch is not None:
            self._cancel_watch()
            self._cancel_watch = None
        if self._busy and self._pass is not None:
            waiting: defer.Deferred[None] = defer.Deferred()
            self._pass.addBoth(lambda result: (waiting.callback(None), result)[1])
            await waiting
