"""The MetadataStore contract, run against both stores: embedded (SQLite) and a real ZooKeeper.

Every test gets ``open_store()``, which opens a new session on one backing store
private to the test (a fresh directory, or a fresh chroot on the shared ZooKeeper).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher
from twisted.python.threadable import isInIOThread

from storage.metadata import (
    MAX_VALUE_BYTES,
    BadVersionError,
    InvalidPathError,
    MetadataStore,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SessionLostError,
    SessionState,
    ValueTooLargeError,
    Versioned,
    open_metadata_store,
)

EVENT_TIMEOUT = 10.0


@pytest.fixture(params=["embedded", "zookeeper"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "embedded":
        return str(tmp_path / "metadata")
    return request.getfixturevalue("zookeeper_url")


@pytest_twisted.async_yield_fixture
async def open_store(store_url: str):
    stores: list[MetadataStore] = []

    def open_session() -> MetadataStore:
        store = open_metadata_store(store_url)
        stores.append(store)
        return store

    yield open_session
    for store in stores:
        await store.close()


class WatchRecorder:
    """A watch callback that records notifications and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.off_reactor_thread = 0
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def __call__(self, path: str) -> None:
        if not isInIOThread():
            self.off_reactor_thread += 1
        self.paths.append(path)
        ready = [waiter for waiter in self._waiters if len(self.paths) > waiter[0]]
        for waiter in ready:
            self._waiters.remove(waiter)
            waiter[1].callback(None)

    def mark(self) -> int:
        return len(self.paths)

    def after(self, mark: int) -> Deferred[None]:
        """Fires once a notification arrives after ``mark``; fails after EVENT_TIMEOUT."""
        if len(self.paths) > mark:
            return defer.succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append((mark, waiter))
        return waiter.addTimeout(EVENT_TIMEOUT, reactor)


async def watched(store: MetadataStore, path: str, recorder: WatchRecorder) -> Callable[[], None]:
    """Watch, then read through the same store: once the read returns the watch is armed
    (on ZooKeeper the arming requests go first on the same session)."""
    cancel = store.watch(path, recorder)
    await store.get(path)
    return cancel


# -- basic operations ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_create_get_set_delete_round_trip(open_store):
    store = open_store()
    assert await store.get("/topics/orders") is None
    assert await store.create("/topics/orders", b"v0") == "/topics/orders"
    assert await store.get("/topics/orders") == Versioned(b"v0", 0)
    assert await store.set("/topics/orders", b"v1") == 1
    assert await store.set("/topics/orders", b"v2") == 2
    assert await store.get("/topics/orders") == Versioned(b"v2", 2)
    await store.delete("/topics/orders")
    assert await store.get("/topics/orders") is None
    assert await store.children("/topics") == []


@pytest_twisted.ensureDeferred
async def test_values_are_bytes_exactly(open_store):
    store = open_store()
    every_byte = bytes(range(256)) * 4
    await store.create("/binary", every_byte)
    await store.create("/empty")
    await store.create("/largest", b"x" * MAX_VALUE_BYTES)
    assert (await store.get("/binary")).value == every_byte
    assert (await store.get("/empty")).value == b""
    assert (await store.get("/largest")).value == b"x" * MAX_VALUE_BYTES
    await store.set("/binary", bytearray(b"from a bytearray"))
    assert (await store.get("/binary")).value == b"from a bytearray"


@pytest_twisted.ensureDeferred
async def test_create_existing_node_fails_and_keeps_value(open_store):
    store = open_store()
    await store.create("/a", b"first")
    with pytest.raises(NodeExistsError) as raised:
        await store.create("/a", b"second")
    assert raised.value.path == "/a"
    assert await store.get("/a") == Versioned(b"first", 0)


@pytest_twisted.ensureDeferred
async def test_set_and_delete_of_missing_node_fail(open_store):
    store = open_store()
    with pytest.raises(NoNodeError):
        await store.set("/missing", b"x")
    with pytest.raises(NoNodeError):
        await store.delete("/missing")
    with pytest.raises(NoNodeError):
        await store.delete("/missing", recursive=True)
    assert await store.get("/missing") is None


@pytest_twisted.ensureDeferred
async def test_create_makes_missing_parents_as_empty_nodes(open_store):
    store = open_store()
    await store.create("/a/b/c", b"leaf")
    assert await store.get("/a") == Versioned(b"", 0)
    assert await store.get("/a/b") == Versioned(b"", 0)
    assert await store.children("/a") == ["b"]
    assert await store.children("/a/b") == ["c"]


