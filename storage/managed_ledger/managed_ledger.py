"""ManagedLedger: the log of one topic partition, kept as a chain of ledgers.

Appends go to the current ledger through the ledger client and complete in order; when the
ledger is full (entries, bytes or age) the managed ledger rolls over: it stops sending, lets
in-flight appends finish, seals the ledger, creates the next one and records both in its
metadata with one compare-and-set, then sends what queued meanwhile. Reads walk the chain
(served from the tail cache when they can), `find(index)` narrows to a ledger by its first
index and binary-searches inside it, and retention deletes whole old ledgers.

One instance is the single writer. It stops for good (every call then fails with
ManagedLedgerFencedError) as soon as its ledger is fenced or its metadata compare-and-set
loses, i.e. once another opener has taken over.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from storage.ledger.errors import LedgerFencedError
from storage.ledger.errors import NoSuchLedgerError as NoSuchLedgerIdError
from storage.managed_ledger.background import BackgroundTasks
from storage.managed_ledger.cache import EntryCache
from storage.managed_ledger.config import ManagedLedgerConfig
from storage.managed_ledger.cursor import ManagedCursor
from storage.managed_ledger.entry_format import HEADER_SIZE, entry_parts
from storage.managed_ledger.errors import (
    CursorNotFoundError,
    ManagedLedgerClosedError,
    ManagedLedgerError,
    ManagedLedgerFencedError,
)
from storage.managed_ledger.info import LedgerInfo, ManagedLedgerInfo
from storage.managed_ledger.info_updater import InfoUpdater
from storage.managed_ledger.names import validate_cursor_name
from storage.managed_ledger.position import Entry, Position
from storage.managed_ledger.reader import ChainReader, LedgerRange, ledger_length
from storage.managed_ledger.retention import ledgers_to_delete
from storage.node.buffers import Payload, payload_length

if TYPE_CHECKING:
    from storage.ledger import LedgerClient, WriteHandle
    from storage.metadata.api import MetadataStore

log = logging.getLogger(__name__)

# Indexes are stored as signed 64-bit integers.
MIN_INDEX = -(2**63)
MAX_INDEX = 2**63 - 1


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    STOPPED = "stopped"  # fenced, or lost track of its metadata: unusable for writes


@dataclass(slots=True)
class _PendingAppend:
    data: Payload  # as the caller gave it: bytes or parts, never joined on the way down
    size: int
    index: int
    done: defer.Deferred[Position]


@dataclass(slots=True)
class _CurrentLedger:
    """What the writer knows of the ledger it appends to (the metadata learns at rollover)."""

    ledger_id: int
    created: float
    sent_entries: int = 0
    sent_bytes: int = 0
    confirmed_entries: int = 0
    confirmed_bytes: int = 0
    first_index: int | None = None
    broken: bool = False  # an append failed: roll over to a fresh ledger before sending more


class ManagedLedger:
    """Create through ManagedLedgerFactory.open(); see the module docstring."""

    def __init__(
        self,
        *,
        name: str,
        path: str,
        config: ManagedLedgerConfig,
        store: MetadataStore,
        ledgers: LedgerClient,
        clock: IReactorTime,
        info: ManagedLedgerInfo,
        info_version: int,
        on_closed: Callable[[ManagedLedger], None],
        background: BackgroundTasks,
    ) -> None:
        self.name = name
        self._path = path
        self._config = config
        self._ledgers = ledgers
        self._clock = clock
        self._on_closed = on_closed
        self._background = background
        self._updater = InfoUpdater(store, path, info, info_version, self._stop)
        self._state = State.OPEN
        self._stop_error: ManagedLedgerError | None = None

        self._writer: WriteHandle | None = None
        self._current: _CurrentLedger | None = None
        self._queued: deque[_PendingAppend] = deque()
        self._in_flight = 0
        self._rolling = False
        self._drain_waiters: list[defer.Deferred[None]] = []
        self._last_sent_index: int | None = None
        self._last_confirmed_index: int | None = None

        self._cache = EntryCache(config.cache_bytes)
        self._listeners: list[Callable[[Entry], None]] = []
        self._reader = ChainReader(self, ledgers, self._cache)
        self._cursors: dict[str, ManagedCursor] = {}
        self._trim_lock = defer.DeferredLock()
        self._maintenance: IDelayedCall | None = None
        self._closed_totals: tuple[ManagedLedgerInfo, int, int] | None = None
        self._close_waiters: list[defer.Deferred[None]] = []
        self._close_done = False

    # ------------------------------------------------------------------ lifecycle

    async def _start(self) -> None:
        """Create the first ledger of this writer (and persist whatever recovery changed)."""
        self._rolling = True
        await self._roll_over()
        if self._stop_error is not None:
            raise self._stop_error
        if self._writer is None:
            error = ManagedLedgerError(f"could not create a ledger for {self.name}")
            self._stop(error)
            raise error
        self._schedule_maintenance()

    def close(self) -> defer.Deferred[None]:
        """Finish pending appends, seal the current ledger, release this instance. Every
        call fires once the close is complete."""
        if self._close_done:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._close_waiters.append(waiter)
        if len(self._close_waiters) == 1:  # the first call does the work
            closing = defer.ensureDeferred(self._close())
            closing.addErrback(lambda failure: log.error(
                "closing %s failed: %s", self.name, failure.getTraceback()))
            closing.addBoth(self._closing_finished)
        return waiter

    def _closing_finished(self, _: object) -> None:
        self._close_done = True
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    async def _close(self) -> None:
        if self._state is State.OPEN:
            self._state = State.CLOSING
            await self._wait_quiet()
            if self._writer is not None and self._stop_error is None:
                await self._seal_current(replace_with=None)
        self._state = State.CLOSED
        self._cancel_maintenance()
        self._updater.stop(ManagedLedgerClosedError(f"managed ledger {self.name} is closed"))
        self._cache.clear()
        self._on_closed(self)

    @property
    def state(self) -> State:
        return self._state

    @property
    def config(self) -> ManagedLedgerConfig:
        return self._config

    def update_config(self, config: ManagedLedgerConfig) -> None:
        """New thresholds apply from the next append or maintenance run; new quorum sizes
        from the next ledger."""
        config.validate()
        self._config = config
        self._cache.resize(config.cache_bytes)
        if self._maintenance is not None:
            self._cancel_maintenance()
            self._schedule_maintenance()

    # ------------------------------------------------------------------ appends

    def append(self, data: Payload, index: int) -> defer.Deferred[Position]:
        """Append one entry; fires with its Position once durable on the ack quorum.
        Appends complete in call order. index must not decrease from one append to the next.

        `data` is bytes or a sequence of parts (bytes-like) that together make the entry:
        they go down to the storage nodes and into the tail cache as they are, not joined,
        and must not change afterwards.
        """
        if self._state is not State.OPEN:
            return defer.fail(self._unusable_error())
        if not MIN_INDEX <= index <= MAX_INDEX:
            return defer.fail(ValueError(f"index {index} does not fit in 64 bits"))
        if self._last_sent_index is not None and index < self._last_sent_index:
            return defer.fail(
                ValueError(
                    f"index {index} is below the previous append's index "
                    f"{self._last_sent_index} in {self.name}"
                )
            )
        self._last_sent_index = index
        pending = _PendingAppend(data, payload_length(data), index, defer.Deferred())
        if self._queued or self._rolling or not self._can_send():
            self._queued.append(pending)
            self._start_rollover()
        else:
            self._send(pending)
        return pending.done

    def add_append_listener(self, callback: Callable[[Entry], None]) -> Callable[[], None]:
        """callback(entry) runs on the reactor thread after each append is durable (before
        the append's Deferred fires). Returns a function that removes the listener."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def _can_send(self) -> bool:
        current = self._current
        if self._writer is None or current is None or current.broken:
            return False
        config = self._config
        if current.sent_entries >= config.max_entries_per_ledger:
            return False
        if current.sent_bytes >= config.max_ledger_bytes:
            return False
        return not (
            current.sent_entries
            and self._clock.seconds() - current.created >= config.max_ledger_age_seconds
        )

    def _send(self, pending: _PendingAppend) -> None:
        assert self._writer is not None and self._current is not None
        payload = entry_parts(pending.index, pending.data)
        current = self._current
        current.sent_entries += 1
        current.sent_bytes += HEADER_SIZE + pending.size
        self._in_flight += 1
        appended = self._writer.append(payload)
        appended.addCallbacks(
            self._append_done, self._append_failed,
            callbackArgs=(pending, current), errbackArgs=(pending, current),
        )

    def _append_done(self, entry_id: int, pending: _PendingAppend, current: _CurrentLedger) -> None:
        self._in_flight -= 1
        current.confirmed_entries = entry_id + 1
        current.confirmed_bytes += HEADER_SIZE + pending.size
        if entry_id == 0:
            current.first_index = pending.index
        self._last_confirmed_index = pending.index
        position = Position(current.ledger_id, entry_id)
        entry = Entry(position, pending.index, pending.data)
        self._cache.add(entry)
        for listener in tuple(self._listeners):
            try:
                listener(entry)
            except Exception:
                log.exception("append listener of %s failed", self.name)
        pending.done.callback(position)
        self._after_in_flight_change()

    def _append_failed(
        self, failure: Failure, pending: _PendingAppend, current: _CurrentLedger
    ) -> None:
        self._in_flight -= 1
        if failure.check(LedgerFencedError):
            self._stop(
                ManagedLedgerFencedError(
                    f"ledger {current.ledger_id} of {self.name} was fenced: another writer "
                    f"opened this managed ledger"
                )
            )
            pending.done.errback(self._unusable_error())
        else:
            current.broken = True
            error = ManagedLedgerError(
                f"append to ledger {current.ledger_id} of {self.name} failed: {failure.value}"
            )
            error.__cause__ = failure.value
            pending.done.errback(error)
            if self._state is State.OPEN:
                self._start_rollover()
        if not self._in_flight and not self._queued:
            # Everything sent since the last confirmation failed: the caller may resend
            # from the last confirmed index.
            self._last_sent_index = self._last_confirmed_index
        self._after_in_flight_change()

    def _after_in_flight_change(self) -> None:
        """Wake whoever waits for the in-flight appends to drain (a rollover, a close)."""
        if self._in_flight == 0:
            waiters, self._drain_waiters = self._drain_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _wait_drained(self) -> defer.Deferred[None]:
        """Fires at the next moment nothing is in flight (now, if that is already so)."""
        if self._in_flight == 0:
            return defer.succeed(None)
        return self._next_drain()

    def _next_drain(self) -> defer.Deferred[None]:
        waiter: defer.Deferred[None] = defer.Deferred()
        self._drain_waiters.append(waiter)
        return waiter

    async def _wait_quiet(self) -> None:
        """Until nothing is in flight, queued or rolling over (used by close). Every wakeup
        (appends drained, a rollover ended) re-checks."""
        while self._stop_error is None and (self._in_flight or self._rolling or self._queued):
            if self._queued and not self._rolling:
                self._start_rollover()
            if self._in_flight or self._rolling:
                await self._next_drain()
        await self._updater.when_idle()

    # ------------------------------------------------------------------ rollover

    def _start_rollover(self) -> None:
        if self._rolling or self._state is State.STOPPED:
            return
        self._rolling = True
        rolled = defer.ensureDeferred(self._roll_over())
        rolled.addErrback(self._rollover_crashed)

    def _rollover_crashed(self, failure: Failure) -> None:
        log.error("rollover of %s crashed: %s", self.name, failure.getTraceback())
        self._stop(ManagedLedgerError(f"rollover of {self.name} failed: {failure.value}"))

    async def _roll_over(self) -> None:
        """Seal the current ledger (if any), start a new one, record both, send the queue.
        Runs with self._rolling set; at most one at a time."""
        try:
            await self._wait_drained()
            if self._stop_error is not None:
                return
            new_writer = await self._create_ledger()
            if new_writer is None:
                return
            if self._stop_error is not None:  # fenced while the ledger was being created
                self._delete_ledger_later(new_writer.ledger_id)
                return
            now = self._clock.seconds()
            new_ledger = LedgerInfo(ledger_id=new_writer.ledger_id, created=now)
            if self._writer is not None:
                sealed = await self._seal_current(replace_with=new_ledger)
            else:
                sealed = await self._persist_new_ledger(new_ledger)
            if not sealed:
                if isinstance(self._stop_error, ManagedLedgerFencedError):
                    # The chain certainly does not name it (our compare-and-set lost).
                    self._delete_ledger_later(new_writer.ledger_id)
                return
            self._writer = new_writer
            self._current = _CurrentLedger(ledger_id=new_writer.ledger_id, created=now)
        finally:
            self._rolling = False
            self._send_queued()

    async def _create_ledger(self) -> WriteHandle | None:
        config = self._config
        try:
            return await self._ledgers.create_ledger(
                config.ensemble_size, config.write_quorum, config.ack_quorum,
                custom={"managed-ledger": self.name},
            )
        except Exception as exc:
            error = ManagedLedgerError(f"could not create a ledger for {self.name}: {exc}")
            error.__cause__ = exc
            log.warning("%s", error)
            self._fail_queued(error)
            return None

    async def _persist_new_ledger(self, new_ledger: LedgerInfo) -> bool:
        def add_ledger(info: ManagedLedgerInfo) -> ManagedLedgerInfo:
            return replace(info, ledgers=(*info.ledgers, new_ledger))

        return await self._persist(add_ledger)

    async def _seal_current(self, replace_with: LedgerInfo | None) -> bool:
        """Close the current ledger, record it closed (dropping it when empty) and, when
        given, the next ledger, in one compare-and-set. False when that failed."""
        assert self._writer is not None and self._current is not None
        writer, current = self._writer, self._current
        self._writer = None
        closed = await self._close_ledger(writer, current)
        if closed is None:
            return False

        def seal(info: ManagedLedgerInfo) -> ManagedLedgerInfo:
            chain = [ledger for ledger in info.ledgers if ledger.ledger_id != closed.ledger_id]
            if closed.entries:
                chain.append(closed)
            if replace_with is not None:
                chain.append(replace_with)
            return replace(info, ledgers=tuple(chain))

        if not await self._persist(seal):
            return False
        if not closed.entries:
            self._delete_ledger_later(closed.ledger_id)
        return True

    async def _close_ledger(self, writer: WriteHandle, current: _CurrentLedger) -> LedgerInfo | None:
        """Seal the ledger; describe it as it now is. None when this writer got fenced."""
        try:
            await writer.close()
            entries = writer.last_add_confirmed + 1
            size = current.confirmed_bytes
            if entries != current.confirmed_entries:
                size = await ledger_length(writer, entries)
        except LedgerFencedError:
            self._stop(
                ManagedLedgerFencedError(
                    f"ledger {current.ledger_id} of {self.name} was fenced while closing: "
                    f"another writer opened this managed ledger"
                )
            )
            return None
        except Exception as exc:
            # The close did not go through (e.g. nodes unreachable). Recovery seals the ledger
            # at the last entry that may have been acknowledged, exactly what a new owner
            # would do, so the chain never records an unsealed ledger as closed.
            log.warning("closing ledger %s of %s failed (%s); recovering it",
                        current.ledger_id, self.name, exc)
            try:
                handle = await self._ledgers.open_ledger(current.ledger_id, recovery=True)
                entries = handle.last_add_confirmed + 1
                size = await ledger_length(handle, entries)
            except Exception as recovery_error:
                self._stop(
                    ManagedLedgerError(
                        f"could not seal ledger {current.ledger_id} of {self.name}: {exc}; "
                        f"recovery failed too: {recovery_error}"
                    )
                )
                return None
        if entries != current.confirmed_entries:
            # Recovery kept entries whose appends were not confirmed to us (they may have
            # been acknowledged by the nodes): the cache no longer holds a contiguous tail.
            log.warning("ledger %s of %s sealed with %d entries, %d confirmed",
                        current.ledger_id, self.name, entries, current.confirmed_entries)
            self._cache.clear()
        first_index = current.first_index
        if entries and first_index is None:
            first_index = await self._reader.read_index(current.ledger_id, 0)
        current.confirmed_entries = entries
        current.confirmed_bytes = size
        return LedgerInfo(
            ledger_id=current.ledger_id,
            created=current.created,
            entries=entries,
            size=size,
            first_index=first_index if entries else None,
            closed=self._clock.seconds(),
        )

    async def _persist(self, change: Callable[[ManagedLedgerInfo], ManagedLedgerInfo]) -> bool:
        try:
            await self._updater.update(change)
        except ManagedLedgerError:
            return False  # the updater already stopped this managed ledger
        return True

    def _send_queued(self) -> None:
        while self._queued and self._stop_error is None and self._can_send():
            self._send(self._queued.popleft())
        if self._queued and self._stop_error is None:
            self._start_rollover()  # the new ledger filled up already, or none exists yet
        self._after_in_flight_change()

    def _fail_queued(self, error: Exception) -> None:
        queued, self._queued = self._queued, deque()
        for pending in queued:
            pending.done.errback(error)
        if not self._in_flight:
            self._last_sent_index = self._last_confirmed_index

    def _delete_ledger_later(self, ledger_id: int) -> None:
        """Best-effort removal of a ledger no chain refers to (failures leave an orphan that
        holds no acknowledged data)."""
        self._reader.forget(ledger_id)
        deleted = self._ledgers.delete_ledger(ledger_id)
        deleted.addErrback(
            lambda failure: log.warning(
                "could not delete unused ledger %s of %s: %s", ledger_id, self.name,
                failure.value,
            )
        )
        self._background.add(deleted)

    # ------------------------------------------------------------------ stopping

    def _stop(self, error: ManagedLedgerError) -> None:
        """Fenced or lost: fail what is queued, refuse everything from now on."""
        if self._stop_error is not None:
            return
        log.warning("managed ledger %s stops: %s", self.name, error)
        self._stop_error = error
        if self._state is not State.CLOSED:
            self._state = State.STOPPED
        self._updater.stop(error)
        self._fail_queued(error)
        self._cancel_maintenance()
        self._on_closed(self)
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _unusable_error(self) -> ManagedLedgerError:
        if self._stop_error is not None:
            return self._stop_error
        return ManagedLedgerClosedError(f"managed ledger {self.name} is closed")

    # ------------------------------------------------------------------ positions and sizes

    def ranges(self) -> list[LedgerRange]:
        """Every ledger of the chain with its confirmed entries, oldest first."""
        current = self._current
        ranges = []
        for ledger in self._updater.info.ledgers:
            if current is not None and ledger.ledger_id == current.ledger_id:
                ranges.append(LedgerRange(ledger.ledger_id, current.confirmed_entries,
                                          current.confirmed_bytes, current.first_index))
            else:
                ranges.append(LedgerRange(ledger.ledger_id, ledger.entries or 0,
                                          ledger.size or 0, ledger.first_index))
        return ranges

    def current_writer(self) -> WriteHandle | None:
        return self._writer

    def first_entry_of(self, ledger_id: int) -> int:
        """First entry id of this ledger still in the log (truncate_before may cut it)."""
        start = self._updater.info.log_start
        if start is None or ledger_id > start.ledger_id:
            return 0
        if ledger_id < start.ledger_id:
            return MAX_INDEX
        return max(0, start.entry_id)

    @property
    def first_position(self) -> Position:
        """The oldest entry still in the log or, when it holds none, where the next one goes."""
        for ledger in self.ranges():
            first = self.first_entry_of(ledger.ledger_id)
            if first < ledger.entries:
                return Position(ledger.ledger_id, first)
        return self._next_position()

    @property
    def last_confirmed_position(self) -> Position:
        """The newest durable entry; when the log is empty, the position just before
        first_position (so first_position > last_confirmed_position means "empty")."""
        first = self.first_position
        for ledger in reversed(self.ranges()):
            if ledger.entries:
                last = Position(ledger.ledger_id, ledger.entries - 1)
                if last >= first:
                    return last
                break
        return Position(first.ledger_id, first.entry_id - 1)

    def _next_position(self) -> Position:
        if self._current is not None:
            return Position(self._current.ledger_id, self._current.confirmed_entries)
        ledgers = self._updater.info.ledgers
        if ledgers:
            return Position(ledgers[-1].ledger_id, ledgers[-1].entries or 0)
        return Position(-1, 0)

    @property
    def entry_count(self) -> int:
        """Entries in the log (from first_position to last_confirmed_position)."""
        closed_entries, _ = self._closed_ledger_totals()
        count = closed_entries + (self._current.confirmed_entries if self._current else 0)
        start = self._updater.info.log_start
        if start is not None:
            for ledger in self.ranges():
                count -= min(ledger.entries, self.first_entry_of(ledger.ledger_id))
        return count

    @property
    def total_bytes(self) -> int:
        """Bytes stored by the ledgers of the chain (a ledger partly cut by truncate_before
        counts whole until it is deleted)."""
        _, closed_bytes = self._closed_ledger_totals()
        return closed_bytes + (self._current.confirmed_bytes if self._current else 0)

    def _closed_ledger_totals(self) -> tuple[int, int]:
        info = self._updater.info
        if self._closed_totals is None or self._closed_totals[0] is not info:
            current_id = self._current.ledger_id if self._current else None
            entries = sum(
                ledger.entries or 0 for ledger in info.ledgers if ledger.ledger_id != current_id
            )
            size = sum(
                ledger.size or 0 for ledger in info.ledgers if ledger.ledger_id != current_id
            )
            self._closed_totals = (info, entries, size)
        return self._closed_totals[1], self._closed_totals[2]

    @property
    def ledger_ids(self) -> list[int]:
        """Ids of the ledgers of the chain, oldest first (for diagnostics and tests)."""
        return [ledger.ledger_id for ledger in self._updater.info.ledgers]

    # ------------------------------------------------------------------ reads

    def read(
        self, start: Position, max_entries: int, max_bytes: int | None = None
    ) -> defer.Deferred[list[Entry]]:
        """Up to max_entries entries from start (or the next entry after it) onward, across
        ledgers; [] past the end. A start before the log's first entry reads from the first
        entry. max_bytes bounds the data size but never withholds the first entry."""
        if self._state is State.CLOSED:
            return defer.fail(self._unusable_error())
        if max_entries <= 0:
            return defer.succeed([])
        start = max(start, self.first_position)
        cached = self._cache.read(start, max_entries, max_bytes)
        if cached is not None:
            return defer.succeed(cached)
        return defer.ensureDeferred(self._reader.read(start, max_entries, max_bytes))

    # ------------------------------------------------------------------ find

    def find(self, index: int) -> defer.Deferred[Position | None]:
        """Position of the last entry whose index <= index; None when every entry of the log
        has a greater index (or the log is empty)."""
        if self._state is State.CLOSED:
            return defer.fail(self._unusable_error())
        return defer.ensureDeferred(self._reader.find(index))

    # ------------------------------------------------------------------ cursors

    def open_cursor(self, name: str) -> defer.Deferred[ManagedCursor]:
        """The durable cursor of that name; a new one starts at last_confirmed_position
        (everything up to now counts as consumed)."""
        return defer.ensureDeferred(self._open_cursor(validate_cursor_name(name)))

    async def _open_cursor(self, name: str) -> ManagedCursor:
        self._check_writable()
        if name not in self._updater.info.cursors:
            start = self.last_confirmed_position

            def add_cursor(info: ManagedLedgerInfo) -> ManagedLedgerInfo:
                if name in info.cursors:
                    return info
                return replace(info, cursors={**info.cursors, name: start})

            await self._updater.update(add_cursor)
        cursor = self._cursors.get(name)
        if cursor is None:
            cursor = self._cursors[name] = ManagedCursor(self, name)
        return cursor

    def delete_cursor(self, name: str) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._delete_cursor(name))

    async def _delete_cursor(self, name: str) -> None:
        self._check_writable()

        def remove_cursor(info: ManagedLedgerInfo) -> ManagedLedgerInfo:
            if name not in info.cursors:
                raise CursorNotFoundError(f"{self.name} has no cursor {name!r}")
            return replace(info, cursors={k: v for k, v in info.cursors.items() if k != name})

        await self._updater.update(remove_cursor)
        cursor = self._cursors.pop(name, None)
        if cursor is not None:
            cursor.deleted = True

    @property
    def cursor_names(self) -> list[str]:
        return sorted(self._updater.info.cursors)

    def _cursor_position(self, name: str) -> Position:
        try:
            return self._updater.info.cursors[name]
        except KeyError:
            raise CursorNotFoundError(f"{self.name} has no cursor {name!r}") from None

    async def _mark_delete(self, name: str, position: Position) -> None:
        self._check_writable()
        last = self.last_confirmed_position
        if position > last:
            raise ValueError(
                f"cannot mark-delete {position} on {self.name}: last confirmed entry is {last}"
            )

        def move_cursor(info: ManagedLedgerInfo) -> ManagedLedgerInfo:
            if name not in info.cursors:
                raise CursorNotFoundError(f"{self.name} has no cursor {name!r}")
            return replace(info, cursors={**info.cursors, name: position})

        await self._updater.update(move_cursor)

    # ------------------------------------------------------------------ properties

    @property
    def properties(self) -> Mapping[str, str]:
        """Durable string properties (read-only view; change with set_properties)."""
        return MappingProxyType(dict(self._updater.info.properties))

    def set_properties(self, updates: Mapping[str, str | None]) -> defer.Deferred[None]:
        """Merge updates into the properties durably; a None value removes that key."""
        for key, value in updates.items():
            if not isinstance(key, str) or not (value is None or isinstance(value, str)):
                return defer.fail(TypeError(f"property {key!r}={value!r} is not str -> str"))
        return defer.ensureDeferred(self._set_properties(dict(updates)))

    async def _set_properties(self, updates: dict[str, str | None]) -> None:
        self._check_writable()

        def merge(info: ManagedLedgerInfo) -> ManagedLedgerInfo:
            merged = dict(info.properties)
            for key, value in updates.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            return replace(info, properties=merged)

        await self._updater.update(merge)

    def _check_writable(self) -> None:
        if self._state is not State.OPEN:
            raise self._unusable_error()

    # ------------------------------------------------------------------ retention

    def trim(self) -> defer.Deferred[int]:
        """Apply retention now; fires with the number of ledgers deleted."""
        return self._trim_lock.run(lambda: defer.ensureDeferred(self._trim()))

    async def _trim(self) -> int:
        self._check_writable()
        info = self._updater.info
        ranges = self.ranges()
        last_ledger_bytes = ranges[-1].size if ranges else 0  # open or not, it stays
        doomed = ledgers_to_delete(
            info.ledgers,
            now=self._clock.seconds(),
            retention_seconds=self._config.retention_seconds,
            retention_bytes=self._config.retention_bytes,
            log_start=info.log_start,
            cursor_positions=info.cursors.values(),
            current_ledger_bytes=last_ledger_bytes,
        )
        if not doomed:
            return 0
        doomed_ids = {ledger.ledger_id for ledger in doomed}

        def drop_ledgers(info: ManagedLedgerInfo) -> ManagedLedgerInfo:
            kept = tuple(ledger for ledger in info.ledgers if ledger.ledger_id not in doomed_ids)
            return replace(info, ledgers=kept)

        await self._updater.update(drop_ledgers)
        self._cache.evict_before(self.first_position)
        for ledger_id in sorted(doomed_ids):
            self._reader.forget(ledger_id)
            try:
                await self._ledgers.delete_ledger(ledger_id)
            except NoSuchLedgerIdError:
                pass
            except Exception as exc:
                log.warning("ledger %s of %s left behind: delete failed: %s",
                            ledger_id, self.name, exc)
        return len(doomed_ids)


    def truncate_before(self, position: Position) -> defer.Deferred[None]:
        """Make position the log's first entry (entries before it are gone for readers,
        whole ledgers before it are deleted). A position before the current start does
        nothing; one past the next append's position is refused (ValueError)."""
        return defer.ensureDeferred(self._truncate_before(position))

    async def _truncate_before(self, position: Position) -> None:
        self._check_writable()
        following = Position(self.last_confirmed_position.ledger_id,
                             self.last_confirmed_position.entry_id + 1)
        if position > max(following, self._next_position()):
            raise ValueError(
                f"cannot truncate {self.name} before {position}: the log ends at "
                f"{self.last_confirmed_position}"
            )
        if position <= self.first_position:
            return

        def move_start(info: ManagedLedgerInfo) -> ManagedLedgerInfo:
            if info.log_start is not None and info.log_start >= position:
                return info
            return replace(info, log_start=position)

        await self._updater.update(move_start)
        self._cache.evict_before(position)
        await self.trim()

    # ------------------------------------------------------------------ maintenance

    def _schedule_maintenance(self) -> None:
        self._maintenance = self._clock.callLater(
            self._config.maintenance_interval_seconds, self._run_maintenance
        )

    def _cancel_maintenance(self) -> None:
        if self._maintenance is not None and self._maintenance.active():
            self._maintenance.cancel()
        self._maintenance = None

    def _run_maintenance(self) -> None:
        self._maintenance = None
        if self._state is not State.OPEN:
            return
        done = defer.ensureDeferred(self._maintain())
        done.addErrback(lambda failure: log.warning(
            "maintenance of %s failed: %s", self.name, failure.value))
        done.addBoth(lambda _: self._schedule_maintenance() if self._state is State.OPEN else None)

    async def _maintain(self) -> None:
        """Roll an idle ledger past its age (so retention can delete it), apply retention."""
        current = self._current
        if (
            current is not None
            and current.confirmed_entries
            and self._clock.seconds() - current.created >= self._config.max_ledger_age_seconds
        ):
            self._start_rollover()
        await self.trim()

