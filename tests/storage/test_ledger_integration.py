"""The ledger client against real storage-node processes on loopback, with ZooKeeper metadata
(and once in the standalone layout: one in-process node, embedded metadata store).

Nodes are SIGKILLed and restarted, writers are SIGKILLed or frozen (SIGSTOP) and recovered
from another process; every acknowledged entry must read back in order, byte-identical.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from test_ledger_writer_process import AppendStream, entry_payload
from twisted.internet import defer, reactor, task, threads
from twisted.internet.protocol import ProcessProtocol

from storage.ledger import (
    LedgerClient,
    LedgerFencedError,
    LedgerMetadata,
    NodePool,
    ReadHandle,
)
from storage.ledger.ledger_store import ledger_path
from storage.metadata import EmbeddedStore, open_metadata_store
from storage.node import LocalStorageNodeClient, StorageNode
from storage.node.testing import StorageNodeProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
READ_CHUNK = 5000

pytestmark = pytest.mark.timeout(240)


async def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll `condition` while the reactor runs; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await task.deferLater(reactor, 0.01)


@contextlib.asynccontextmanager
async def connected(url: str, node_count: int) -> AsyncIterator[LedgerClient]:
    """A LedgerClient on the store at `url`, once `node_count` nodes registered there."""
    store = open_metadata_store(url)
    await store.ready()
    pool = await NodePool.for_cluster(store)
    try:
        await until(lambda: len(pool.live_addresses()) >= node_count, "nodes to register")
        yield LedgerClient(store, pool)
    finally:
        await pool.close()
        await store.close()


async def read_all(reader: ReadHandle) -> list[bytes]:
    entries: list[bytes] = []
    for first in range(0, reader.last_add_confirmed + 1, READ_CHUNK):
        last = min(first + READ_CHUNK - 1, reader.last_add_confirmed)
        entries.extend(await reader.read(first, last))
    return entries


def expected_entries(count: int) -> list[bytes]:
    return [entry_payload(entry_id) for entry_id in range(count)]


@pytest.fixture
def start_nodes(tmp_path: Path, zookeeper_url: str) -> Iterator[Callable[[int], dict]]:
    """start_nodes(n) → {address: StorageNodeProcess} registered at `zookeeper_url`."""
    started: list[StorageNodeProcess] = []

    def start(count: int) -> dict[str, StorageNodeProcess]:
        nodes = [
            StorageNodeProcess(tmp_path / f"node{len(started) + i}", metadata_url=zookeeper_url)
            for i in range(count)
        ]
        for node in nodes:
            node.start()
            started.append(node)
        return {node.address: node for node in nodes}

    yield start
    for node in started:
        node.kill()


class WriterProcess(ProcessProtocol):
    """tests/storage/test_ledger_writer_process.py running in a child process."""

    def __init__(self) -> None:
        self.ledger_id: int | None = None
        self.acked = -1
        self.failure: str | None = None
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self._partial = b""
        self._stderr = bytearray()

    @classmethod
    def spawn(cls, metadata_url: str) -> WriterProcess:
        protocol = cls()
        command = [sys.executable, "-m", "tests.storage.test_ledger_writer_process",
                   "--metadata", metadata_url]
        reactor.spawnProcess(protocol, sys.executable, command, env=dict(os.environ),
                             path=str(REPO_ROOT))
        return protocol

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            kind, _, rest = line.decode().partition(" ")
            if kind == "ledger":
                self.ledger_id = int(rest)
            elif kind == "acked":
                self.acked = max(self.acked, int(rest))
            elif kind == "failed":
                self.failure = rest

    def errReceived(self, data: bytes) -> None:
        self._stderr += data

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value.exitCode)

    def signal(self, name: str) -> None:
        self.transport.signalProcess(getattr(signal, f"SIG{name}"))

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace")


@pytest.fixture
def spawn_writer(zookeeper_url: str) -> Iterator[Callable[[], WriterProcess]]:
    spawned: list[WriterProcess] = []

    def spawn() -> WriterProcess:
        spawned.append(WriterProcess.spawn(zookeeper_url))
        return spawned[-1]

    yield spawn
    for writer in spawned:
        if not writer.ended.called:
            with contextlib.suppress(Exception):
                writer.signal("KILL")


@pytest_twisted.ensureDeferred
async def test_100k_entries_survive_a_storage_node_sigkill_and_restart(start_nodes, zookeeper_url):
    nodes = start_nodes(3)
    async with connected(zookeeper_url, 3) as client:
        writer = await client.create_ledger(3, 2, 2)
        victim_address = writer.metadata.current_ensemble.nodes[1]
        victim = nodes[victim_address]
        stream = AppendStream(writer, 100_000, window=500).start()

        await until(lambda: stream.acked >= 30_000, "30,000 acknowledged entries")
        victim.kill()
        # The writer notices; with no spare node it waits for the node rather than failing.
        await until(lambda: victim_address in client.pool.suspects(), "the writer to notice")
        acked_while_down = stream.acked
        await threads.deferToThread(victim.start)
        await stream.done
        assert stream.failure is None, stream.failure
        assert acked_while_down < stream.acked == 99_999
        await writer.close()
        assert writer.metadata.ensembles == writer.metadata.ensembles[:1]  # no spare existed

        # Every entry is on two nodes: with another node down, the restarted one must serve
        # its share, including what it missed while it was down.
        other = next(a for a in nodes if a not in (victim_address,))
        nodes[other].kill()
        async with connected(zookeeper_url, 0) as reading_client:
            reader = await reading_client.open_ledger(writer.ledger_id)
            assert reader.last_add_confirmed == 99_999
            entries = await read_all(reader)
        assert entries == expected_entries(100_000)


@pytest_twisted.ensureDeferred
async def test_a_killed_node_is_replaced_and_the_writer_never_stalls(start_nodes, zookeeper_url):
    nodes = start_nodes(4)
    async with connected(zookeeper_url, 4) as client:
        writer = await client.create_ledger(3, 2, 2)
        first_ensemble = writer.metadata.current_ensemble.nodes
        victim = first_ensemble[0]
        stream = AppendStream(writer, 3000).start()
        await until(lambda: stream.acked >= 1000, "1,000 acknowledged entries")
        nodes[victim].kill()
        await stream.done
        assert stream.failure is None, stream.failure
        segments = writer.metadata.ensembles
        assert len(segments) == 2 and segments[0].nodes == first_ensemble
        assert victim not in segments[1].nodes
        assert 1000 <= segments[1].first_entry_id <= 3000
        stored = await client.store.get(ledger_path(writer.ledger_id))
        assert LedgerMetadata.from_json(stored.value).ensembles == segments
        await writer.close()
        reader = await client.open_ledger(writer.ledger_id)
        assert await read_all(reader) == expected_entries(3000)  # victim still down


@pytest_twisted.ensureDeferred
async def test_a_sigkilled_writer_loses_no_acknowledged_entry(
    start_nodes, spawn_writer, zookeeper_url
):
    start_nodes(3)
    writer = spawn_writer()
    await until(lambda: writer.acked >= 3000 or writer.ended.called, "3,000 acks")
    writer.signal("KILL")
    await writer.ended
    assert writer.ledger_id is not None, writer.stderr
    async with connected(zookeeper_url, 3) as client:
        reader = await client.open_ledger(writer.ledger_id)  # recovery
        assert reader.metadata.is_closed
        assert reader.last_add_confirmed >= writer.acked >= 3000
        assert await read_all(reader) == expected_entries(reader.last_add_confirmed + 1)


@pytest_twisted.ensureDeferred
async def test_a_frozen_writer_is_fenced_by_a_recovery_in_another_process(
    start_nodes, spawn_writer, zookeeper_url
):
    start_nodes(3)
    writer = spawn_writer()
    await until(lambda: writer.acked >= 2000 or writer.ended.called, "2,000 acks")
    writer.signal("STOP")  # a writer paused mid-stream (GC pause, partition): still "alive"
    async with connected(zookeeper_url, 3) as client:
        reader = await client.open_ledger(writer.ledger_id)
        writer.signal("CONT")
        exit_code = await writer.ended
        assert exit_code == 3 and writer.failure is not None, writer.stderr
        assert writer.failure.startswith(LedgerFencedError.__name__)
        # Whatever the old writer saw acknowledged, before or after the pause, was kept.
        assert writer.acked <= reader.last_add_confirmed
        assert await read_all(reader) == expected_entries(reader.last_add_confirmed + 1)


@pytest_twisted.ensureDeferred
async def test_standalone_layout_with_an_in_process_node_and_embedded_store(tmp_path):
    store = EmbeddedStore(tmp_path / "metadata")
    node = await StorageNode.open(tmp_path / "node")
    pool = NodePool.for_local_node(LocalStorageNodeClient(node))
    try:
        client = LedgerClient(store, pool)
        writer = await client.create_ledger(1, 1, 1)
        stream = AppendStream(writer, 2000).start()
        await stream.done
        assert stream.failure is None, stream.failure
        new_owner = LedgerClient(store, pool)
        reader = await new_owner.open_ledger(writer.ledger_id)  # fences the first writer
        assert await read_all(reader) == expected_entries(2000)
        with pytest.raises(LedgerFencedError):
            await writer.append(b"after the new owner took over")
        await new_owner.delete_ledger(writer.ledger_id)
        assert await store.get(ledger_path(writer.ledger_id)) is None
    finally:
        await pool.close()
        await node.close()
        await store.close()
