"""Serialised compare-and-set updates of one managed ledger's metadata.

Every change (rollover, cursor mark-delete, retention, properties) is a pure function from
the current ManagedLedgerInfo to the next. Changes requested while a write is in flight are
applied together in the next write, so a burst of cursor updates costs one round trip.
A lost compare-and-set (or the node vanishing) means another writer took the managed ledger:
the updater stops for good and reports ManagedLedgerFencedError.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from storage.managed_ledger.errors import ManagedLedgerError, ManagedLedgerFencedError
from storage.managed_ledger.info import ManagedLedgerInfo
from storage.metadata.api import MetadataStore
from storage.metadata.errors import BadVersionError, NoNodeError

log = logging.getLogger(__name__)

InfoChange = Callable[[ManagedLedgerInfo], ManagedLedgerInfo]


class InfoUpdater:
    def __init__(
        self,
        store: MetadataStore,
        path: str,
        info: ManagedLedgerInfo,
        version: int,
        on_stopped: Callable[[ManagedLedgerError], None],
    ) -> None:
        self.info = info
        self.version = version
        self._store = store
        self._path = path
        self._on_stopped = on_stopped
        self._waiting: list[tuple[InfoChange, defer.Deferred[ManagedLedgerInfo]]] = []
        self._writing = False
        self._stopped: ManagedLedgerError | None = None
        self._idle_waiters: list[defer.Deferred[None]] = []

    def update(self, change: InfoChange) -> defer.Deferred[ManagedLedgerInfo]:
        """Apply change durably; fires with the info as written. A change that raises fails
        only its own Deferred."""
        if self._stopped is not None:
            return defer.fail(self._stopped)
        done: defer.Deferred[ManagedLedgerInfo] = defer.Deferred()
        self._waiting.append((change, done))
        if not self._writing:
            self._write_next()
        return done

    def stop(self, error: ManagedLedgerError) -> None:
        """Refuse further changes (the managed ledger is fenced or closed)."""
        if self._stopped is None:
            self._stopped = error
            waiting, self._waiting = self._waiting, []
            for _, done in waiting:
                done.errback(error)

    def when_idle(self) -> defer.Deferred[None]:
        """Fires once no write is in flight or waiting."""
        if not self._writing and not self._waiting:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def _write_next(self) -> None:
        self._writing = True  # before any callback runs: a re-entrant update() must queue
        batch, self._waiting = self._waiting, []
        new_info = self.info
        applied: list[defer.Deferred[ManagedLedgerInfo]] = []
        rejected: list[tuple[defer.Deferred[ManagedLedgerInfo], Failure]] = []
        for change, done in batch:
            try:
                new_info = change(new_info)
            except Exception:
                rejected.append((done, Failure()))
            else:
                applied.append(done)
        if applied:
            written = defer.ensureDeferred(self._compare_and_set(new_info))
            written.addCallbacks(
                self._written, self._write_failed,
                callbackArgs=(new_info, applied), errbackArgs=(applied,),
            )
        for done, failure in rejected:
            done.errback(failure)
        if not applied:
            self._continue()

    async def _compare_and_set(self, new_info: ManagedLedgerInfo) -> int:
        raw = new_info.to_json()
        try:
            return await self._store.set(self._path, raw, expected_version=self.version)
        except (BadVersionError, NoNodeError):
            raise
        except Exception as exc:
            # The outcome is unknown (e.g. the connection dropped): read back to find out
            # whether our write landed, rather than guess and diverge from the store.
            log.warning("metadata write of %s failed (%s); reading it back", self._path, exc)
            try:
                found = await self._store.get(self._path)
            except Exception as read_error:
                raise ManagedLedgerError(
                    f"metadata store unavailable for {self._path}: {exc}; then {read_error}"
                ) from exc
            if found is not None and found.version == self.version + 1 and found.value == raw:
                return found.version
            if found is not None and found.version == self.version:
                return await self._store.set(self._path, raw, expected_version=self.version)
            raise BadVersionError(f"{self._path} changed while our write was in doubt") from exc

    def _written(
        self,
        version: int,
        new_info: ManagedLedgerInfo,
        applied: list[defer.Deferred[ManagedLedgerInfo]],
    ) -> None:
        self.info = new_info
        self.version = version
        for done in applied:
            done.callback(new_info)
        self._continue()

    def _write_failed(
        self, failure: Failure, applied: list[defer.Deferred[ManagedLedgerInfo]]
    ) -> None:
        if failure.check(BadVersionError, NoNodeError):
            error: ManagedLedgerError = ManagedLedgerFencedError(
                f"{self._path} was changed by someone else (another writer opened this "
                f"managed ledger, or it was deleted): this writer is fenced"
            )
        elif failure.check(ManagedLedgerError):
            error = failure.value
        else:
            error = ManagedLedgerError(f"metadata update of {self._path} failed: {failure.value}")
        error.__cause__ = failure.value if failure.value is not error else None
        # Whatever happened, our view of the store is no longer trustworthy: stop. The owner
        # learns first, so that callers woken below already see it stopped.
        self.stop(error)
        self._on_stopped(error)
        for done in applied:
            done.errback(error)
        self._continue()

    def _continue(self) -> None:
        if self._waiting and self._stopped is None:
            self._write_next()
        else:
            self._finish_writing()

    def _finish_writing(self) -> None:
        self._writing = False
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)