@pytest_twisted.ensureDeferred
async def test_children_are_sorted_names_and_empty_for_missing_node(open_store):
    store = open_store()
    for name in ["b", "a10", "a2", "c", "A"]:
        await store.create(f"/parent/{name}")
    await store.create("/parent/a2/grandchild")
    await store.create("/parentless-sibling")
    assert await store.children("/parent") == ["A", "a10", "a2", "b", "c"]
    assert await store.children("/nowhere") == []
    assert "parent" in await store.children("/")
    assert "parentless-sibling" in await store.children("/")


@pytest_twisted.ensureDeferred
async def test_root_always_exists_and_cannot_be_deleted(open_store):
    store = open_store()
    await store.create("/x")
    assert await store.get("/") is not None
    with pytest.raises(NodeExistsError):
        await store.create("/")
    with pytest.raises(InvalidPathError):
        await store.delete("/", recursive=True)
    assert await store.get("/x") is not None


@pytest_twisted.ensureDeferred
async def test_a_store_reads_its_own_writes_without_waiting_for_them(open_store):
    store = open_store()
    created = store.create("/pipelined", b"0")
    changed = store.set("/pipelined", b"1")
    read = store.get("/pipelined")
    listed = store.children("/")
    assert await read == Versioned(b"1", 1)
    assert "pipelined" in await listed
    assert await created == "/pipelined"
    assert await changed == 1


# -- compare-and-set ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_set_with_expected_version_is_compare_and_set(open_store):
    store = open_store()
    await store.create("/cas", b"v0")
    assert await store.set("/cas", b"v1", expected_version=0) == 1
    with pytest.raises(BadVersionError) as raised:
        await store.set("/cas", b"stale", expected_version=0)
    assert raised.value.path == "/cas"
    assert await store.get("/cas") == Versioned(b"v1", 1)
    assert await store.set("/cas", b"v2", expected_version=1) == 2


@pytest_twisted.ensureDeferred
async def test_delete_with_expected_version(open_store):
    store = open_store()
    await store.create("/d", b"")
    await store.set("/d", b"changed")
    with pytest.raises(BadVersionError):
        await store.delete("/d", expected_version=0)
    assert await store.get("/d") == Versioned(b"changed", 1)
    await store.delete("/d", expected_version=1)
    assert await store.get("/d") is None


@pytest_twisted.ensureDeferred
async def test_concurrent_compare_and_set_from_two_sessions_has_one_winner(open_store):
    first, second = open_store(), open_store()
    await first.create("/counter", b"0")
    attempts = [
        store.set("/counter", label, expected_version=0)
        for store, label in [(first, b"first"), (second, b"second")] * 3
    ]
    outcomes = await defer.DeferredList(attempts, consumeErrors=True)
    winners = [result for ok, result in outcomes if ok]
    losers = [result for ok, result in outcomes if not ok]
    assert winners == [1]
    assert len(losers) == 5 and all(loser.check(BadVersionError) for loser in losers)
    assert (await second.get("/counter")).version == 1


# -- delete ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_delete_refuses_node_with_children_unless_recursive(open_store):
    store = open_store()
    await store.create("/tree/a/x", b"1")
    await store.create("/tree/a/y", b"2")
    await store.create("/tree/b", b"3")
    await store.create("/tree-sibling", b"kept")
    with pytest.raises(NotEmptyError):
        await store.delete("/tree")
    assert await store.children("/tree") == ["a", "b"]
    await store.delete("/tree", recursive=True)
    assert await store.get("/tree") is None
    assert await store.get("/tree/a/x") is None
    assert await store.get("/tree-sibling") == Versioned(b"kept", 0)


@pytest_twisted.ensureDeferred
async def test_recursive_delete_with_wrong_version_deletes_nothing(open_store):
    store = open_store()
    await store.create("/tree/leaf", b"1")
    await store.set("/tree", b"versioned")
    with pytest.raises(BadVersionError):
        await store.delete("/tree", recursive=True, expected_version=0)
    assert await store.get("/tree/leaf") == Versioned(b"1", 0)
    await store.delete("/tree", recursive=True, expected_version=1)
    assert await store.get("/tree") is None


