"""Test doubles for cluster unit tests: metadata sessions that can expire, and polling.

`ExpirableStore` is the embedded store (several sessions share one directory inside a
process, as brokers share one ZooKeeper) plus what ZooKeeper does on a session expiry:
`expire()` deletes the session's ephemeral nodes, reports LOST, and goes on as a new session
(CONNECTED) — without needing a ZooKeeper server or sockets.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from twisted.internet import reactor, task

from storage.metadata import EmbeddedStore, SessionListener, SessionState, sqlite_tree


class ExpirableStore(EmbeddedStore):
    def __init__(self, directory) -> None:
        super().__init__(directory)
        self._listeners: list[SessionListener] = []

    def _add_session_listener(self, callback: SessionListener) -> None:
        self._listeners.append(callback)

    async def expire(self) -> None:
        old_session = self._session_id
        await self._submit(lambda connection: sqlite_tree.delete_owned(connection, old_session))
        self._session_id = uuid.uuid4().hex
        for state in (SessionState.LOST, SessionState.CONNECTED):
            for listener in list(self._listeners):
                listener(state)


async def eventually(condition: Callable[[], bool], timeout: float = 10.0,
                     message: str = "") -> None:
    """Poll `condition()` (watch notifications arrive asynchronously) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {message or condition}")
        await task.deferLater(reactor, 0.01, lambda: None)
