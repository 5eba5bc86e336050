"""Metadata-store benchmark: latency of one set, throughput of concurrent sets, get latency.

    python -m storage.metadata.benchmark [--dir DIR] [--zookeeper zk://host:port/chroot]

The embedded store is measured in a temporary directory on the same file system as
``--dir`` (default: the system temp dir), beside that file system's own limit: a plain
loop doing a small write plus fdatasync, which is what one durable commit costs at best.
With ``--zookeeper`` the same numbers are taken from a ZooKeeper store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer, task

from storage.metadata.api import MetadataStore
from storage.metadata.urls import open_metadata_store

VALUE = b"x" * 200  # about the size of a ledger's or a cursor's metadata


def _percentiles(samples_seconds: Sequence[float]) -> str:
    ordered = sorted(samples_seconds)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e6

    return (
        f"p50 {at(0.50):8.0f} µs   p99 {at(0.99):8.0f} µs   "
        f"mean {statistics.fmean(ordered) * 1e6:8.0f} µs"
    )


def fsync_limit(directory: str, count: int) -> list[float]:
    """Seconds per small append + fdatasync in a plain loop: the file system's floor."""
    samples = []
    fd, path = tempfile.mkstemp(dir=directory, prefix="fsync-probe-")
    try:
        for index in range(count):
            started = time.perf_counter()
            os.pwrite(fd, VALUE, index * len(VALUE))  # appending, as a log does
            os.fdatasync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.unlink(path)
    return samples


async def measure(store: MetadataStore, label: str, count: int, concurrency: int) -> None:
    await store.ready()
    await store.create("/bench/node", VALUE)
    await store.set("/bench/node", VALUE)  # warm up

    set_samples = []
    for _ in range(count):
        started = time.perf_counter()
        await store.set("/bench/node", VALUE)
        set_samples.append(time.perf_counter() - started)
    print(f"{label:10} set, one at a time   {_percentiles(set_samples)}")

    get_samples = []
    for _ in range(count):
        started = time.perf_counter()
        await store.get("/bench/node")
        get_samples.append(time.perf_counter() - started)
    print(f"{label:10} get, one at a time   {_percentiles(get_samples)}")

    for index in range(concurrency):
        await store.create(f"/bench/parallel-{index}", VALUE)
    total = count * 4
    started = time.perf_counter()
    pending: list[defer.Deferred[Any]] = []
    for operation in range(total):
        pending.append(store.set(f"/bench/parallel-{operation % concurrency}", VALUE))
        if len(pending) >= concurrency:
            await pending.pop(0)
    await defer.gatherResults(pending)
    elapsed = time.perf_counter() - started
    print(f"{label:10} set, {concurrency} in flight     {total / elapsed:8.0f} sets/s")
    await store.delete("/bench", recursive=True)


async def main(reactor: Any, arguments: argparse.Namespace) -> None:
    samples = fsync_limit(arguments.dir, arguments.count)
    print(f"{'fs floor':10} write+fdatasync      {_percentiles(samples)}")
    with tempfile.TemporaryDirectory(dir=arguments.dir, prefix="kop-metadata-bench-") as scratch:
        store = open_metadata_store(scratch)
        try:
            await measure(store, "embedded", arguments.count, arguments.concurrency)
        finally:
            await store.close()
    if arguments.zookeeper:
        store = open_metadata_store(arguments.zookeeper)
        try:
            await measure(store, "zookeeper", arguments.count, arguments.concurrency)
        finally:
            await store.close()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="file system to measure")
    parser.add_argument("--zookeeper", help="also measure this zk:// store")
    parser.add_argument("--count", type=int, default=500, help="operations per measurement")
    parser.add_argument("--concurrency", type=int, default=64, help="sets in flight")
    arguments = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))


if __name__ == "__main__":
    run()
