"""Auto-recovery with real storage-node processes on loopback and a real ZooKeeper.

E=3 Qw=2 Qa=2. Nodes are SIGKILLed (and once wiped), writers carry on through ensemble
changes, and afterwards every entry of every ledger must be on every node of its write set,
byte-identical — checked by asking each node directly. Also: auditor failover between two
auto-recovery processes, idempotence, and garbage collection of a ledger deleted while one
of its nodes was down.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, threads

from storage.ledger import LedgerClient, LedgerMetadata, NodePool
from storage.ledger.auditor import AUDITOR_PATH, INCARNATIONS_PATH
from storage.ledger.auto_recovery import READY_LINE_PREFIX, AutoRecovery, AutoRecoverySettings
from storage.ledger.entry_format import frame_entry
from storage.ledger.ledger_store import ledger_path
from storage.ledger.reader import replica_addresses
from storage.ledger.under_replication import MARKERS_PATH, UnderReplication
from storage.ledger.writer import WriteHandle
from storage.metadata import MetadataStore, open_metadata_store
from storage.node import NoSuchLedgerError, decode_entry_bitmap
from storage.node.testing import StorageNodeProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SESSION_TIMEOUT = 2.0  # seconds: how long a SIGKILLed process stays registered
FAST = AutoRecoverySettings(grace_period=0.5, audit_interval=1.0, retry_interval=0.2)

pytestmark = pytest.mark.timeout(120)


async def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll `condition` (sync, or returning a Deferred/coroutine) while the reactor runs."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if hasattr(result, "__await__"):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await task.deferLater(reactor, 0.05)


def entry_payload(ledger_id: int, entry_id: int) -> bytes:
    return (b"ledger %d entry %d|" % (ledger_id, entry_id)) * 20


class Cluster:
    """Storage-node processes registered in one ZooKeeper chroot, and a client of them."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tmp_path = tmp_path
        self.url = url
        self.node_url = f"{url}?session_timeout={SESSION_TIMEOUT:g}"
        self.nodes: dict[str, StorageNodeProcess] = {}
        self.store: MetadataStore | None = None
        self.pool: NodePool | None = None

    def start_nodes(self, count: int, *extra_args: str) -> None:
        for _ in range(count):
            node = StorageNodeProcess(self.tmp_path / f"node{len(self.nodes)}",
                                      metadata_url=self.node_url, extra_args=extra_args)
            self.nodes[node.start()] = node

    async def connect(self) -> LedgerClient:
        self.store = open_metadata_store(self.url)
        await self.store.ready()
        self.pool = await NodePool.for_cluster(self.store)
        await until(lambda: len(self.pool.live_addresses()) == len(self.nodes),
                    "every node to register")
        return LedgerClient(self.store, self.pool)

    def live(self) -> frozenset[str]:
        assert self.pool is not None
        return self.pool.live_addresses()

    async def metadata(self, ledger_id: int) -> tuple[LedgerMetadata, int]:
        found = await self.store.get(ledger_path(ledger_id))
        return LedgerMetadata.from_json(found.value), found.version

    async def markers(self) -> list[str]:
        return await self.store.children(MARKERS_PATH)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.store is not None:
            await self.store.close()
        for node in self.nodes.values():
            node.kill()


@pytest.fixture
def cluster_factory(tmp_path: Path, zookeeper_url: str) -> Iterator[Callable[[], Cluster]]:
    made: list[Cluster] = []

    def make() -> Cluster:
        made.append(Cluster(tmp_path, zookeeper_url))
        return made[-1]

    yield make
    for cluster in made:
        pytest_twisted.blockon(defer.ensureDeferred(cluster.close()))


@contextlib.asynccontextmanager
async def running(recovery: AutoRecovery) -> AsyncIterator[AutoRecovery]:
    await recovery.start()
    try:
        yield recovery
    finally:
        await recovery.stop()


async def append_all(writer: WriteHandle, first: int, last: int) -> None:
    appended = [writer.append(entry_payload(writer.ledger_id, e)) for e in range(first, last + 1)]
    assert await defer.gatherResults(appended) == list(range(first, last + 1))


async def assert_fully_replicated(cluster: Cluster, ledger_id: int) -> LedgerMetadata:
    """Ask every node of every entry's write set for it directly: it must be there, live,
    and byte for byte what the writer framed."""
    metadata, _ = await cluster.metadata(ledger_id)
    assert metadata.is_closed
    running_length = 0
    for entry_id in range(metadata.last_entry_id + 1):
        payload = entry_payload(ledger_id, entry_id)
        running_length += len(payload)
        expected = frame_entry(ledger_id, entry_id, running_length, payload)
        addresses = replica_addresses(metadata, entry_id)
        assert len(set(addresses)) == metadata.write_quorum
        for address in addresses:
            assert address in cluster.live(), f"entry {entry_id} is named on {address}, gone"
            stored = await cluster.pool.client(address).read_entry(ledger_id, entry_id)
            assert stored == expected, f"ledger {ledger_id} entry {entry_id} on {address}"
    return metadata