# -- sequential and ephemeral nodes --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sequential_nodes_get_increasing_ten_digit_suffixes(open_store):
    store = open_store()
    created = [await store.create("/queue/item-", b"%d" % i, sequential=True) for i in range(12)]
    suffixes = [path.removeprefix("/queue/item-") for path in created]
    assert all(len(suffix) == 10 and suffix.isdigit() for suffix in suffixes)
    assert [int(suffix) for suffix in suffixes] == sorted({int(suffix) for suffix in suffixes})
    assert await store.children("/queue") == [path.removeprefix("/queue/") for path in created]
    for i, path in enumerate(created):
        assert (await store.get(path)).value == b"%d" % i


@pytest_twisted.ensureDeferred
async def test_concurrent_sequential_creates_from_two_sessions_are_distinct(open_store):
    first, second = open_store(), open_store()
    creates = [store.create("/locks/", sequential=True) for store in (first, second) * 10]
    created = await defer.gatherResults(creates)
    assert len(set(created)) == 20
    assert len(await first.children("/locks")) == 20


@pytest_twisted.ensureDeferred
async def test_ephemeral_node_vanishes_when_its_session_closes(open_store):
    owner, observer = open_store(), open_store()
    await owner.create("/nodes/node-1", b"info", ephemeral=True)
    await owner.create("/nodes/persistent", b"stays")
    await owner.create("/nodes/node-", b"seq", ephemeral=True, sequential=True)
    assert await observer.get("/nodes/node-1") == Versioned(b"info", 0)
    recorder = WatchRecorder()
    await watched(observer, "/nodes/node-1", recorder)
    mark = recorder.mark()

    await owner.close()

    assert await observer.get("/nodes/node-1") is None
    assert await observer.children("/nodes") == ["persistent"]
    await recorder.after(mark)
    assert owner.session_state is SessionState.LOST


