"""Managed ledgers over the real stack: LedgerClient, storage nodes, metadata stores.

Standalone layout (one process: embedded metadata store + one in-process storage node) and
cluster layout (ZooKeeper + three storage-node processes, E=3 Qw=2 Qa=2). Writers that get
SIGKILLed run as subprocesses: this file is also their program
(`python test_managed_ledger_integration.py writer ...`), printing one line per
acknowledged append so the test knows exactly what was acknowledged before the kill.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer

from storage.ledger import LedgerClient, NodePool
from storage.managed_ledger import (
    ManagedLedgerConfig,
    ManagedLedgerFactory,
    ManagedLedgerFencedError,
    Position,
)
from storage.metadata import open_metadata_store
from storage.node import LocalStorageNodeClient, StorageNode

NAME = "public/default/events-partition-0"
# Small ledgers so every run crosses several rollovers.
ROLLING = dict(max_entries_per_ledger=300, cache_bytes=1 << 20)


def payload_for(index: int) -> bytes:
    """Deterministic, index-specific bytes of varying length: the reader can check each."""
    return (f"{index}:".encode() * (1 + index % 37))[: 20 + index % 500]


# ----------------------------------------------------------------------------- layouts


@dataclass
class Standalone:
    """The one-process layout kop standalone uses."""

    store: object
    node: StorageNode
    factory: ManagedLedgerFactory

    @classmethod
    async def open(cls, data_dir: Path) -> Standalone:
        store = open_metadata_store(str(data_dir / "metadata"))
        node = await StorageNode.open(data_dir / "storage")
        pool = NodePool.for_local_node(LocalStorageNodeClient(node))
        return cls(store, node, ManagedLedgerFactory(store, LedgerClient(store, pool)))

    async def close(self) -> None:
        await self.factory.close()
        await self.node.close()
        await self.store.close()


async def open_cluster_factory(metadata_url: str) -> tuple[object, NodePool,
                                                           ManagedLedgerFactory]:
    store = open_metadata_store(metadata_url)
    pool = await NodePool.for_cluster(store)
    return store, pool, ManagedLedgerFactory(store, LedgerClient(store, pool))


# ----------------------------------------------------------------------------- writer process


class WriterProcess:
    """A subprocess appending payload_for(i) with index i, i = 0, 1, ...; reads its acks."""

    def __init__(self, layout: str, target: str, config: dict, in_flight: int = 32) -> None:
        command = [sys.executable, __file__, "writer", layout, target,
                   repr(config), str(in_flight)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.acknowledged: dict[int, Position] = {}
        self.events: list[str] = []
        self._buffer = b""

    def wait_for(self, condition, timeout: float = 60.0) -> None:
        """Read output until condition(self) holds (polling with a deadline)."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                raise AssertionError(
                    f"writer: condition not met (acks={len(self.acknowledged)}, "
                    f"events={self.events}, exit={self.process.poll()}):\n{self.stderr()}"
                )

    def _read(self, timeout: float) -> bool:
        readable, _, _ = select.select([self.process.stdout], [], [], min(timeout, 1.0))
        if not readable:
            return self.process.poll() is None
        chunk = os.read(self.process.stdout.fileno(), 65536)
        if not chunk:
            return False
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._parse(line.decode())
        return True

    def _parse(self, line: str) -> None:
        kind, *fields = line.split()
        if kind == "ACK":
            index, ledger_id, entry_id = map(int, fields)
            self.acknowledged[index] = Position(ledger_id, entry_id)
        else:
            self.events.append(line)

    def kill(self) -> None:
        """SIGKILL, then take every ack the writer printed before dying."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        while self._read(0.1):
            pass

    def finish(self, timeout: float = 30.0) -> int:
        """Read to the end of the output; the exit code."""
        deadline = time.monotonic() + timeout
        while self._read(deadline - time.monotonic()):
            if time.monotonic() > deadline:
                raise AssertionError(f"writer did not finish; events={self.events}")
        return self.process.wait(timeout)

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read().decode(errors="replace")[-3000:]


async def _writer_main(layout: str, target: str, config: dict, in_flight: int) -> None:
    if layout == "standalone":
        standalone = await Standalone.open(Path(target))
        factory, close = standalone.factory, standalone.close
    else:
        store, pool, factory = await open_cluster_factory(target)

        async def close() -> None:
            await factory.close()
            await pool.close()
            await store.close()  # ends kazoo's threads, so the process can exit

    ledger = await factory.open(NAME, ManagedLedgerConfig(**config))
    start = await _next_index(ledger)
    print(f"OPENED {start}", flush=True)
    failures: list[Exception] = []
    window = defer.DeferredSemaphore(in_flight)

    def acknowledged(position: Position, index: int) -> None:
        print(f"ACK {index} {position.ledger_id} {position.entry_id}", flush=True)

    def failed(failure, index: int) -> None:
        failures.append(failure.value)

    index = start
    while not failures:
        await window.acquire()
        appended = ledger.append(payload_for(index), index)
        appended.addCallbacks(acknowledged, failed, callbackArgs=(index,),
                              errbackArgs=(index,))
        appended.addBoth(lambda _: window.release())
        index += 1
    kind = "FENCED" if isinstance(failures[0], ManagedLedgerFencedError) else "FAILED"
    print(f"{kind} {failures[0]!r}", flush=True)
    await close()


async def _next_index(ledger) -> int:
    if ledger.entry_count == 0:
        return 0
    return (await ledger.read(ledger.last_confirmed_position, 1))[0].index + 1


def _run_writer(argv: list[str]) -> None:
    from twisted.internet import reactor

    layout, target, config, in_flight = argv[0], argv[1], eval(argv[2]), int(argv[3])

    def run() -> None:
        done = defer.ensureDeferred(_writer_main(layout, target, config, in_flight))
        done.addErrback(lambda failure: print(f"CRASHED {failure.getTraceback()}", flush=True))
        done.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()


# ----------------------------------------------------------------------------- checks


async def assert_log_holds(ledger, acknowledged: dict[int, Position]) -> list[int]:
    """Every acknowledged entry is in the log at its position with its bytes; the log is
    exactly indexes 0, 1, 2, ... (entries past the last ack may exist: they were durable but
    their ack was lost with the writer). Returns the indexes found."""
    entries = []
    position = Position(0, 0)
    while True:
        batch = await ledger.read(position, 1000)
        if not batch:
            break
        entries.extend(batch)
        last = batch[-1].position
        position = Position(last.ledger_id, last.entry_id + 1)
    indexes = [entry.index for entry in entries]
    assert indexes == list(range(len(entries))), "log is not exactly 0, 1, 2, ..."
    for entry in entries:
        assert entry.data == payload_for(entry.index), f"entry {entry.index} bytes differ"
    for index, position in acknowledged.items():
        assert index < len(entries), f"acknowledged entry {index} lost"
        assert entries[index].position == position
    return indexes


# ----------------------------------------------------------------------------- standalone


@pytest_twisted.ensureDeferred
async def test_standalone_appends_roll_over_and_read_back_after_restart(tmp_path):
    layout = await Standalone.open(tmp_path)
    config = ManagedLedgerConfig(max_entries_per_ledger=100, cache_bytes=0)
    ledger = await layout.factory.open(NAME, config)
    window = [ledger.append(payload_for(i), i) for i in range(1000)]
    positions = await defer.gatherResults(window)
    assert positions == sorted(positions)
    assert len(ledger.ledger_ids) == 10
    cursor = await ledger.open_cursor("readers")
    await cursor.mark_delete(positions[499])
    assert await ledger.find(777) == positions[777]
    await layout.close()

    layout = await Standalone.open(tmp_path)
    ledger = await layout.factory.open(NAME, config)
    await assert_log_holds(ledger, dict(enumerate(positions)))
    assert (await ledger.open_cursor("readers")).mark_delete_position == positions[499]
    assert await ledger.find(555) == positions[555]
    await layout.close()


@pytest_twisted.ensureDeferred
async def test_standalone_retention_deletes_ledgers_on_the_node(tmp_path):
    layout = await Standalone.open(tmp_path)
    config = ManagedLedgerConfig(max_entries_per_ledger=10, retention_bytes=0)
    ledger = await layout.factory.open(NAME, config)
    positions = await defer.gatherResults([ledger.append(b"x" * 100, i) for i in range(35)])
    old_ledgers = {p.ledger_id for p in positions[:30]}
    assert old_ledgers <= set(layout.node.ledger_ids())
    assert await ledger.trim() == 3
    assert not old_ledgers & set(layout.node.ledger_ids())
    assert [e.index for e in await ledger.read(Position(0, 0), 100)] == list(range(30, 35))
    await layout.close()


@pytest_twisted.ensureDeferred
async def test_standalone_second_opener_fences_the_first(tmp_path):
    layout = await Standalone.open(tmp_path)
    first = await layout.factory.open(NAME, ManagedLedgerConfig(**ROLLING))
    acknowledged = await defer.gatherResults([first.append(payload_for(i), i)
                                              for i in range(50)])
    # Another owner (its own ledger client and factory) over the same store and node.
    pool = NodePool.for_local_node(LocalStorageNodeClient(layout.node))
    other = ManagedLedgerFactory(layout.store, LedgerClient(layout.store, pool))
    second = await other.open(NAME, ManagedLedgerConfig(**ROLLING))
    with pytest.raises(ManagedLedgerFencedError):
        await first.append(payload_for(50), 50)
    await assert_log_holds(second, dict(enumerate(acknowledged)))
    assert (await second.append(payload_for(50), 50)) > acknowledged[-1]
    await other.close()
    await layout.close()


@pytest_twisted.ensureDeferred
async def test_standalone_sigkill_during_appends_loses_no_acknowledged_entry(tmp_path):
    writer = WriterProcess("standalone", str(tmp_path), ROLLING)
    writer.wait_for(lambda w: len(w.acknowledged) >= 1500)
    writer.kill()
    acknowledged = writer.acknowledged
    assert len(acknowledged) >= 1500

    layout = await Standalone.open(tmp_path)
    ledger = await layout.factory.open(NAME, ManagedLedgerConfig(**ROLLING))
    indexes = await assert_log_holds(ledger, acknowledged)
    assert len(indexes) >= max(acknowledged) + 1
    assert len({p.ledger_id for p in acknowledged.values()}) >= 5  # crossed rollovers
    await layout.close()


# ----------------------------------------------------------------------------- cluster


@pytest.fixture
def cluster(tmp_path, zookeeper_url):
    """ZooKeeper (fresh chroot) + three storage-node processes registered in it."""
    from storage.node.testing import StorageNodeProcess

    nodes = [StorageNodeProcess(tmp_path / f"node{i}", metadata_url=zookeeper_url)
             for i in range(3)]
    try:
        for node in nodes:
            node.start()
        yield zookeeper_url, nodes
    finally:
        for node in nodes:
            node.kill()


REPLICATED = dict(ROLLING, ensemble_size=3, write_quorum=2, ack_quorum=2)


@pytest_twisted.ensureDeferred
async def test_cluster_writer_killed_then_new_owner_fences_the_next_one(cluster):
    url, _nodes = cluster
    first = WriterProcess("cluster", url, REPLICATED)
    first.wait_for(lambda w: len(w.acknowledged) >= 800)
    first.kill()

    # A second writer takes over (recovering what the first left), appends on ...
    second = WriterProcess("cluster", url, REPLICATED)
    second.wait_for(lambda w: len(w.acknowledged) >= 300)
    # ... until a third owner opens the managed ledger: the second is fenced, alive.
    store, pool, factory = await open_cluster_factory(url)
    ledger = await factory.open(NAME, ManagedLedgerConfig(**REPLICATED))
    assert second.finish() == 0
    assert any(event.startswith("FENCED") for event in second.events), second.events
    acknowledged = {**first.acknowledged, **second.acknowledged}
    await assert_log_holds(ledger, acknowledged)
    await factory.close()
    await pool.close()
    await store.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["writer"]:
        _run_writer(sys.argv[2:])