async def held_bitmaps(cluster: Cluster, ledger_id: int) -> dict[str, list[int]]:
    held = {}
    for address in sorted(cluster.live()):
        try:
            bitmap = await cluster.pool.client(address).list_entries(ledger_id, 0, 10_000)
        except NoSuchLedgerError:
            continue
        held[address] = decode_entry_bitmap(bitmap, 0)
    return held


@pytest_twisted.ensureDeferred
async def test_after_a_node_is_killed_every_entry_regains_its_write_quorum(cluster_factory):
    cluster = cluster_factory()
    cluster.start_nodes(4)
    client = await cluster.connect()
    closed_before = [await client.create_ledger(3, 2, 2) for _ in range(3)]
    open_during = [await client.create_ledger(3, 2, 2) for _ in range(3)]
    for writer in closed_before + open_during:
        await append_all(writer, 0, 149)
    for writer in closed_before:
        await writer.close()
    # A victim that the open ledgers' writers must replace, and that closed ledgers name.
    counts = {a: sum(a in w.metadata.current_ensemble.nodes for w in open_during)
              for a in cluster.nodes}
    victim = max(counts, key=counts.get)
    cluster.nodes[victim].kill()
    for writer in open_during:
        await append_all(writer, 150, 249)  # ensemble changes where the victim was named
        await writer.close()
    changed = [w for w in open_during if len(w.metadata.ensembles) > 1]
    assert len(changed) == counts[victim] > 0
    ledger_ids = [w.ledger_id for w in closed_before + open_during]
    named = [i for i in ledger_ids if victim in (await cluster.metadata(i))[0].all_nodes()]
    assert named, "the victim should hold copies of some ledger"

    async with running(AutoRecovery(cluster.store, cluster.pool, settings=FAST)):
        async def repaired() -> bool:
            names = [victim in (await cluster.metadata(i))[0].all_nodes() for i in ledger_ids]
            return not any(names) and not await cluster.markers()

        await until(repaired, "auto-recovery to replace the killed node everywhere")
    for ledger_id in ledger_ids:
        await assert_fully_replicated(cluster, ledger_id)

    # Running recovery again changes nothing: no metadata write, no entry copied.
    before = {i: await cluster.metadata(i) for i in ledger_ids}
    held = {i: await held_bitmaps(cluster, i) for i in ledger_ids}
    marks = UnderReplication(cluster.store)
    for ledger_id in ledger_ids:
        await marks.mark(ledger_id, {victim}, "checking idempotence")
    async with running(AutoRecovery(cluster.store, cluster.pool, settings=FAST)) as second:
        await until(lambda: defer.ensureDeferred(cluster.markers()).addCallback(
            lambda names: not names), "the second run to clear the markers")
        assert second.worker is not None
        assert {r.ledger_id for r in second.worker.reports} == set(ledger_ids)
        assert all(r.entries_copied == 0 and not r.replacements for r in second.worker.reports)
    assert {i: await cluster.metadata(i) for i in ledger_ids} == before
    assert {i: await held_bitmaps(cluster, i) for i in ledger_ids} == held


class AutoRecoveryProcess:
    """`python -m storage.ledger.auto_recovery` as a child process."""

    def __init__(self, url: str, log_path: Path) -> None:
        command = [sys.executable, "-m", "storage.ledger.auto_recovery", "--metadata", url,
                   "--grace-period", "0.5", "--audit-interval", "1", "--retry-interval", "0.2"]
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log,
                                            stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
        self.identity = self._ready_line(timeout=30)

    def _ready_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            readable, _, _ = select.select([self.process.stdout], [], [],
                                           max(0.0, deadline - time.monotonic()))
            chunk = os.read(self.process.stdout.fileno(), 1024) if readable else b""
            if not chunk:
                self.kill()
                raise AssertionError("auto-recovery did not start:\n"
                                     + self.log_path.read_text(errors="replace"))
            line += chunk
        text = line.decode().strip()
        assert text.startswith(READY_LINE_PREFIX), text
        return text[len(READY_LINE_PREFIX):]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process.stdout.close()