@pytest_twisted.ensureDeferred
async def test_ephemeral_nodes_cannot_have_children(open_store):
    store = open_store()
    await store.create("/member", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        await store.create("/member/child")
    with pytest.raises(NoChildrenForEphemeralsError):
        await store.create("/member/deeper/child")
    assert await store.children("/member") == []


# -- watches -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_watch_reports_create_change_and_delete_made_by_another_session(open_store):
    watcher, writer = open_store(), open_store()
    recorder = WatchRecorder()
    await watched(watcher, "/w", recorder)

    for change in (
        lambda: writer.create("/w", b"0"),
        lambda: writer.set("/w", b"1"),
        lambda: writer.delete("/w"),
        lambda: writer.create("/w", b"again"),
    ):
        mark = recorder.mark()
        await change()
        await recorder.after(mark)
    assert set(recorder.paths) == {"/w"}
    assert recorder.off_reactor_thread == 0


@pytest_twisted.ensureDeferred
async def test_watch_reports_children_added_and_removed(open_store):
    watcher, writer = open_store(), open_store()
    await writer.create("/parent")
    recorder = WatchRecorder()
    await watched(watcher, "/parent", recorder)

    mark = recorder.mark()
    await writer.create("/parent/child", b"c")
    await recorder.after(mark)
    assert await watcher.children("/parent") == ["child"]

    mark = recorder.mark()
    await writer.delete("/parent/child")
    await recorder.after(mark)
    assert await watcher.children("/parent") == []


@pytest_twisted.ensureDeferred
async def test_watch_is_not_called_for_a_grandchild_value_change(open_store):
    store = open_store()
    await store.create("/p/child/grandchild", b"0")
    parent, other = WatchRecorder(), WatchRecorder()
    await watched(store, "/p", parent)
    await watched(store, "/elsewhere", other)
    await store.set("/p/child/grandchild", b"1")
    await store.set("/p/child", b"1")
    mark = other.mark()
    await store.create("/elsewhere")
    await other.after(mark)  # notifications arrive in order: /p's would have come first
    assert parent.paths == []


@pytest_twisted.ensureDeferred
async def test_cancelled_watch_is_not_called_and_others_are(open_store):
    store = open_store()
    cancelled, kept = WatchRecorder(), WatchRecorder()
    cancel = await watched(store, "/n", cancelled)
    await watched(store, "/n", kept)
    cancel()
    cancel()  # idempotent

    mark = kept.mark()
    await store.create("/n", b"x")
    await kept.after(mark)
    assert cancelled.paths == []


@pytest.fixture
def logged_failures():
    """Failures logged through twisted.logger while the test runs."""
    failures: list = []

    def observe(event: dict) -> None:
        if event.get("log_failure") is not None:
            failures.append(event["log_failure"])

    globalLogPublisher.addObserver(observe)
    yield failures
    globalLogPublisher.removeObserver(observe)


@pytest_twisted.ensureDeferred
async def test_a_failing_watch_callback_is_logged_and_does_not_silence_the_others(
    open_store, logged_failures
):
    store = open_store()

    def broken(path: str) -> None:
        raise RuntimeError("listener bug")

    recorder = WatchRecorder()
    store.watch("/f", broken)
    await watched(store, "/f", recorder)
    mark = recorder.mark()
    await store.create("/f", b"0")
    await recorder.after(mark)
    mark = recorder.mark()
    await store.set("/f", b"1")
    await recorder.after(mark)
    assert len([failure for failure in logged_failures if failure.check(RuntimeError)]) >= 2


# -- durability ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_persistent_data_survives_reopen_and_ephemerals_do_not(store_url):
    store = open_metadata_store(store_url)
    await store.create("/durable/a", b"A")
    await store.set("/durable/a", b"A2")
    await store.create("/durable/seq-", sequential=True)
    await store.create("/durable/eph", ephemeral=True)
    await store.close()

    reopened = open_metadata_store(store_url)
    try:
        assert await reopened.get("/durable/a") == Versioned(b"A2", 1)
        assert await reopened.get("/durable/eph") is None
        children = await reopened.children("/durable")
        assert children[0] == "a" and children[1].startswith("seq-")
        # the sequence continues past the numbers already used
        later = await reopened.create("/durable/seq-", sequential=True)
        assert later > "/durable/" + children[1]
    finally:
        await reopened.close()


# -- bad input ---------------------------------------------------------------------------------------

BAD_PATHS = [
    "",
    "relative",
    "/trailing/",
    "//double",
    "/a//b",
    "/a/./b",
    "/a/../b",
    "/nul\x00",
    "/ctrl\x07",
    "/del\x7f",
    "/private\ue000",
    42,
    None,
    b"/bytes",
]


@pytest.mark.parametrize("bad_path", BAD_PATHS, ids=repr)
@pytest_twisted.ensureDeferred
async def test_invalid_paths_are_refused_by_every_operation(open_store, bad_path):
    store = open_store()
    operations = [
        lambda: store.get(bad_path),
        lambda: store.create(bad_path, b""),
        lambda: store.set(bad_path, b""),
        lambda: store.delete(bad_path),
        lambda: store.children(bad_path),
    ]
    for operation in operations:
        with pytest.raises(InvalidPathError):
            await operation()
    with pytest.raises(InvalidPathError):
        store.watch(bad_path, lambda path: None)
    assert await store.children("/") == []  # nothing was created


@pytest_twisted.ensureDeferred
async def test_sequential_create_may_end_in_a_slash(open_store):
    store = open_store()
    created = await store.create("/slots/", sequential=True)
    assert created.startswith("/slots/") and created.removeprefix("/slots/").isdigit()
    with pytest.raises(InvalidPathError):
        await store.create("/slots/", b"")


@pytest_twisted.ensureDeferred
async def test_bad_values_and_versions_are_refused(open_store):
    store = open_store()
    await store.create("/v", b"ok")
    with pytest.raises(TypeError):
        await store.create("/text", "not bytes")
    with pytest.raises(TypeError):
        await store.set("/v", None)
    with pytest.raises(ValueTooLargeError):
        await store.set("/v", b"x" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(ValueError):
        await store.set("/v", b"x", expected_version=-1)
    with pytest.raises(TypeError):
        await store.delete("/v", expected_version="0")
    with pytest.raises(TypeError):
        store.watch("/v", "not callable")
    assert await store.get("/v") == Versioned(b"ok", 0)
    assert await store.get("/text") is None


@pytest_twisted.ensureDeferred
async def test_closed_store_refuses_requests(open_store):
    store = open_store()
    await store.create("/x")
    await store.close()
    await store.close()  # harmless
    for operation in (
        lambda: store.get("/x"),
        lambda: store.create("/y"),
        lambda: store.set("/x", b""),
        lambda: store.delete("/x"),
        lambda: store.children("/"),
        lambda: store.ready(),
    ):
        with pytest.raises(SessionLostError):
            await operation()
    with pytest.raises(SessionLostError):
        store.watch("/x", lambda path: None)
    assert await open_store().get("/x") == Versioned(b"", 0)


@pytest_twisted.ensureDeferred
async def test_ready_and_session_state(open_store):
    store = open_store()
    await store.ready(timeout=10)
    assert store.session_state is SessionState.CONNECTED
