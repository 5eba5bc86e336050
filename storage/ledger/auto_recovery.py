"""Auto-recovery: restore the write-quorum copy count of every ledger after storage-node loss.

BookKeeper's design, in two roles that every auto-recovery process plays:
- the *auditor* (one per cluster, elected; storage/ledger/auditor.py) watches the registered
  storage nodes and marks under-replicated every ledger naming a node that stayed away longer
  than the grace period, or that came back as a new incarnation (restarted, perhaps wiped);
- *replication workers* (one per process; storage/ledger/replication.py) take marked ledgers
  one at a time under a per-ledger lock, copy the entries that lack copies from surviving
  replicas (to a replacement node, or back to a live node that misses them), record
  replacements in the ledger metadata (compare-and-set), and remove the marker.
Markers live in the metadata store (/under-replicated/<id>), so work survives restarts.
Open ledgers are left to their writer; their lost copies are restored once they are closed.

In a broker (cluster mode):

    recovery = AutoRecovery(store, pool)       # the broker's store and NodePool.for_cluster
    await recovery.start()
    ...
    await recovery.stop()

As a service of its own:

    python -m storage.ledger.auto_recovery --metadata zk://host:2181/kop [--grace-period 30]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import socket
import sys
import uuid
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from storage.ledger.auditor import Auditor, AuditorElection
from storage.ledger.ledger_store import LedgerMetadataStore
from storage.ledger.node_pool import NodePool
from storage.ledger.replication import DEFAULT_COPY_WINDOW, LedgerRepairer, ReplicationWorker
from storage.ledger.under_replication import UnderReplication
from storage.metadata.api import MetadataStore

log = logging.getLogger(__name__)

READY_LINE_PREFIX = "kop auto-recovery running as "


@dataclass(frozen=True)
class AutoRecoverySettings:
    # How long a storage node may stay away (restarting, say) before its ledgers are
    # re-replicated elsewhere. Copying is expensive; a restart usually takes seconds.
    grace_period: float = 30.0
    # Full audits happen on every storage-node change, and at least this often.
    audit_interval: float = 300.0
    # How often workers look again at marked ledgers they could not finish (still open,
    # no replacement node available, a source unreachable).
    retry_interval: float = 10.0
    # Entries of one ledger being copied at once.
    copy_window: int = DEFAULT_COPY_WINDOW
    # Stand in the auditor election / run a replication worker in this process.
    audit: bool = True
    replicate: bool = True

    def __post_init__(self) -> None:
        if self.grace_period < 0:
            raise ValueError(f"grace_period must be >= 0, got {self.grace_period}")
        for name in ("audit_interval", "retry_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.copy_window < 1:
            raise ValueError(f"copy_window must be >= 1, got {self.copy_window}")


def default_identity() -> str:
    """host:pid:random — tells auditors and lock holders apart, even after a pid is reused."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class AutoRecovery:
    """Both auto-recovery roles in one process, over `store` and the nodes of `pool`."""

    def __init__(self, store: MetadataStore, pool: NodePool, *,
                 settings: AutoRecoverySettings | None = None,
                 clock: IReactorTime | None = None, rng: random.Random | None = None,
                 identity: str | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.settings = settings or AutoRecoverySettings()
        self.identity = identity or default_identity()
        self._store = store
        self._clock = clock
        rng = rng or random.Random()
        ledgers = LedgerMetadataStore(store)
        self.worker: ReplicationWorker | None = None
        if self.settings.replicate:
            repairer = LedgerRepairer(ledgers, pool, copy_window=self.settings.copy_window,
                                      rng=rng)
            self.worker = ReplicationWorker(
                UnderReplication(store), repairer, ledgers, owner=self.identity,
                retry_interval=self.settings.retry_interval, clock=clock, rng=rng)
        self.auditor: Auditor | None = None  # while this process is the auditor
        self._election: AuditorElection | None = None
        self._started = False

    @property
    def is_auditor(self) -> bool:
        return self.auditor is not None

    def start(self) -> defer.Deferred[None]:
        """Start the worker and enter the auditor election; fires once both are running."""
        return defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.worker is not None:
            self.worker.start()
        if self.settings.audit:
            self._election = AuditorElection(
                self._store, self.identity, on_elected=self._elected,
                on_deposed=self._deposed)
            await self._election.start()
        log.info("auto-recovery started as %s (auditor: %s)", self.identity, self.is_auditor)

    def _elected(self) -> None:
        self.auditor = Auditor(self._store, grace_period=self.settings.grace_period,
                               audit_interval=self.settings.audit_interval, clock=self._clock)
        self.auditor.start()

    def _deposed(self) -> None:
        auditor, self.auditor = self.auditor, None
        if auditor is not None:
            defer.ensureDeferred(auditor.stop()).addErrback(
                lambda failure: log.error("stopping the auditor: %s", failure.getErrorMessage()))

    def stop(self) -> defer.Deferred[None]:
        """Leave the election (another process takes over auditing) and stop the worker
        after the ledger it is repairing; the store and pool stay open (they are the
        caller's)."""
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if not self._started:
            return
        self._started = False
        auditor = self.auditor
        if self._election is not None:
            await self._election.stop()
        if auditor is not None:
            await auditor.stop()
        if self.worker is not None:
            await self.worker.stop()


def run_auto_recovery(metadata_url: str, *, settings: AutoRecoverySettings | None = None) -> int:
    """Run auto-recovery until SIGTERM or SIGINT; returns the process exit code.
    Runs the global reactor, so call it once, from the main thread."""
    from twisted.internet import reactor

    from storage.metadata import open_metadata_store

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exit_code = 0

    async def start() -> None:
        store = open_metadata_store(metadata_url)
        await store.ready()
        pool = await NodePool.for_cluster(store)
        recovery = AutoRecovery(store, pool, settings=settings)
        await recovery.start()

        async def shut_down() -> None:
            await recovery.stop()
            await pool.close()
            await store.close()

        reactor.addSystemEventTrigger("before", "shutdown",
                                      lambda: defer.ensureDeferred(shut_down()))
        print(READY_LINE_PREFIX + recovery.identity, flush=True)

    def failed(failure: Failure) -> None:
        nonlocal exit_code
        exit_code = 1
        print(f"kop auto-recovery: cannot start: {failure.getErrorMessage()}", file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    reactor.run()
    return exit_code


def build_parser() -> argparse.ArgumentParser:
    defaults = AutoRecoverySettings()
    parser = argparse.ArgumentParser(
        prog="python -m storage.ledger.auto_recovery",
        description="Re-replicate ledgers that lost copies when storage nodes were lost.")
    parser.add_argument("--metadata", required=True,
                        help="metadata store URL (zk://host:port[,host:port]/chroot)")
    parser.add_argument("--grace-period", type=float, default=defaults.grace_period,
                        help="seconds a storage node may be away before its ledgers are "
                             "re-replicated")
    parser.add_argument("--audit-interval", type=float, default=defaults.audit_interval,
                        help="seconds between full audits when nothing changes")
    parser.add_argument("--retry-interval", type=float, default=defaults.retry_interval,
                        help="seconds between looks at ledgers that could not be finished")
    parser.add_argument("--copy-window", type=int, default=defaults.copy_window,
                        help="entries of one ledger copied at once")
    parser.add_argument("--no-audit", action="store_true",
                        help="never become the auditor (only replicate)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = AutoRecoverySettings(
            grace_period=args.grace_period, audit_interval=args.audit_interval,
            retry_interval=args.retry_interval, copy_window=args.copy_window,
            audit=not args.no_audit)
    except ValueError as error:
        print(f"kop auto-recovery: {error}", file=sys.stderr)
        return 2
    return run_auto_recovery(args.metadata, settings=settings)


if __name__ == "__main__":
    sys.exit(main())