@pytest_twisted.ensureDeferred
async def test_when_the_auditor_process_dies_another_takes_over_and_repairs(
    cluster_factory, tmp_path
):
    cluster = cluster_factory()
    cluster.start_nodes(4)
    client = await cluster.connect()
    url = f"{cluster.url}?session_timeout={SESSION_TIMEOUT:g}"
    processes = [AutoRecoveryProcess(url, tmp_path / f"recovery{i}.log") for i in range(2)]
    try:
        async def auditor_identity() -> str | None:
            found = await cluster.store.get(AUDITOR_PATH)
            return None if found is None else found.value.decode()

        await until(auditor_identity, "an auditor to be elected")
        auditor = await auditor_identity()
        (dying,) = [p for p in processes if p.identity == auditor]
        (survivor,) = [p for p in processes if p is not dying]
        dying.kill()
        await until(lambda: defer.ensureDeferred(auditor_identity()).addCallback(
            lambda identity: identity == survivor.identity), "the survivor to become auditor")

        writers = [await client.create_ledger(3, 2, 2) for _ in range(3)]
        for writer in writers:
            await append_all(writer, 0, 99)
            await writer.close()
        victim = writers[0].metadata.ensembles[0].nodes[0]
        cluster.nodes[victim].kill()

        async def repaired() -> bool:
            named = [victim in (await cluster.metadata(w.ledger_id))[0].all_nodes()
                     for w in writers]
            return not any(named) and not await cluster.markers()

        await until(repaired, "the surviving process to re-replicate")
        for writer in writers:
            await assert_fully_replicated(cluster, writer.ledger_id)
    finally:
        for process in processes:
            process.kill()


@pytest_twisted.ensureDeferred
async def test_a_node_back_with_a_wiped_disk_gets_its_copies_back(cluster_factory):
    cluster = cluster_factory()
    cluster.start_nodes(3)  # no spare node: the wiped node itself must be refilled
    client = await cluster.connect()
    writers = [await client.create_ledger(3, 2, 2) for _ in range(2)]
    for writer in writers:
        await append_all(writer, 0, 99)
        await writer.close()
    settings = AutoRecoverySettings(grace_period=60.0, audit_interval=1.0, retry_interval=0.2)
    async with running(AutoRecovery(cluster.store, cluster.pool, settings=settings)):
        victim = writers[0].metadata.ensembles[0].nodes[1]

        async def incarnation_known() -> bool:
            found = await cluster.store.get(INCARNATIONS_PATH)
            return found is not None and victim.encode() in found.value

        await until(incarnation_known, "the auditor to record the node's incarnation")
        before = {w.ledger_id: await cluster.metadata(w.ledger_id) for w in writers}
        node = cluster.nodes[victim]
        node.kill()
        shutil.rmtree(node.data_dir)
        await threads.deferToThread(node.start)  # same address, empty disk

        async def refilled() -> bool:
            for writer in writers:
                metadata, _ = await cluster.metadata(writer.ledger_id)
                expected = [e for e in range(metadata.last_entry_id + 1)
                            if victim in replica_addresses(metadata, e)]
                held = await held_bitmaps(cluster, writer.ledger_id)
                if held.get(victim) != expected:
                    return False
            return True

        await until(refilled, "the wiped node to get its entries back")
    for writer in writers:
        await assert_fully_replicated(cluster, writer.ledger_id)
    assert {w.ledger_id: await cluster.metadata(w.ledger_id) for w in writers} == before


@pytest_twisted.ensureDeferred
async def test_a_ledger_deleted_while_a_node_was_down_is_collected_when_it_returns(
    cluster_factory
):
    cluster = cluster_factory()
    cluster.start_nodes(3, "--ledger-gc-interval", "0.2")
    client = await cluster.connect()
    doomed, kept = await client.create_ledger(3, 2, 2), await client.create_ledger(3, 2, 2)
    for writer in (doomed, kept):
        await append_all(writer, 0, 29)
        await writer.close()
    absent = doomed.metadata.ensembles[0].nodes[0]
    assert (await held_bitmaps(cluster, doomed.ledger_id))[absent]
    node = cluster.nodes[absent]
    node.kill()
    await client.delete_ledger(doomed.ledger_id)  # cannot reach the killed node
    await threads.deferToThread(node.start)

    async def collected() -> bool:
        try:
            await cluster.pool.client(absent).list_entries(doomed.ledger_id, 0, 30)
        except NoSuchLedgerError:
            return True
        return False

    await until(collected, "the returning node to drop the deleted ledger")

    async def reported() -> bool:
        # The collector logs after the deletion took effect: wait for the line, not a moment.
        return "deleted 1 ledgers" in node.log_text()

    await until(reported, "the collector to report the deletion")
    await assert_fully_replicated(cluster, kept.ledger_id)  # the live ledger is untouched
