"""EmbeddedStore: the metadata store of a standalone kop, one SQLite file in the data directory.

Layout of the directory: ``metadata.sqlite`` (+ its ``-wal``/``-shm`` files) and
``metadata.lock``, which one process at a time holds with flock(2); a second
process is refused with a clear error instead of corrupting the first one's
ephemeral nodes.

How it works:
- Writes go to one writer thread per directory, which applies every request waiting
  in its queue inside a single transaction (each request under its own savepoint,
  so a failed compare-and-set undoes only itself) and commits once: one fsync covers
  the whole group (SQLite WAL, ``synchronous=FULL``). A write's Deferred fires only
  after that commit, so a write that has returned survives kill -9 and power loss.
- Reads run directly on the reactor thread against a second connection (a primary-key
  lookup is microseconds); while a store still has requests queued, its reads queue
  behind them instead, so each store sees its own writes in order, as in ZooKeeper.
- Every EmbeddedStore object is a session. Several may share a directory inside one
  process (they share the database and see each other's changes and watches); closing
  one deletes its ephemeral nodes. Ephemeral nodes found when a process first opens the
  directory belong to a process that died, and are deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from storage.metadata import sqlite_tree
from storage.metadata.api import MetadataStore, SessionListener, SessionState, Versioned
from storage.metadata.errors import MetadataError, StoreOpenError
from storage.metadata.paths import parent_of
from storage.metadata.sqlite_tree import Change
from storage.metadata.watches import WatchCallback, WatchRegistry

DATABASE_FILE = "metadata.sqlite"
LOCK_FILE = "metadata.lock"

# Upper bound on requests committed together; keeps one transaction (and the latency of
# the first request in it) bounded under a flood.
MAX_GROUP = 512

_log = Logger()

Operation = Callable[[sqlite3.Connection], tuple[Any, list[Change]]]


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class _DirectoryLock:
    """flock on ``metadata.lock``, shared by every database object of this process.

    A closing database and a reopened one may briefly overlap inside one process;
    counting holders keeps the lock held across that overlap.
    """

    _held: dict[Path, _DirectoryLock] = {}
    _guard = threading.Lock()

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self.fd = fd
        self.holders = 0

    @classmethod
    def acquire(cls, directory: Path) -> tuple[_DirectoryLock, bool]:
        """Returns (lock, first): ``first`` is True when this process just took it."""
        with cls._guard:
            lock = cls._held.get(directory)
            first = lock is None
            if lock is None:
                lock = cls(directory, cls._lock_file(directory))
                cls._held[directory] = lock
            lock.holders += 1
            return lock, first

    @staticmethod
    def _lock_file(directory: Path) -> int:
        path = directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreOpenError(
                f"metadata store {directory} is in use by another process (pid {owner})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def release(self) -> None:
        with self._guard:
            self.holders -= 1
            if self.holders == 0:
                del self._held[self.directory]
                os.close(self.fd)  # closing the descriptor drops the flock


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False:
    # the writer connection is created here but used only by the writer thread.
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class _Request:
    operation: Operation
    deferred: Deferred[Any]
    session: EmbeddedStore


@dataclass(slots=True)
class _Outcome:
    result: Any = None
    error: BaseException | None = None
    changes: tuple[Change, ...] = ()


_STOP = object()


class _Database:
    """One open metadata directory: the lock, two connections and the writer thread."""

    _open: dict[Path, _Database] = {}

    @classmethod
    def attach(cls, directory: Path, reactor: Any) -> _Database:
        database = cls._open.get(directory)
        if database is None:
            database = cls._open[directory] = cls(directory, reactor)
        return database

    def __init__(self, directory: Path, reactor: Any) -> None:
        self.directory = directory
        self.sessions: set[EmbeddedStore] = set()
        self.commits = 0  # group commits so far; tests use it to see grouping happen
        self._reactor = reactor
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock, first_in_process = _DirectoryLock.acquire(directory)
        except OSError as error:
            raise StoreOpenError(f"cannot open metadata store {directory}: {error}") from error
        try:
            self._open_connections(first_in_process)
        except (sqlite3.Error, OSError) as error:
            self._close_connections()
            self._lock.release()
            raise StoreOpenError(f"cannot open metadata store {directory}: {error}") from error
        except BaseException:
            self._close_connections()
            self._lock.release()
            raise
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopped: Deferred[None] = Deferred()
        self._thread = threading.Thread(
            target=self._run_writer, name=f"kop-metadata-writer {directory}", daemon=True
        )
        self._thread.start()

    def _open_connections(self, first_in_process: bool) -> None:
        database_path = self.directory / DATABASE_FILE
        self._writer = _connect(database_path)
        sqlite_tree.prepare_schema(self._writer, str(database_path))
        self._writer.execute("PRAGMA journal_mode = WAL")
        self._writer.execute("PRAGMA synchronous = FULL")  # fsync the WAL on every commit
        self._writer.execute("PRAGMA journal_size_limit = 67108864")
        if first_in_process:
            # Nobody in this process has a session yet, so every ephemeral node left
            # in the file belongs to a process that died.
            self._writer.execute("BEGIN IMMEDIATE")
            sqlite_tree.delete_owned(self._writer, None)
            self._writer.execute("COMMIT")
        _fsync_directory(self.directory)  # make the new -wal/-shm files' names durable
        self._reader = _connect(database_path)
        self._reader.execute("PRAGMA query_only = ON")

    # -- reactor side ---------------------------------------------------------------------

    def read(self, operation: Callable[[sqlite3.Connection], Any]) -> Any:
        assert self._reader is not None
        try:
            return operation(self._reader)
        except sqlite3.Error as error:
            raise self._database_error(error) from error

    def submit(self, request: _Request) -> None:
        self._queue.put(request)

    def detach(self, session: EmbeddedStore) -> Deferred[None]:
        """Forget a session; the last one out stops the writer and releases the lock."""
        self.sessions.discard(session)
        if self.sessions:
            return defer.succeed(None)
        if _Database._open.get(self.directory) is self:
            del _Database._open[self.directory]
        self._queue.put(_STOP)
        return self._stopped

    def _deliver(self, group: list[_Request], outcomes: list[_Outcome]) -> None:
        for request, outcome in zip(group, outcomes, strict=True):
            if outcome.changes:
                affected = _affected_paths(outcome.changes)
                for session in list(self.sessions):
                    session._notify(affected)
            request.session._in_flight -= 1
            if outcome.error is None:
                request.deferred.callback(outcome.result)
            else:
                request.deferred.errback(outcome.error)

    def _writer_stopped(self) -> None:
        self._close_connections()
        self._lock.release()
        self._stopped.callback(None)

    def _close_connections(self) -> None:
        for connection in (self._reader, self._writer):
            if connection is not None:
                connection.close()
        self._reader = self._writer = None

    def _database_error(self, error: sqlite3.Error) -> MetadataError:
        return MetadataError(f"metadata store {self.directory}: {error}")

    # -- writer thread --------------------------------------------------------------------

    def _run_writer(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is _STOP:
                    stopping = True
                    break
                group.append(request)
            outcomes = self._apply_group(group)
            self._reactor.callFromThread(self._deliver, group, outcomes)
        # The writer connection belongs to this thread; the reader is closed on the
        # reactor thread in _writer_stopped.
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self._reactor.callFromThread(self._writer_stopped)

    def _apply_group(self, group: list[_Request]) -> list[_Outcome]:
        """Apply every request in one transaction, each under a savepoint; commit once."""
        connection = self._writer
        assert connection is not None
        outcomes: list[_Outcome] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for request in group:
                outcomes.append(self._apply_one(connection, request))
            connection.execute("COMMIT")
            self.commits += 1
        except Exception as error:  # the commit itself failed: nothing in the group happened
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the writer thread must live on
                    connection.execute("ROLLBACK")
            failure = self._database_error(error) if isinstance(error, sqlite3.Error) else error
            _log.error(
                "metadata commit failed in {directory}: {error}",
                directory=self.directory,
                error=failure,
            )
            return [_Outcome(error=failure) for _ in group]
        return outcomes

    def _apply_one(self, connection: sqlite3.Connection, request: _Request) -> _Outcome:
        connection.execute("SAVEPOINT request")
        try:
            result, changes = request.operation(connection)
        except (MetadataError, sqlite3.Error) as error:
            connection.execute("ROLLBACK TO request")
            connection.execute("RELEASE request")
            if isinstance(error, sqlite3.Error):
                error = self._database_error(error)
            return _Outcome(error=error)
        connection.execute("RELEASE request")
        return _Outcome(result=result, changes=tuple(changes))


def _affected_paths(changes: tuple[Change, ...]) -> list[str]:
    """Paths whose watchers must hear of ``changes``: each node, and the parent of each
    node created or deleted (its children changed). Order kept, duplicates dropped."""
    affected: dict[str, None] = {}
    for change in changes:
        affected[change.path] = None
        if change.membership:
            affected[parent_of(change.path)] = None
    return list(affected)


class EmbeddedStore(MetadataStore):
    """A session on the metadata store kept in ``directory`` (created if missing)."""

    def __init__(self, directory: str | os.PathLike[str], *, reactor: Any = None) -> None:
        self._reactor = reactor if reactor is not None else _default_reactor()
        self._directory = Path(directory).resolve()
        self._database = _Database.attach(self._directory, self._reactor)
        self._session_id = uuid.uuid4().hex
        self._watches = WatchRegistry()
        self._in_flight = 0  # requests queued to the writer and not yet delivered
        self._database.sessions.add(self)

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self._directory)!r})"

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def commit_count(self) -> int:
        """Transactions committed in this directory since this process opened it; each
        covers every request that was waiting (group commit)."""
        return self._database.commits

    @property
    def session_state(self) -> SessionState:
        return SessionState.LOST if self.closed else SessionState.CONNECTED

    # -- operations -------------------------------------------------------------------------

    def _get(self, path: str) -> Deferred[Versioned | None]:
        return self._read(lambda connection: sqlite_tree.read_node(connection, path))

    def _children(self, path: str) -> Deferred[list[str]]:
        return self._read(lambda connection: sqlite_tree.read_children(connection, path))

    def _create(self, path: str, value: bytes, ephemeral: bool, sequential: bool) -> Deferred[str]:
        owner = self._session_id if ephemeral else None
        return self._submit(
            lambda connection: sqlite_tree.create_node(connection, path, value, owner, sequential)
        )

    def _set(self, path: str, value: bytes, expected_version: int | None) -> Deferred[int]:
        return self._submit(
            lambda connection: sqlite_tree.set_node(connection, path, value, expected_version)
        )

    def _delete(self, path: str, expected_version: int | None, recursive: bool) -> Deferred[None]:
        return self._submit(
            lambda connection: sqlite_tree.delete_node(
                connection, path, expected_version, recursive
            )
        )

    def _watch(self, path: str, callback: WatchCallback) -> Callable[[], None]:
        return self._watches.add(path, callback)

    def _add_session_listener(self, callback: SessionListener) -> None:
        # An embedded session never disconnects or expires: there is nothing to report.
        pass

    def _close(self) -> Deferred[None]:
        self._watches.clear()
        ephemerals_gone = self._submit(
            lambda connection: sqlite_tree.delete_owned(connection, self._session_id)
        )

        def detach(result: Any) -> Deferred[Any]:
            # Detach even if deleting the ephemerals failed: the next process to open
            # the directory deletes leftovers, and the failure still reaches the caller.
            return self._database.detach(self).addCallback(lambda _: result)

        return ephemerals_gone.addBoth(detach)

    # -- plumbing ---------------------------------------------------------------------------

    def _read(self, operation: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        if self._in_flight:
            # Queue behind this session's own pending requests so it reads its writes.
            return self._submit(lambda connection: (operation(connection), []))
        try:
            return defer.succeed(self._database.read(operation))
        except MetadataError as error:
            return defer.fail(error)

    def _submit(self, operation: Operation) -> Deferred[Any]:
        deferred: Deferred[Any] = Deferred()
        self._in_flight += 1
        self._database.submit(_Request(operation, deferred, self))
        return deferred

    def _notify(self, paths: list[str]) -> None:
        self._watches.notify_all(paths)
