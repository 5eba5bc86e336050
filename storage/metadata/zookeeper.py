"""ZooKeeperStore: the metadata store on a ZooKeeper ensemble, through kazoo.

kazoo runs its own threads (connection, callbacks). Every request here uses kazoo's
asynchronous API and hands the answer to the reactor thread with
``reactor.callFromThread``; the reactor never waits on ZooKeeper.

- Paths are prefixed with the chroot ("/kop" unless the URL names another), which is
  created when the first connection is made (and by any create that needs it).
- Persistent watches: ZooKeeper watches fire once, and kazoo 2.11 has no API for
  ZooKeeper 3.6's persistent watches, so each watched path keeps an exists-watch and a
  children-watch armed, and re-arms them whenever one fires; the callbacks are called
  once the server has armed them again, so no change can fall between what a
  callback reads and the next notification.
- Connection loss drops every ZooKeeper watch (kazoo clears them); on reconnection all
  watches are re-armed and every callback is called once, since changes may have been
  missed meanwhile.
- Reads that meet a connection loss are retried (kazoo queues them until it
  reconnects); writes report ConnectionLossError, because whether they happened is
  unknown — the caller re-reads and decides.
- The session timeout is negotiated: the server clamps the one asked for to its
  [minSessionTimeout, maxSessionTimeout]. ``session_timeout`` is the one granted, which
  is what anything timed against the session (a broker's ownership lease) must use.
  kazoo does not keep it, so the store reads it from the answer to each session's
  handshake (a wrapper around kazoo's connection handshake).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from kazoo import exceptions as kazoo_errors
from kazoo.client import KazooClient
from kazoo.interfaces import IAsyncResult
from kazoo.protocol.serialization import Connect
from kazoo.protocol.states import EventType, KazooState, WatchedEvent
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from storage.metadata.api import MetadataStore, SessionListener, SessionState, Versioned
from storage.metadata.errors import (
    BadVersionError,
    ConnectionLossError,
    MetadataError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SessionLostError,
)
from storage.metadata.paths import ROOT, child_path, parent_of, validate_path
from storage.metadata.watches import WatchCallback, WatchRegistry

DEFAULT_CHROOT = "/kop"
DEFAULT_SESSION_TIMEOUT = 10.0

# How many connections a read is tried on before a connection loss is reported.
READ_ATTEMPTS = 5
# Bound on the remembered existing parents (the set is simply cleared beyond it).
MAX_KNOWN_PARENTS = 10_000
# How often a recursive delete starts over when children keep appearing under it.
RECURSIVE_DELETE_ATTEMPTS = 5

T = TypeVar("T")

_log = Logger()

_SESSION_STATES = {
    KazooState.CONNECTED: SessionState.CONNECTED,
    KazooState.SUSPENDED: SessionState.SUSPENDED,
    KazooState.LOST: SessionState.LOST,
}


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _translate(error: BaseException, path: str) -> BaseException:
    """kazoo's exception -> ours, with the caller's (chroot-relative) path in the message."""
    if isinstance(error, kazoo_errors.NodeExistsError):
        return NodeExistsError(f"node {path} already exists", path)
    if isinstance(error, kazoo_errors.NoNodeError):
        return NoNodeError(f"no node at {path}", path)
    if isinstance(error, kazoo_errors.BadVersionError):
        return BadVersionError(f"{path} is not at the expected version", path)
    if isinstance(error, kazoo_errors.NotEmptyError):
        return NotEmptyError(f"{path} has children", path)
    if isinstance(error, kazoo_errors.NoChildrenForEphemeralsError):
        return NoChildrenForEphemeralsError(
            f"an ancestor of {path} is ephemeral and cannot have children", path
        )
    if isinstance(error, kazoo_errors.SessionExpiredError | kazoo_errors.ConnectionClosedError):
        return SessionLostError(f"ZooKeeper session lost during the request on {path}", path)
    if isinstance(error, kazoo_errors.ConnectionLoss):
        return ConnectionLossError(
            f"connection to ZooKeeper lost during the request on {path}; "
            "a write may or may not have happened",
            path,
        )
    if isinstance(error, kazoo_errors.KazooException):
        return MetadataError(f"ZooKeeper error on {path}: {error!r}", path)
    return error


def _ancestors(full_path: str) -> list[str]:
    """ "/a/b/c" -> ["/a", "/a/b", "/a/b/c"]; the root has none."""
    if full_path == ROOT:
        return []
    names = full_path[1:].split("/")
    return ["/" + "/".join(names[: count + 1]) for count in range(len(names))]


# kazoo waits session_timeout / len(hosts) for the answer to a connection handshake. A
# ZooKeeper server that is starting sometimes accepts a connection and never answers it;
# with one host that wait is the whole session timeout, and the session expires while
# the client waits. Listing every host this many times divides the wait accordingly.
HOST_REPEATS = 3


def _with_repeated_hosts(hosts: str) -> str:
    return ",".join(hosts.split(",") * HOST_REPEATS)


def _on_handshake(client: KazooClient, granted: Callable[[float], None]) -> bool:
    """Have ``granted(seconds)`` called with the session timeout the server grants in each
    handshake (kazoo's connection thread). False if this kazoo has no handshake to wrap."""
    connection = getattr(client, "_connection", None)
    invoke = getattr(connection, "_invoke", None)
    if invoke is None:
        return False

    def invoke_and_note(timeout: float, request: Any, xid: int | None = None) -> Any:
        answer = invoke(timeout, request, xid)
        if isinstance(request, Connect) and isinstance(answer, tuple):
            time_out = getattr(answer[0], "time_out", 0)
            if time_out > 0:  # 0 or less: the session expired (kazoo raises next)
                granted(time_out / 1000.0)
        return answer

    connection._invoke = invoke_and_note
    return True


def _none_if_missing(failure: Any) -> None:
    failure.trap(NoNodeError)
    return None


def _empty_if_missing(failure: Any) -> list[str]:
    failure.trap(NoNodeError)
    return []


async def _all(deferreds: list[Deferred[Any]]) -> None:
    """Wait for every Deferred; raise the first failure (after all have finished)."""
    results = await defer.DeferredList(deferreds, consumeErrors=True)
    for succeeded, value in results:
        if not succeeded:
            value.raiseException()


class _PathWatch:
    """Keeps kazoo's one-shot watches armed on one path; each firing becomes a notification.

    A notification is delivered only once the watches are armed again (the server has
    answered the arming requests), so any change made after a callback runs, by any
    session, fires a new notification. Events that arrive while arming trigger one more
    round before anybody is notified.
    """

    def __init__(self, store: ZooKeeperStore, path: str) -> None:
        self._store = store
        self.path = path
        self._full_path = store._full_path(path)
        self.active = True
        self._arming = False
        self._arm_again = False
        self._notify_when_armed = False

    def arm(self, notify: bool) -> None:
        """(Re-)arm the watches; with ``notify``, tell the callbacks once that is done."""
        self._notify_when_armed |= notify
        if self._arming:
            self._arm_again = True
            return
        self._arming = True
        self._store._send_when_connectable(self._send_arming_requests, self._arming_failed)

    def _send_arming_requests(self) -> None:
        # An exists-watch fires on create, value change and delete; a children-watch on
        # child create and delete. ZooKeeper answers in order, so the children answer
        # arriving means both watches are set.
        client = self._store._client
        client.exists_async(self._full_path, watch=self._on_event).rawlink(self._log_failure)
        children = client.get_children_async(self._full_path, watch=self._on_event)
        children.rawlink(self._on_armed)

    def _on_event(self, event: WatchedEvent) -> None:  # kazoo thread
        # EventType.NONE reports a connection change, not a node change; the store
        # re-arms every watch when the connection comes back.
        if event.type != EventType.NONE:
            self._store._reactor.callFromThread(self._changed)

    def _changed(self) -> None:
        if self.active:
            self.arm(notify=True)

    def _on_armed(self, result: IAsyncResult) -> None:  # kazoo thread
        error = result.exception
        # NoNodeError: the node does not exist, and its exists-watch waits for its creation.
        armed = error is None or isinstance(error, kazoo_errors.NoNodeError)
        self._store._reactor.callFromThread(self._arming_done, armed)

    def _arming_failed(self, error: BaseException) -> None:
        self._arming_done(False)

    def _arming_done(self, armed: bool) -> None:
        self._arming = False
        if not self.active:
            return
        if self._arm_again:
            self._arm_again = False
            self.arm(notify=False)
        elif armed and self._notify_when_armed:
            self._notify_when_armed = False
            self._store._watches.notify(self.path)
        # Not armed (connection lost): the store re-arms every watch on reconnection.

    def _log_failure(self, result: IAsyncResult) -> None:  # kazoo thread
        error = result.exception
        if error is not None and not isinstance(
            error,
            kazoo_errors.ConnectionLoss  # re-armed on reconnection
            | kazoo_errors.SessionExpiredError
            | kazoo_errors.ConnectionClosedError,
        ):
            _log.error("cannot watch {path} in ZooKeeper: {error!r}", path=self.path, error=error)


class ZooKeeperStore(MetadataStore):
    """A ZooKeeper session (kazoo) exposing the MetadataStore interface under ``chroot``."""

    def __init__(
        self,
        hosts: str,
        chroot: str = DEFAULT_CHROOT,
        *,
        session_timeout: float = DEFAULT_SESSION_TIMEOUT,
        reactor: Any = None,
    ) -> None:
        self._chroot = validate_path(chroot)
        self._hosts = hosts
        self._reactor = reactor if reactor is not None else _default_reactor()
        self._state = SessionState.SUSPENDED  # not connected yet
        # kazoo refuses requests until its connection thread has started connecting,
        # so requests made before the first connection wait here, in order, as
        # (send, fail) pairs; None once the first connection was made.
        self._before_first_connection: (
            list[tuple[Callable[[], None], Callable[[BaseException], None]]] | None
        ) = []
        self._session_listeners: list[SessionListener] = []
        self._ready_waiters: list[Deferred[None]] = []
        self._path_watches: dict[str, _PathWatch] = {}
        self._known_parents: set[str] = set()  # full paths seen to exist as parents
        self._watches = WatchRegistry(
            on_first_watch=self._start_watching, on_last_unwatch=self._stop_watching
        )
        self._client = KazooClient(
            hosts=_with_repeated_hosts(hosts),
            timeout=session_timeout,
            # Reconnect forever, at most a second apart: a ZooKeeper restart should be
            # noticed quickly, and giving up is the caller's decision (ready() timeout).
            connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 2, "max_delay": 1.0},
        )
        self._requested_session_timeout = session_timeout
        self._granted_session_timeout: float | None = None
        if not _on_handshake(self._client, self._note_granted_session_timeout):
            _log.warn(
                "this kazoo does not show the session timeout ZooKeeper grants; assuming "
                "the {requested:g} s asked for",
                requested=session_timeout,
            )
        self._client.add_listener(self._on_kazoo_state)
        self._client.start_async()

    def __repr__(self) -> str:
        return f"ZooKeeperStore({self._hosts!r}, chroot={self._chroot!r})"

    @property
    def session_state(self) -> SessionState:
        return SessionState.LOST if self.closed else self._state

    @property
    def chroot(self) -> str:
        return self._chroot

    @property
    def session_timeout(self) -> float:
        """Seconds: the session timeout the server granted (to the latest session), or the
        one asked for until a session exists."""
        granted = self._granted_session_timeout
        return self._requested_session_timeout if granted is None else granted

    def _note_granted_session_timeout(self, seconds: float) -> None:  # kazoo thread
        # A float attribute is replaced atomically; readers on the reactor see old or new.
        self._granted_session_timeout = seconds

    # -- paths ------------------------------------------------------------------------------

    def _full_path(self, path: str) -> str:
        if self._chroot == ROOT:
            return path
        return self._chroot if path == ROOT else self._chroot + path

    def _relative_path(self, full_path: str) -> str:
        if self._chroot == ROOT:
            return full_path
        if full_path == self._chroot:
            return ROOT
        if full_path.startswith(self._chroot + "/"):
            return full_path[len(self._chroot) :]
        return full_path  # above the chroot (only ever in error messages)

    # -- requests ---------------------------------------------------------------------------

    def _request(
        self,
        path: str,
        start: Callable[[], IAsyncResult],
        convert: Callable[[Any], T] = lambda value: value,
    ) -> Deferred[T]:
        """Start a kazoo request; its converted answer fires the Deferred on the reactor."""
        self._check_open()
        deferred: Deferred[T] = Deferred()

        def finished(result: IAsyncResult) -> None:  # kazoo thread
            try:
                value = convert(result.get_nowait())
            except Exception as error:
                self._reactor.callFromThread(deferred.errback, _translate(error, path))
            else:
                self._reactor.callFromThread(deferred.callback, value)

        def send() -> None:
            try:
                start().rawlink(finished)
            except Exception as error:
                deferred.errback(_translate(error, path))

        self._send_when_connectable(send, deferred.errback)
        return deferred

    def _send_when_connectable(
        self, send: Callable[[], None], fail: Callable[[BaseException], None]
    ) -> None:
        if self._before_first_connection is None:
            send()
        else:
            self._before_first_connection.append((send, fail))

    def _retrying_read(self, attempt: Callable[[], Deferred[T]]) -> Deferred[T]:
        async def run() -> T:
            attempts_left = READ_ATTEMPTS
            while True:
                try:
                    return await attempt()
                except ConnectionLossError:
                    attempts_left -= 1
                    if attempts_left == 0 or self.closed:
                        raise
                await self._connected()  # each further attempt gets a fresh connection

        return defer.ensureDeferred(run())

    def _get(self, path: str) -> Deferred[Versioned | None]:
        full_path = self._full_path(path)

        def attempt() -> Deferred[Versioned | None]:
            return self._request(
                path,
                lambda: self._client.get_async(full_path),
                lambda answer: Versioned(answer[0] or b"", answer[1].version),
            ).addErrback(_none_if_missing)

        return self._retrying_read(attempt)

    def _children(self, path: str) -> Deferred[list[str]]:
        return self._retrying_read(
            lambda: self._children_or_missing(path).addErrback(_empty_if_missing)
        )

    def _children_or_missing(self, path: str) -> Deferred[list[str]]:
        full_path = self._full_path(path)
        return self._request(path, lambda: self._client.get_children_async(full_path), sorted)

    def _create(self, path: str, value: bytes, ephemeral: bool, sequential: bool) -> Deferred[str]:
        return self._ensure(self._create_with_parents(path, value, ephemeral, sequential))

    async def _create_with_parents(
        self, path: str, value: bytes, ephemeral: bool, sequential: bool
    ) -> str:
        """Create the missing parents and the node, sending every request at once.

        kazoo's makepath would first try the node, then create the parents and retry,
        letting the caller's next requests overtake the create. Sending the parent
        creates (whose NodeExistsError is ignored) just ahead of the node's keeps the
        session's requests in order. Parents seen to exist are remembered and skipped;
        if one has vanished since, the create is retried with every parent.
        """
        full_path = self._full_path(path)
        full_parent = parent_of(full_path)
        for trust_known_parents in (True, False):
            parent_outcomes = self._send_parent_creates(full_parent, trust_known_parents)
            creating = self._request(
                path,
                lambda: self._client.create_async(
                    full_path, value, ephemeral=ephemeral, sequence=sequential
                ),
                self._relative_path,
            )
            try:
                created = await creating
            except NoNodeError:
                for outcome in parent_outcomes:
                    if isinstance(await outcome, NoChildrenForEphemeralsError):
                        raise NoChildrenForEphemeralsError(
                            f"an ancestor of {path} is ephemeral and cannot have children", path
                        ) from None
                self._known_parents.difference_update(_ancestors(full_parent))
                if trust_known_parents:
                    continue
                raise
            self._remember_known_parents(full_parent)
            return created
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _send_parent_creates(
        self, full_parent: str, trust_known_parents: bool
    ) -> list[Deferred[BaseException | None]]:
        """Queue a create of each ancestor (outermost first); each Deferred gives its error."""
        outcomes = []
        for ancestor in _ancestors(full_parent):
            if trust_known_parents and ancestor in self._known_parents:
                continue
            outcome = self._request(
                self._relative_path(ancestor),
                lambda ancestor=ancestor: self._client.create_async(ancestor, b""),
                lambda _: None,
            )
            outcomes.append(outcome.addErrback(lambda failure: failure.value))
        return outcomes

    def _remember_known_parents(self, full_parent: str) -> None:
        if len(self._known_parents) > MAX_KNOWN_PARENTS:
            self._known_parents.clear()
        self._known_parents.update(_ancestors(full_parent))

    def _forget_known_parents(self, full_path: str) -> None:
        """Forget ``full_path`` and its descendants (being deleted)."""
        below = full_path + "/"
        self._known_parents = {
            known
            for known in self._known_parents
            if known != full_path and not known.startswith(below)
        }

    def _set(self, path: str, value: bytes, expected_version: int | None) -> Deferred[int]:
        full_path = self._full_path(path)
        version = -1 if expected_version is None else expected_version
        return self._request(
            path,
            lambda: self._client.set_async(full_path, value, version=version),
            lambda stat: stat.version,
        )

    def _delete(self, path: str, expected_version: int | None, recursive: bool) -> Deferred[None]:
        if recursive:
            return self._ensure(self._delete_tree(path, expected_version))
        return self._delete_one(path, expected_version)

    def _delete_one(self, path: str, expected_version: int | None) -> Deferred[None]:
        full_path = self._full_path(path)
        self._forget_known_parents(full_path)
        version = -1 if expected_version is None else expected_version
        return self._request(
            path,
            lambda: self._client.delete_async(full_path, version=version),
            lambda _: None,
        )

    async def _delete_tree(self, path: str, expected_version: int | None) -> None:
        """Delete ``path`` and its descendants, deepest first (ZooKeeper has no atomic way).

        The version is checked before anything is deleted and again, atomically, when
        ``path`` itself goes; children created meanwhile make it start over.
        """
        if expected_version is not None:
            node = await self._get(path)
            if node is None:
                raise NoNodeError(f"no node at {path}", path)
            if node.version != expected_version:
                raise BadVersionError(
                    f"{path} is at version {node.version}, not the expected {expected_version}",
                    path,
                )
        for _ in range(RECURSIVE_DELETE_ATTEMPTS):
            names = await self._children_or_missing(path)
            await _all(
                [self._ensure(self._delete_descendant(child_path(path, name))) for name in names]
            )
            try:
                await self._delete_one(path, expected_version)
                return
            except NotEmptyError:
                continue
        raise NotEmptyError(f"children keep appearing under {path}; gave up deleting it", path)

    async def _delete_descendant(self, path: str) -> None:
        with contextlib.suppress(NoNodeError):  # somebody else deleted it: fine
            await self._delete_tree(path, None)

    def _ensure(self, coroutine: Coroutine[Any, Any, T]) -> Deferred[T]:
        return defer.ensureDeferred(coroutine)

    # -- watches ------------------------------------------------------------------------------

    def _watch(self, path: str, callback: WatchCallback) -> Callable[[], None]:
        return self._watches.add(path, callback)

    def _start_watching(self, path: str) -> None:
        path_watch = self._path_watches[path] = _PathWatch(self, path)
        path_watch.arm(notify=False)

    def _stop_watching(self, path: str) -> None:
        # kazoo cannot remove a ZooKeeper watch; the inactive one fires once and is ignored.
        path_watch = self._path_watches.pop(path, None)
        if path_watch is not None:
            path_watch.active = False

    # -- session --------------------------------------------------------------------------------

    def _add_session_listener(self, callback: SessionListener) -> None:
        self._session_listeners.append(callback)

    def _on_kazoo_state(self, state: KazooState) -> None:  # kazoo connection thread
        self._reactor.callFromThread(self._session_changed, _SESSION_STATES[state])

    def _session_changed(self, state: SessionState) -> None:
        if self.closed:
            return
        self._state = state
        if state is SessionState.CONNECTED:
            if self._before_first_connection is None:
                self._rearm_watches()
            else:
                # First connection: create the chroot, then send what waited, in order.
                waiting, self._before_first_connection = self._before_first_connection, None
                self._send_parent_creates(self._chroot, trust_known_parents=False)
                for send, _ in waiting:
                    send()
            waiters, self._ready_waiters = self._ready_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        for listener in list(self._session_listeners):
            try:
                listener(state)
            except Exception:
                _log.failure("metadata session listener raised on {state}", state=state)

    def _rearm_watches(self) -> None:
        # Changes may have been missed while disconnected: every watch is told once.
        for path_watch in list(self._path_watches.values()):
            path_watch.arm(notify=True)

    def _connected(self) -> Deferred[None]:
        """Fires when the session is next connected (now, if it is)."""
        if self._state is SessionState.CONNECTED:
            return defer.succeed(None)
        waiter: Deferred[None] = Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    def _ready(self, timeout: float) -> Deferred[None]:
        if self._state is SessionState.CONNECTED:
            return defer.succeed(None)
        waiter = self._connected()

        def give_up() -> None:
            if waiter in self._ready_waiters:
                self._ready_waiters.remove(waiter)
                waiter.errback(
                    ConnectionLossError(
                        f"could not connect to ZooKeeper at {self._hosts} within {timeout:g} s"
                    )
                )

        timer = self._reactor.callLater(timeout, give_up)

        def stop_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return waiter.addBoth(stop_timer)

    def _close(self) -> Deferred[None]:
        self._client.remove_listener(self._on_kazoo_state)
        for path_watch in self._path_watches.values():
            path_watch.active = False
        self._path_watches.clear()
        self._watches.clear()
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.errback(SessionLostError(f"{self!r} was closed"))
        waiting, self._before_first_connection = self._before_first_connection or [], None
        for _, fail in waiting:
            fail(SessionLostError(f"{self!r} was closed before it connected"))
        # stop() sends closeSession (ephemerals go at once) and joins kazoo's threads.
        return threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._stop_client
        )

    def _stop_client(self) -> None:
        self._client.stop()
        self._client.close()
