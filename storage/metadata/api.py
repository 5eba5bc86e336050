"""The metadata-store interface every kop component codes against.

A metadata store is a small tree of nodes ("/a/b/c"), each holding bytes and a
version, as in ZooKeeper: versions start at 0 on create and go up by one per set;
set/delete can be made conditional on the version (compare-and-set); ephemeral
nodes belong to the store's session and vanish with it; sequential nodes get a
10-digit increasing suffix; persistent watches report changes.

``MetadataStore`` validates every argument here, once, and then calls the
implementation's ``_get``/``_create``/... hooks, so both stores accept and refuse
exactly the same input. All failures arrive through the returned Deferred.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred

from storage.metadata.errors import (
    InvalidPathError,
    NodeExistsError,
    SessionLostError,
    ValueTooLargeError,
)
from storage.metadata.paths import ROOT, validate_path
from storage.metadata.watches import WatchCallback

# ZooKeeper refuses requests above jute.maxbuffer (1 MiB by default, path included);
# both stores refuse values above this so code that works embedded works on ZooKeeper.
MAX_VALUE_BYTES = 1_000_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Versioned:
    """A node's value and its version (0 after create, +1 per set)."""

    value: bytes
    version: int


class SessionState(enum.Enum):
    """Session transitions reported to session listeners."""

    CONNECTED = "connected"  # (re)connected; ephemerals of this session exist
    SUSPENDED = "suspended"  # connection lost, session may still be alive
    LOST = "lost"  # session expired: its ephemerals are gone; a new session follows


SessionListener = Callable[[SessionState], None]


def _bytes_value(value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"node value must be bytes, got {type(value).__name__}")
    data = bytes(value)
    if len(data) > MAX_VALUE_BYTES:
        raise ValueTooLargeError(
            f"node value of {len(data)} bytes exceeds the {MAX_VALUE_BYTES}-byte limit"
        )
    return data


def _check_version(expected_version: object) -> int | None:
    if expected_version is None:
        return None
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise TypeError(f"expected_version must be an int or None, got {expected_version!r}")
    if expected_version < 0:
        raise ValueError(f"expected_version must be >= 0 (None means any), got {expected_version}")
    return expected_version


def _deferred_from(call: Callable[[], Deferred[T]]) -> Deferred[T]:
    """Run ``call``; an exception it raises (bad argument, closed store) becomes a failed Deferred."""
    try:
        return call()
    except Exception as error:
        return defer.fail(error)


