"""Append throughput of one managed ledger beside the machine's own write+fsync limit.

    python -m benchmarks.managed_ledger_bench [--seconds 5] [--sizes 1024,16384]
                                              [--layouts one-node,three-nodes] [--json]

For each entry size it measures, in the same run and on the same disk:
  - machine limit: a plain loop writing one entry and fsyncing it, sequentially, to a file;
  - one-node:     a managed ledger in the standalone layout (embedded metadata store, one
                  in-process storage node), E=Qw=Qa=1;
  - three-nodes:  three storage-node processes on loopback, E=3 Qw=2 Qa=2;
with appends pipelined (--in-flight appends outstanding, as a producer's batches would be)
and fsync on everywhere. It reports entries/s, MB/s of entry data, and each layout's ratio
to the machine limit. Not a test: numbers vary with the machine; ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from twisted.internet import defer, task

from storage.ledger import LedgerClient, NodePool
from storage.managed_ledger import ManagedLedger, ManagedLedgerConfig, ManagedLedgerFactory
from storage.metadata import open_metadata_store
from storage.node import LocalStorageNodeClient, RemoteStorageNodeClient, StorageNode

MB = 1_000_000


@dataclass
class Measurement:
    layout: str
    entry_bytes: int
    entries: int
    seconds: float

    @property
    def entries_per_second(self) -> float:
        return self.entries / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.entries * self.entry_bytes / self.seconds / MB

    def as_dict(self) -> dict:
        return {**asdict(self), "entries_per_second": round(self.entries_per_second, 1),
                "mb_per_second": round(self.mb_per_second, 2)}


# ----------------------------------------------------------------------------- machine limit


def measure_write_fsync_loop(directory: Path, entry_bytes: int, seconds: float) -> Measurement:
    """Sequential write of entry_bytes then fsync, repeated: what the disk gives one writer
    that makes every entry durable before the next."""
    path = directory / f"fsync-loop-{entry_bytes}.bin"
    block = os.urandom(entry_bytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        entries = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            os.write(fd, block)
            os.fsync(fd)
            entries += 1
            if entries % 16 == 0 and time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    return Measurement("machine write+fsync loop", entry_bytes, entries, elapsed)


# ----------------------------------------------------------------------------- managed ledger


async def measure_appends(ledger: ManagedLedger, layout: str, entry_bytes: int,
                          seconds: float, in_flight: int) -> Measurement:
    """Append entry_bytes-sized entries for `seconds`, `in_flight` outstanding at a time."""
    data = os.urandom(entry_bytes)
    window = defer.DeferredSemaphore(in_flight)
    outstanding: list[defer.Deferred] = []
    index = ledger.entry_count
    acknowledged = 0

    def done(_: object) -> None:
        nonlocal acknowledged
        acknowledged += 1
        window.release()

    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        await window.acquire()
        appended = ledger.append(data, index)
        appended.addCallback(done)
        outstanding.append(appended)
        index += 1
        if len(outstanding) > 4 * in_flight:
            outstanding = [d for d in outstanding if not d.called]
    await defer.gatherResults(outstanding)
    elapsed = time.perf_counter() - start
    return Measurement(layout, entry_bytes, acknowledged, elapsed)


Layout = Callable[[Path], Awaitable[tuple[ManagedLedgerFactory, ManagedLedgerConfig,
                                          Callable[[], Awaitable[None]]]]]


async def one_node_layout(directory: Path):
    """Standalone: embedded metadata store and one in-process storage node."""
    store = open_metadata_store(str(directory / "metadata"))
    node = await StorageNode.open(directory / "node")
    pool = NodePool.for_local_node(LocalStorageNodeClient(node))
    factory = ManagedLedgerFactory(store, LedgerClient(store, pool))

    async def close() -> None:
        await factory.close()
        await node.close()
        await store.close()

    return factory, ManagedLedgerConfig(), close


async def three_nodes_layout(directory: Path):
    """Three storage-node processes on loopback; the ledgers' metadata in an embedded store
    of this process (the nodes need no metadata store to serve)."""
    from storage.node.testing import StorageNodeProcess

    processes = [StorageNodeProcess(directory / f"node{i}") for i in range(3)]
    addresses = [process.start() for process in processes]
    store = open_metadata_store(str(directory / "metadata"))
    pool = NodePool(RemoteStorageNodeClient, fixed_addresses=addresses)
    factory = ManagedLedgerFactory(store, LedgerClient(store, pool))

    async def close() -> None:
        await factory.close()
        await pool.close()
        await store.close()
        for process in processes:
            process.stop()

    config = ManagedLedgerConfig(ensemble_size=3, write_quorum=2, ack_quorum=2)
    return factory, config, close


LAYOUTS: dict[str, tuple[str, Layout]] = {
    "one-node": ("managed ledger, 1 node, Qa=1", one_node_layout),
    "three-nodes": ("managed ledger, 3 nodes, Qw=2 Qa=2", three_nodes_layout),
}


async def run(args: argparse.Namespace) -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix="ml-bench-", dir=args.data_dir))
    results: list[dict] = []
    try:
        for size in args.sizes:
            limit = measure_write_fsync_loop(root, size, args.seconds)
            results.append({**limit.as_dict(), "ratio_to_limit": 1.0})
            report(limit, limit, args.json)
            for key in args.layouts:
                label, open_layout = LAYOUTS[key]
                directory = root / f"{key}-{size}"
                directory.mkdir()
                factory, config, close = await open_layout(directory)
                try:
                    ledger = await factory.open(f"bench/{key}-{size}", config)
                    # A short warm-up (connections, first ledger, JIT-free but cache-cold).
                    await measure_appends(ledger, label, size, min(0.5, args.seconds / 5),
                                          args.in_flight)
                    result = await measure_appends(ledger, label, size, args.seconds,
                                                   args.in_flight)
                finally:
                    await close()
                    shutil.rmtree(directory, ignore_errors=True)
                ratio = result.mb_per_second / limit.mb_per_second
                results.append({**result.as_dict(), "ratio_to_limit": round(ratio, 2)})
                report(result, limit, args.json)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return results


def report(result: Measurement, limit: Measurement, quiet: bool) -> None:
    if quiet:
        return
    ratio = result.mb_per_second / limit.mb_per_second
    print(f"{result.entry_bytes:>6} B  {result.layout:<38} {result.entries_per_second:>9.0f} "
          f"entries/s {result.mb_per_second:>8.2f} MB/s  {ratio:>5.2f}x limit", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--sizes", default="1024,16384",
                        type=lambda text: [int(size) for size in text.split(",")],
                        help="entry sizes in bytes, comma-separated")
    parser.add_argument("--layouts", default="one-node,three-nodes",
                        type=lambda text: text.split(","),
                        help=f"comma-separated, from {', '.join(LAYOUTS)}")
    parser.add_argument("--in-flight", type=int, default=64,
                        help="appends outstanding at once")
    parser.add_argument("--data-dir", default=None,
                        help="where to write (default: the system temp dir); use the disk "
                             "you mean to measure")
    parser.add_argument("--json", action="store_true", help="print results as JSON only")
    args = parser.parse_args(argv)
    unknown = set(args.layouts) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layouts {sorted(unknown)}; choose from {sorted(LAYOUTS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    task.react(lambda _reactor: defer.ensureDeferred(run(args)))


if __name__ == "__main__":
    main()
