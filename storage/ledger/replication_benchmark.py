"""Re-replication benchmark: how fast auto-recovery restores the copies of a lost node.

    python -m storage.ledger.replication_benchmark [--entries N] [--sizes 1024,16384]
                                                   [--copy-window W] [--dir DIR]

Four storage-node processes on loopback (fsync on), ledger metadata in an embedded store in
this process. For each entry size: append N entries to one ledger (E=3 Qw=2 Qa=2) on three
of the nodes and close it, SIGKILL one of them, then time `LedgerRepairer.repair` copying
its share (2/3 of the entries) to the fourth node. The append throughput of the same data,
measured while writing it, is printed beside it: both are bound by the nodes' fsyncs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, task

from storage.ledger.client import LedgerClient
from storage.ledger.ledger_store import LedgerMetadataStore
from storage.ledger.node_pool import NodePool
from storage.ledger.replication import DEFAULT_COPY_WINDOW, LedgerRepairer
from storage.ledger.writer import WriteHandle
from storage.metadata.embedded import EmbeddedStore
from storage.node.testing import StorageNodeProcess

APPEND_WINDOW = 256  # appends in flight while writing the ledger


async def _append(writer: WriteHandle, count: int, payload: bytes) -> None:
    slots = defer.DeferredSemaphore(APPEND_WINDOW)
    await defer.gatherResults([slots.run(writer.append, payload) for _ in range(count)])


async def _measure(work_dir: Path, entries: int, size: int, copy_window: int) -> str:
    nodes = [StorageNodeProcess(work_dir / f"node{i}") for i in range(4)]
    addresses = [node.start() for node in nodes]
    store = EmbeddedStore(work_dir / "metadata")
    writing_pool = NodePool(fixed_addresses=addresses[:3])
    repair_pool = NodePool(fixed_addresses=[addresses[0], addresses[1], addresses[3]])
    try:
        writer = await LedgerClient(store, writing_pool).create_ledger(3, 2, 2)
        started = time.perf_counter()
        await _append(writer, entries, b"x" * size)
        append_seconds = time.perf_counter() - started
        await writer.close()
        nodes[2].kill()
        repairer = LedgerRepairer(LedgerMetadataStore(store), repair_pool,
                                  copy_window=copy_window)
        started = time.perf_counter()
        report = await repairer.repair(writer.ledger_id, {addresses[2]})
        repair_seconds = time.perf_counter() - started
        assert not report.problems, report.problems
        copied = report.entries_copied
        return (f"{size:>6} B  append {entries / append_seconds:8.0f} entries/s "
                f"{entries * size / append_seconds / 1e6:7.1f} MB/s   "
                f"re-replicate {copied} entries in {repair_seconds:6.2f} s: "
                f"{copied / repair_seconds:8.0f} entries/s "
                f"{copied * size / repair_seconds / 1e6:7.1f} MB/s")
    finally:
        await writing_pool.close()
        await repair_pool.close()
        await store.close()
        for node in nodes:
            node.kill()


async def _run(args: argparse.Namespace) -> None:
    for size in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="kop-rerepl-") as work_dir:
            print(await _measure(Path(work_dir), args.entries, size, args.copy_window),
                  flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m storage.ledger.replication_benchmark",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--sizes", type=lambda text: [int(s) for s in text.split(",")],
                        default=[1024, 16384], help="entry sizes in bytes, comma-separated")
    parser.add_argument("--copy-window", type=int, default=DEFAULT_COPY_WINDOW)
    parser.add_argument("--dir", default=None, help="where the nodes keep their data")
    args = parser.parse_args(argv)
    task.react(lambda _reactor: defer.ensureDeferred(_run(args)))


if __name__ == "__main__":
    main()