class MetadataStore(ABC):
    """A versioned tree of nodes with CAS, ephemerals, sequential nodes and watches."""

    _closed: bool = False

    # -- public API (validation, then the implementation's hook) -------------------------

    def get(self, path: str) -> Deferred[Versioned | None]:
        """The node's value and version, or None if there is no node."""
        return _deferred_from(lambda: self._get(self._open_path(path)))

    def create(
        self,
        path: str,
        value: bytes = b"",
        *,
        ephemeral: bool = False,
        sequential: bool = False,
    ) -> Deferred[str]:
        """Create a node (and any missing parents, as empty persistent nodes).

        Returns the path created: for a sequential node, ``path`` plus a 10-digit
        number larger than any earlier one under the same parent. Fails with
        NodeExistsError if the node exists.
        """

        def call() -> Deferred[str]:
            self._check_open()
            checked = validate_path(path, sequential=bool(sequential))
            if checked == ROOT and not sequential:
                raise NodeExistsError("the root node always exists", ROOT)
            return self._create(checked, _bytes_value(value), bool(ephemeral), bool(sequential))

        return _deferred_from(call)

    def set(self, path: str, value: bytes, *, expected_version: int | None = None) -> Deferred[int]:
        """Replace the value; returns the new version.

        With ``expected_version`` it is a compare-and-set: BadVersionError unless the
        node is still at that version. NoNodeError if there is no node.
        """
        return _deferred_from(
            lambda: self._set(
                self._open_path(path), _bytes_value(value), _check_version(expected_version)
            )
        )

    def delete(
        self, path: str, *, expected_version: int | None = None, recursive: bool = False
    ) -> Deferred[None]:
        """Delete a node; NotEmptyError if it has children unless ``recursive``.

        ``expected_version`` applies to the node itself (not its descendants).
        NoNodeError if there is no node. The root cannot be deleted.
        """

        def call() -> Deferred[None]:
            checked = self._open_path(path)
            if checked == ROOT:
                raise InvalidPathError("the root node cannot be deleted", ROOT)
            return self._delete(checked, _check_version(expected_version), bool(recursive))

        return _deferred_from(call)

    def children(self, path: str) -> Deferred[list[str]]:
        """Names (not paths) of the node's children, sorted; [] if the node is missing."""
        return _deferred_from(lambda: self._children(self._open_path(path)))

    def watch(self, path: str, callback: WatchCallback) -> Callable[[], None]:
        """Call ``callback(path)`` on the reactor thread whenever the node is created,
        changed or deleted, or a child is added or removed; returns cancel().

        Notifications say "look again", not what changed: several quick changes may
        arrive as one call, but a change made after a call has started always leads to
        another call. After a ZooKeeper reconnection every watch is called once, since
        changes may have been missed meanwhile. The node need not exist.

        Changes made after a later read through this same store has returned are
        certain to be reported (on ZooKeeper the watch is armed asynchronously; the read
        is queued behind it): watch first, then read the initial state.
        """
        checked = self._open_path(path)
        if not callable(callback):
            raise TypeError(f"watch callback must be callable, got {callback!r}")
        return self._watch(checked, callback)

    def add_session_listener(self, callback: SessionListener) -> None:
        """Call ``callback(state)`` on the reactor thread on every session transition."""
        if not callable(callback):
            raise TypeError(f"session listener must be callable, got {callback!r}")
        self._add_session_listener(callback)

    def ready(self, timeout: float = 15.0) -> Deferred[None]:
        """Fires once the store can serve requests (ZooKeeper: connected), or fails with
        ConnectionLossError after ``timeout`` seconds. Requests made earlier just wait."""

        def call() -> Deferred[None]:
            self._check_open()
            return self._ready(timeout)

        return _deferred_from(call)

    def close(self) -> Deferred[None]:
        """End the session: its ephemeral nodes are deleted and its watches stop.

        Later calls fail with SessionLostError. Closing twice is harmless.
        """
        if self._closed:
            return defer.succeed(None)
        self._closed = True
        return _deferred_from(self._close)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    @abstractmethod
    def session_state(self) -> SessionState:
        """The session's current state."""

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SessionLostError(f"{self!r} is closed")

    def _open_path(self, path: object) -> str:
        self._check_open()
        return validate_path(path)

    # -- implementation hooks: arguments are already validated -----------------------------

    @abstractmethod
    def _get(self, path: str) -> Deferred[Versioned | None]: ...

    @abstractmethod
    def _create(
        self, path: str, value: bytes, ephemeral: bool, sequential: bool
    ) -> Deferred[str]: ...

    @abstractmethod
    def _set(self, path: str, value: bytes, expected_version: int | None) -> Deferred[int]: ...

    @abstractmethod
    def _delete(
        self, path: str, expected_version: int | None, recursive: bool
    ) -> Deferred[None]: ...

    @abstractmethod
    def _children(self, path: str) -> Deferred[list[str]]: ...

    @abstractmethod
    def _watch(self, path: str, callback: WatchCallback) -> Callable[[], None]: ...

    @abstractmethod
    def _add_session_listener(self, callback: SessionListener) -> None: ...

    def _ready(self, timeout: float) -> Deferred[None]:
        return defer.succeed(None)

    @abstractmethod
    def _close(self) -> Deferred[None]: ...
