"""The auditor: finds ledgers that lost copies and marks them under-replicated.

Exactly one auditor runs at a time: processes running auto-recovery elect it with an
ephemeral node, /auto-recovery/auditor (`AuditorElection`); when its holder dies, its
session ends, the node vanishes and the others try again.

An audit (`Auditor.audit`) compares the storage nodes registered now (/storage-nodes) with
every ledger's metadata:
- a node some ledger names that has been away for the grace period is *lost*: every ledger
  naming it is marked with it (the workers replace it). The grace period lets a restarting
  node come back first. Absence is timed from when this auditor first saw it, so a new
  auditor waits a full grace period again — it errs on the side of not copying.
- a node that registered again with a new incarnation (a restart; maybe with a wiped disk,
  maybe after missing writes) gets every ledger naming it marked for a full check. The last
  incarnation seen of each node is kept in /auto-recovery/node-incarnations, so a restart is
  noticed even across auditor failovers.
Audits run when /storage-nodes changes, when a grace period runs out, and every
`audit_interval` seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from storage.ledger.errors import LedgerMetadataError, NoSuchLedgerError
from storage.ledger.ledger_store import LEDGERS_PATH, LedgerMetadataStore
from storage.ledger.node_pool import NODES_PATH
from storage.ledger.under_replication import UnderReplication, parse_ledger_ids
from storage.metadata.api import MetadataStore, SessionState
from storage.metadata.errors import BadVersionError, NodeExistsError, NoNodeError

log = logging.getLogger(__name__)

AUDITOR_PATH = "/auto-recovery/auditor"
INCARNATIONS_PATH = "/auto-recovery/node-incarnations"


def incarnation_of(registration: bytes) -> str:
    """What identifies one life of a storage node: the "incarnation" its registration
    carries, or (older nodes) the whole registration, which holds its pid."""
    try:
        document = json.loads(registration)
    except (UnicodeDecodeError, ValueError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("incarnation"), str):
        return document["incarnation"]
    return registration.decode("utf-8", "replace")


@dataclass
class AuditReport:
    live: frozenset[str]
    lost: set[str] = field(default_factory=set)  # away longer than the grace period
    away: set[str] = field(default_factory=set)  # named by ledgers, not registered now
    restarted: set[str] = field(default_factory=set)
    marked: set[int] = field(default_factory=set)  # ledgers marked by this audit


class Auditor:
    """Marks under-replicated ledgers; see the module docstring. One per cluster at a time."""

    def __init__(self, store: MetadataStore, *, grace_period: float, audit_interval: float,
                 clock: IReactorTime) -> None:
        self._store = store
        self._ledgers = LedgerMetadataStore(store)
        self._marks = UnderReplication(store)
        self._grace_period = grace_period
        self._audit_interval = audit_interval
        self._clock = clock
        self._away_since: dict[str, float] = {}  # node → when this auditor first missed it
        self._cancel_watch: Callable[[], None] | None = None
        self._loop: task.LoopingCall | None = None
        self._grace_timer: IDelayedCall | None = None
        self._auditing: defer.Deferred[None] | None = None
        self._busy = False
        self._audit_again = False
        self._running = False
        self.last_report: AuditReport | None = None

    def start(self) -> None:
        self._running = True
        self._cancel_watch = self._store.watch(NODES_PATH, lambda _: self.request_audit())
        self._loop = task.LoopingCall(self.request_audit)
        self._loop.clock = self._clock
        self._loop.start(self._audit_interval, now=True)

    async def stop(self) -> None:
        self._running = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._cancel_watch is not None:
            self._cancel_watch()
            self._cancel_watch = None
        if self._grace_timer is not None and self._grace_timer.active():
            self._grace_timer.cancel()
        if self._busy and self._auditing is not None:
            waiting: defer.Deferred[None] = defer.Deferred()
            self._auditing.addBoth(lambda result: (waiting.callback(None), result)[1])
            await waiting

    def request_audit(self) -> None:
        """Audit now, or right after the audit in progress."""
        if not self._running:
            return
        if self._busy:
            self._audit_again = True
            return
        self._busy = True
        self._auditing = defer.ensureDeferred(self._audit_until_quiet())
        self._auditing.addErrback(lambda failure: log.error(
            "audit failed: %s", failure.getErrorMessage()))

    async def _audit_until_quiet(self) -> None:
        try:
            while self._running:
                self._audit_again = False
                await self.audit()
                if not self._audit_again:
                    return
        finally:
            self._busy = False

    async def audit(self) -> AuditReport:
        """One audit: mark every ledger naming a lost or restarted node."""
        registrations = await self._registrations()
        live = frozenset(registrations)
        now = self._clock.seconds()
        incarnations, incarnations_version = await self._read_incarnations()
        report = AuditReport(live)
        report.restarted = {
            address for address, value in registrations.items()
            if address in incarnations and incarnations[address] != incarnation_of(value)}
        named_anywhere: set[str] = set()
        for ledger_id in parse_ledger_ids(await self._store.children(LEDGERS_PATH),
                                          LEDGERS_PATH):
            try:
                metadata, _ = await self._ledgers.read(ledger_id)
            except NoSuchLedgerError:
                continue
            except LedgerMetadataError as error:
                log.error("ledger %d: unreadable metadata, not audited: %s", ledger_id, error)
                continue
            named = metadata.all_nodes()
            named_anywhere |= named
            away = named - live
            for address in away:
                self._away_since.setdefault(address, now)
            lost = {a for a in away if now - self._away_since[a] >= self._grace_period}
            restarted = named & report.restarted
            report.away |= away
            report.lost |= lost
            if lost or restarted:
                reason = "; ".join(
                    [f"storage node {a} lost" for a in sorted(lost)]
                    + [f"storage node {a} restarted" for a in sorted(restarted)])
                await self._marks.mark(ledger_id, frozenset(lost), reason)
                report.marked.add(ledger_id)
        # Forget absences that ended or no longer matter.
        for address in list(self._away_since):
            if address not in report.away:
                del self._away_since[address]
        await self._write_incarnations(registrations, incarnations, incarnations_version,
                                       named_anywhere)
        self._schedule_grace_expiry(report.away - report.lost)
        if report.lost or report.restarted:
            log.info("audit: lost %s, restarted %s, %d ledgers marked", sorted(report.lost),
                     sorted(report.restarted), len(report.marked))
        self.last_report = report
        return report

    async def _registrations(self) -> dict[str, bytes]:
        registrations = {}
        for address in await self._store.children(NODES_PATH):
            found = await self._store.get(f"{NODES_PATH}/{address}")
            if found is not None:  # it may have gone between the two reads
                registrations[address] = found.value
        return registrations

    async def _read_incarnations(self) -> tuple[dict[str, str], int | None]:
        found = await self._store.get(INCARNATIONS_PATH)
        if found is None:
            return {}, None
        try:
            document = json.loads(found.value)
            if not (isinstance(document, dict)
                    and all(isinstance(v, str) for v in document.values())):
                raise ValueError("not an object of strings")
        except (UnicodeDecodeError, ValueError) as error:
            # Only restart detection depends on it; start afresh rather than stop auditing.
            log.error("%s is unreadable (%s); starting it afresh", INCARNATIONS_PATH, error)
            return {}, found.version
        return document, found.version

    async def _write_incarnations(self, registrations: dict[str, bytes],
                                  previous: dict[str, str], version: int | None,
                                  named_anywhere: set[str]) -> None:
        # Keep what we know of nodes away now but still named, so that their return as a
        # new incarnation is noticed.
        current = {address: known for address, known in previous.items()
                   if address in named_anywhere}
        current.update({address: incarnation_of(value)
                        for address, value in registrations.items()})
        if current == previous:
            return
        value = json.dumps(current, sort_keys=True).encode()
        try:
            if version is None:
                await self._store.create(INCARNATIONS_PATH, value)
            else:
                await self._store.set(INCARNATIONS_PATH, value, expected_version=version)
        except (NodeExistsError, BadVersionError, NoNodeError):
            # Another auditor (during a failover) wrote it: audit again with what it wrote.
            self._audit_again = True

    def _schedule_grace_expiry(self, waiting: set[str]) -> None:
        if self._grace_timer is not None and self._grace_timer.active():
            self._grace_timer.cancel()
        self._grace_timer = None
        if not waiting or not self._running:
            return
        expiry = min(self._away_since[a] for a in waiting) + self._grace_period
        delay = max(0.0, expiry - self._clock.seconds())
        self._grace_timer = self._clock.callLater(delay, self.request_audit)


class AuditorElection:
    """Holds /auto-recovery/auditor for `identity` whenever nobody else does.

    `on_elected()` is called when this process becomes the auditor, `on_deposed()` when it
    stops being it (its session was lost, or it stepped down).
    """

    def __init__(self, store: MetadataStore, identity: str, *,
                 on_elected: Callable[[], None], on_deposed: Callable[[], None]) -> None:
        self._store = store
        self._identity = identity.encode()
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._cancel_watch: Callable[[], None] | None = None
        self._stopped = False
        self._trying = False
        self._try_again = False
        self.is_leader = False

    async def start(self) -> None:
        self._store.add_session_listener(self._session_changed)
        self._cancel_watch = self._store.watch(AUDITOR_PATH, lambda _: self._try_soon())
        await self._try()

    def _try_soon(self) -> None:
        if self._trying:
            self._try_again = True
            return
        defer.ensureDeferred(self._try()).addErrback(lambda failure: log.warning(
            "auditor election: %s", failure.getErrorMessage()))

    async def _try(self) -> None:
        self._trying = True
        try:
            while True:
                self._try_again = False
                await self._try_once()
                if not self._try_again:
                    return
        finally:
            self._trying = False

    async def _try_once(self) -> None:
        if self._stopped or self.is_leader:
            return
        try:
            await self._store.create(AUDITOR_PATH, self._identity, ephemeral=True)
        except NodeExistsError:
            found = await self._store.get(AUDITOR_PATH)
            if found is None or found.value != self._identity:
                return  # someone else is the auditor; the watch tells us when it goes
        self.is_leader = True
        log.info("this process is now the auditor (%s)", self._identity.decode())
        self._on_elected()

    def _session_changed(self, state: SessionState) -> None:
        if self._stopped:
            return
        if state is SessionState.LOST and self.is_leader:
            # The ephemeral node went with the session: someone else may be auditor now.
            self.is_leader = False
            log.warning("auditor session lost; stepping down")
            self._on_deposed()
        elif state is SessionState.CONNECTED:
            self._try_soon()

    async def stop(self) -> None:
        self._stopped = True
        if self._cancel_watch is not None:
            self._cancel_watch()
            self._cancel_watch = None
        if self.is_leader:
            self.is_leader = False
            self._on_deposed()
            found = await self._store.get(AUDITOR_PATH)
            if found is not None and found.value == self._identity:
                with contextlib.suppress(NoNodeError, BadVersionError):
                    await self._store.delete(AUDITOR_PATH, expected_version=found.version)
