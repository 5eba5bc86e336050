"""ZooKeeperStore beyond the shared contract: connection, chroot, session loss and expiry.

Tests that stop or disturb ZooKeeper use a private server (make_zookeeper_server).
"""

from __future__ import annotations

import pytest
import pytest_twisted
from test_metadata_contract import WatchRecorder, watched  # same directory
from twisted.internet import defer, reactor, threads
from twisted.internet.defer import Deferred

from storage.metadata import (
    ConnectionLossError,
    SessionState,
    Versioned,
    ZooKeeperStore,
    open_metadata_store,
)
from tests.zookeeper import free_loopback_port

EVENT_TIMEOUT = 15.0


class SessionRecorder:
    """A session listener that lets a test wait for a given state."""

    def __init__(self) -> None:
        self.states: list[SessionState] = []
        self._waiters: list[tuple[SessionState, int, Deferred[None]]] = []

    def __call__(self, state: SessionState) -> None:
        self.states.append(state)
        for waiter in list(self._waiters):
            wanted, mark, deferred = waiter
            if wanted in self.states[mark:]:
                self._waiters.remove(waiter)
                deferred.callback(None)

    def mark(self) -> int:
        return len(self.states)

    def reached(self, state: SessionState, mark: int) -> Deferred[None]:
        """Fires once ``state`` is reported after ``mark``."""
        if state in self.states[mark:]:
            return defer.succeed(None)
        deferred: Deferred[None] = Deferred()
        self._waiters.append((state, mark, deferred))
        return deferred.addTimeout(EVENT_TIMEOUT, reactor)


@pytest_twisted.async_yield_fixture
async def stores():
    """Opens ZooKeeper stores for a test and closes them all afterwards."""
    opened: list[ZooKeeperStore] = []

    def open_store(url: str) -> ZooKeeperStore:
        store = open_metadata_store(url)
        assert isinstance(store, ZooKeeperStore)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_ready_fails_clearly_when_nothing_listens(stores):
    store = stores(f"zk://127.0.0.1:{free_loopback_port()}/kop")
    with pytest.raises(ConnectionLossError, match="could not connect to ZooKeeper"):
        await store.ready(timeout=0.5)
    waiting = store.get("/x")  # queued until a connection that never comes
    await store.close()
    with pytest.raises(Exception, match="closed before it connected"):
        await waiting


@pytest_twisted.ensureDeferred
async def test_chroots_isolate_stores_and_are_created_on_connect(zookeeper_server, stores):
    prefix = zookeeper_server.unique_url().rsplit("/", 1)[1]
    first = stores(zookeeper_server.url(f"/{prefix}/first"))
    second = stores(zookeeper_server.url(f"/{prefix}/second"))
    whole_tree = ZooKeeperStore(zookeeper_server.host_port, chroot="/")  # URLs default to /kop
    await first.create("/shared-name", b"first")
    await second.ready()
    assert await second.get("/") is not None  # the chroot exists although nothing was written
    assert await second.get("/shared-name") is None
    try:
        assert await whole_tree.children(f"/{prefix}") == ["first", "second"]
        assert await whole_tree.get(f"/{prefix}/first/shared-name") == Versioned(b"first", 0)
    finally:
        await whole_tree.close()


@pytest_twisted.ensureDeferred
async def test_default_chroot_is_kop(zookeeper_server):
    store = open_metadata_store(f"zk://{zookeeper_server.host_port}")
    try:
        assert store.chroot == "/kop"
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_create_still_works_after_another_session_deleted_a_remembered_parent(
    zookeeper_url, stores
):
    store, other = stores(zookeeper_url), stores(zookeeper_url)
    await store.create("/parent/one")
    await other.delete("/parent", recursive=True)
    assert await store.create("/parent/two", b"2") == "/parent/two"
    assert await other.children("/parent") == ["two"]


@pytest_twisted.ensureDeferred
async def test_server_restart_suspends_then_reconnects_the_same_session(
    make_zookeeper_server, stores
):
    server = make_zookeeper_server()
    # The session must outlive the restart: stopping and starting a JVM plus the client's
    # reconnection back-off can take several seconds on a busy machine, so leave ample room.
    store = stores(server.url("/kop") + "?session_timeout=30")
    sessions = SessionRecorder()
    store.add_session_listener(sessions)
    await store.create("/registered", b"me", ephemeral=True)
    await store.create("/watched", b"0")
    recorder = WatchRecorder()
    await watched(store, "/watched", recorder)
    mark = sessions.mark()

    await threads.deferToThread(server.stop)
    await sessions.reached(SessionState.SUSPENDED, mark)
    assert store.session_state is SessionState.SUSPENDED
    reading = store.get("/watched")  # waits for the connection to come back
    await threads.deferToThread(server.start)
    await sessions.reached(SessionState.CONNECTED, mark)

    assert await reading == Versioned(b"0", 0)
    assert SessionState.LOST not in sessions.states[mark:]
    assert await store.get("/registered") == Versioned(b"me", 0)  # same session: still there
    assert recorder.paths  # every watch is told to look again after a reconnection
    mark = recorder.mark()
    await store.set("/watched", b"1")
    await recorder.after(mark)  # and the watch was re-armed


@pytest_twisted.ensureDeferred
async def test_session_expiry_is_reported_lost_and_a_new_session_follows(
    make_zookeeper_server, stores
):
    server = make_zookeeper_server()
    url = server.url("/kop") + "?session_timeout=10"
    store, observer = stores(url), stores(url)
    sessions = SessionRecorder()
    store.add_session_listener(sessions)
    await store.create("/ephemeral", b"mine", ephemeral=True)
    await store.create("/watched", b"0")
    recorder = WatchRecorder()
    await watched(store, "/watched", recorder)
    mark, watch_mark = sessions.mark(), recorder.mark()

    await threads.deferToThread(server.expire_session, store)
    await sessions.reached(SessionState.LOST, mark)
    await sessions.reached(SessionState.CONNECTED, mark)

    assert await observer.get("/ephemeral") is None  # gone with the expired session
    assert await store.get("/watched") == Versioned(b"0", 0)  # the new session works
    assert len(recorder.paths) > watch_mark  # told to look again
    watch_mark = recorder.mark()
    await observer.set("/watched", b"1")
    await recorder.after(watch_mark)  # re-armed on the new session
    await store.create("/ephemeral", b"again", ephemeral=True)
    assert await observer.get("/ephemeral") == Versioned(b"again", 0)
