"""EmbeddedStore beyond the shared contract: crashes, locking, damaged files, group commit.

The crash tests run a real child process that uses the store and SIGKILL it.
"""

from __future__ import annotations

import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer

from storage.metadata import (
    EmbeddedStore,
    MetadataError,
    SessionState,
    StoreOpenError,
    Versioned,
    open_metadata_store,
)
from storage.metadata.embedded import DATABASE_FILE

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT = 30.0

# The child process: opens the store, creates an ephemeral and a persistent node, says
# "ready", then either idles ("hold") or sets a counter forever, printing each version
# once its set has returned ("count").
CHILD_SCRIPT = """
import sys
from twisted.internet import defer, reactor
from storage.metadata import open_metadata_store

async def main(directory, mode):
    store = open_metadata_store(directory)
    await store.create("/crash/ephemeral", b"mine", ephemeral=True)
    await store.create("/crash/counter", b"0")
    print("ready", flush=True)
    written = 0
    while mode == "count":
        written += 1
        version = await store.set("/crash/counter", b"%d" % written)
        print("acked", version, flush=True)

defer.ensureDeferred(main(sys.argv[1], sys.argv[2])).addErrback(
    lambda failure: (failure.printTraceback(), reactor.stop()))
reactor.run()
"""


class Child:
    """A child process running CHILD_SCRIPT, read line by line with a deadline."""

    def __init__(self, directory: Path, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD_SCRIPT, str(directory), mode],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.process.stdout, selectors.EVENT_READ)

    def read_line(self) -> str:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while time.monotonic() < deadline:
            if self._selector.select(timeout=deadline - time.monotonic()):
                line = self.process.stdout.readline().decode()
                if not line:
                    raise AssertionError(f"child exited: {self.process.stderr.read().decode()}")
                return line.strip()
        raise AssertionError("child process said nothing in time")

    def kill(self) -> list[str]:
        """SIGKILL the child; returns the lines it had written but we had not read."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        rest = self.process.stdout.read().decode().splitlines()
        self._selector.close()
        self.process.stdout.close()
        self.process.stderr.close()
        return rest


@pytest_twisted.ensureDeferred
async def test_acknowledged_sets_survive_kill_9_and_the_dead_process_ephemerals_are_removed(
    tmp_path,
):
    directory = tmp_path / "metadata"
    child = Child(directory, "count")
    assert child.read_line() == "ready"
    acked = 0
    while acked < 30:
        acked = int(child.read_line().split()[1])
    for line in child.kill():
        if line.startswith("acked "):
            acked = int(line.split()[1])

    store = open_metadata_store(directory)
    try:
        counter = await store.get("/crash/counter")
        assert counter is not None and counter.version >= acked
        assert await store.get("/crash/ephemeral") is None
        assert await store.children("/crash") == ["counter"]
        assert await store.set("/crash/counter", b"next") == counter.version + 1
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_a_second_process_cannot_open_a_directory_in_use(tmp_path):
    directory = tmp_path / "metadata"
    child = Child(directory, "hold")
    assert child.read_line() == "ready"
    with pytest.raises(
        StoreOpenError, match=f"in use by another process \\(pid {child.process.pid}\\)"
    ):
        EmbeddedStore(directory)
    child.kill()

    store = EmbeddedStore(directory)  # the lock died with its process
    try:
        assert await store.get("/crash/ephemeral") is None
        assert await store.get("/crash/counter") == Versioned(b"0", 0)
    finally:
        await store.close()


def test_a_damaged_file_is_refused_and_left_untouched(tmp_path):
    directory = tmp_path / "metadata"
    directory.mkdir()
    damaged = directory / DATABASE_FILE
    damaged.write_bytes(b"this is not an SQLite database" * 100)
    before = damaged.read_bytes()
    with pytest.raises(StoreOpenError, match="not a readable kop metadata store"):
        EmbeddedStore(directory)
    assert damaged.read_bytes() == before
    with pytest.raises(StoreOpenError):  # the failed open released its lock: same error again
        EmbeddedStore(directory)


def test_a_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path):
    directory = tmp_path / "metadata"
    directory.mkdir()
    foreign = directory / DATABASE_FILE
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)")
        connection.execute("INSERT INTO accounts VALUES (1, 100)")
    connection.close()
    before = foreign.read_bytes()
    with pytest.raises(StoreOpenError, match="not a kop metadata store"):
        EmbeddedStore(directory)
    assert foreign.read_bytes() == before


@pytest_twisted.ensureDeferred
async def test_a_store_of_another_format_version_is_refused(tmp_path):
    directory = tmp_path / "metadata"
    store = EmbeddedStore(directory)
    await store.create("/kept", b"data")
    await store.close()
    with sqlite3.connect(directory / DATABASE_FILE) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(StoreOpenError, match="format version 99"):
        EmbeddedStore(directory)
    with sqlite3.connect(directory / DATABASE_FILE) as connection:
        assert connection.execute("SELECT value FROM nodes WHERE path = '/kept'").fetchall() == [
            (b"data",)
        ]
    connection.close()


@pytest_twisted.ensureDeferred
async def test_corruption_inside_the_file_gives_metadata_errors_not_sqlite_ones(tmp_path):
    directory = tmp_path / "metadata"
    store = EmbeddedStore(directory)
    for index in range(200):
        await store.create(f"/bulk/node-{index:04d}", os.urandom(1000))
    await store.close()
    database = directory / DATABASE_FILE
    data = bytearray(database.read_bytes())
    page_size = 4096
    for offset in range(2 * page_size, len(data) - page_size, page_size * 3):
        data[offset : offset + 64] = b"\xa5" * 64  # scribble over b-tree page headers
    database.write_bytes(bytes(data))

    with pytest.raises(MetadataError):
        reopened = EmbeddedStore(directory)
        try:
            for index in range(200):
                await reopened.get(f"/bulk/node-{index:04d}")
            await reopened.children("/bulk")
            await reopened.create("/bulk/new", b"x")
        finally:
            await reopened.close()


@pytest_twisted.ensureDeferred
async def test_concurrent_writes_share_commits_and_complete_in_order(tmp_path):
    store = EmbeddedStore(tmp_path / "metadata")
    try:
        await store.create("/offsets", b"")
        commits_before = store.commit_count
        versions = await defer.gatherResults(
            [store.set("/offsets", b"%d" % index) for index in range(300)]
        )
        assert versions == list(range(1, 301))
        assert await store.get("/offsets") == Versioned(b"299", 300)
        assert store.commit_count - commits_before < 300  # grouped, not one fsync each
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_a_failed_request_in_a_group_does_not_undo_the_others(tmp_path):
    store = EmbeddedStore(tmp_path / "metadata")
    try:
        outcomes = await defer.DeferredList(
            [
                store.create("/g/a", b"1"),
                store.create("/g/a", b"duplicate"),
                store.set("/g/a", b"2", expected_version=0),
                store.set("/g/a", b"stale", expected_version=0),
                store.create("/g/b", b"3"),
            ],
            consumeErrors=True,
        )
        assert [ok for ok, _ in outcomes] == [True, False, True, False, True]
        assert await store.get("/g/a") == Versioned(b"2", 1)
        assert await store.children("/g") == ["a", "b"]
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_reopening_right_after_close_without_waiting_works(tmp_path):
    directory = tmp_path / "nested" / "metadata"  # missing parents are created
    store = EmbeddedStore(directory)
    await store.create("/x", b"1")
    closing = store.close()
    reopened = EmbeddedStore(directory)
    try:
        await closing
        assert await reopened.get("/x") == Versioned(b"1", 0)
        await reopened.set("/x", b"2")
    finally:
        await reopened.close()
    final = EmbeddedStore(directory)
    try:
        assert await final.get("/x") == Versioned(b"2", 1)
    finally:
        await final.close()


@pytest_twisted.ensureDeferred
async def test_session_state_and_the_file_url_form(tmp_path):
    directory = tmp_path / "metadata"
    store = open_metadata_store(f"file://{directory}")
    assert isinstance(store, EmbeddedStore) and store.directory == directory.resolve()
    states: list[SessionState] = []
    store.add_session_listener(states.append)
    await store.ready()
    assert store.session_state is SessionState.CONNECTED
    await store.close()
    assert store.session_state is SessionState.LOST
    assert states == []  # an embedded session never disconnects; closing is not reported


def test_a_directory_that_cannot_be_used_gives_a_store_open_error(tmp_path):
    not_a_directory = tmp_path / "plain-file"
    not_a_directory.write_bytes(b"data")
    with pytest.raises(StoreOpenError, match="cannot open metadata store"):
        EmbeddedStore(not_a_directory)
    assert not_a_directory.read_bytes() == b"data"


@pytest_twisted.ensureDeferred
async def test_a_full_disk_fails_requests_clearly_and_reported_outcomes_match_the_data(tmp_path):
    store = EmbeddedStore(tmp_path / "metadata")
    try:
        await store.create("/before", b"kept")

        def limit_file_size(connection):  # fault injection: SQLite reports "disk is full"
            pages = connection.execute("PRAGMA page_count").fetchall()[0][0]
            connection.execute(f"PRAGMA max_page_count = {pages + 2}")
            return None, []

        await store._submit(limit_file_size)  # runs on the writer connection, in its thread
        outcomes = await defer.DeferredList(
            [store.create("/small", b"s"), store.create("/huge", os.urandom(900_000))],
            consumeErrors=True,
        )
        (small_ok, _), (huge_ok, huge_error) = outcomes
        assert not huge_ok and huge_error.check(MetadataError)
        assert "full" in str(huge_error.value)
        assert (await store.get("/small") is not None) == small_ok
        assert await store.get("/huge") is None
        assert await store.get("/before") == Versioned(b"kept", 0)

        def lift_limit(connection):
            connection.execute("PRAGMA max_page_count = 1073741823")
            return None, []

        await store._submit(lift_limit)
        await store.create("/huge", b"fits now")
        assert await store.get("/huge") == Versioned(b"fits now", 0)
    finally:
        await store.close()
