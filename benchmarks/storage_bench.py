"""Append throughput of the storage tier, beside this machine's own limit, in one run.

    python -m benchmarks.storage_bench [--seconds 3] [--sizes 1024,16384] [--dir DIR]
                                       [--only NAME[,NAME]] [--json FILE]

The machine limit is what a plain loop gets from the same disk: write one record,
fsync it, repeat (with fsync and with fdatasync, twice each; the best run is the
limit). Each scenario then appends records of the same size for `--seconds` with a
bounded number in flight, and is reported as entries/s, MB/s and the ratio to that
limit. Goal (issue 3): at least 0.5x the limit for 16 KiB entries.

Scenarios: one storage node (in process; over TCP to a node process) and one
managed ledger (standalone: one in-process node, Qa=1; cluster: three node
processes, E=3 Qw=2 Qa=2). Adding one: write an `async def run(bench, size)`
returning `Throughput` (use `closed_loop`) and append `Scenario(name, run)` to
SCENARIOS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from twisted.internet import defer, task

MB = 1_000_000


@dataclass(frozen=True)
class Throughput:
    entries: int
    seconds: float

    def entries_per_second(self) -> float:
        return self.entries / self.seconds

    def megabytes_per_second(self, size: int) -> float:
        return self.entries * size / self.seconds / MB


@dataclass
class Bench:
    """What every scenario gets: where to put files, how long to run, the reactor."""
    workdir: Path
    seconds: float
    reactor: object

    def fresh_dir(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        return path


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Bench, int], Awaitable[Throughput]]


async def closed_loop(append: Callable[[int], defer.Deferred], seconds: float,
                      in_flight: int) -> Throughput:
    """Call `append(i)` for i = 0, 1, ... keeping `in_flight` calls outstanding, for
    `seconds`; count the completions. Any failure aborts the benchmark."""
    done: defer.Deferred[None] = defer.Deferred()
    state = {"next": 0, "completed": 0, "outstanding": 0}
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    def launch() -> None:
        index = state["next"]
        state["next"] += 1
        state["outstanding"] += 1
        append(index).addCallbacks(completed, failed)

    def completed(_: object) -> None:
        state["outstanding"] -= 1
        state["completed"] += 1
        if time.perf_counter() < deadline:
            launch()
        elif state["outstanding"] == 0 and not done.called:
            done.callback(None)

    def failed(failure) -> None:
        if not done.called:
            done.errback(failure)

    for _ in range(in_flight):
        launch()
    await done
    return Throughput(state["completed"], time.perf_counter() - started)


# --- the machine's own limit ----------------------------------------------------------------------

def machine_limit(directory: Path, size: int, seconds: float,
                  sync: Callable[[int], None]) -> Throughput:
    """Sequential write + sync of `size`-byte records from a plain loop."""
    path = directory / f"limit-{size}-{sync.__name__}"
    record = os.urandom(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        count = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            os.write(fd, record)
            sync(fd)
            count += 1
        return Throughput(count, time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()


def measure_limits(directory: Path, size: int, seconds: float) -> list[tuple[str, Throughput]]:
    return [(f"machine limit: write + {sync.__name__} loop",
             machine_limit(directory, size, seconds, sync)) for sync in (os.fsync, os.fdatasync)]


# --- storage-node scenarios -----------------------------------------------------------------------

IN_FLIGHT = 64  # appends outstanding at once: what a busy broker pipelines to one node


async def node_in_process(bench: Bench, size: int) -> Throughput:
    """One StorageNode in this process, through LocalStorageNodeClient."""
    from storage.node import LocalStorageNodeClient, StorageNode, StorageNodeConfig

    node = await StorageNode.open(bench.fresh_dir("node"),
                                  StorageNodeConfig(gc_interval_seconds=None), bench.reactor)
    client = LocalStorageNodeClient(node)
    payload = os.urandom(size)
    try:
        return await closed_loop(lambda i: client.add_entry(1, i, i - 1, payload),
                                 bench.seconds, IN_FLIGHT)
    finally:
        await node.close()


async def node_over_tcp(bench: Bench, size: int) -> Throughput:
    """One storage node process on loopback, through RemoteStorageNodeClient."""
    from storage.node import RemoteStorageNodeClient
    from storage.node.testing import StorageNodeProcess

    process = StorageNodeProcess(bench.fresh_dir("node-process"), extra_args=("--gc-interval",
                                                                              "0"))
    client = RemoteStorageNodeClient(process.start())
    payload = os.urandom(size)
    try:
        return await closed_loop(lambda i: client.add_entry(1, i, i - 1, payload),
                                 bench.seconds, IN_FLIGHT)
    finally:
        await client.close()
        process.stop()


def managed_ledger(layout: str) -> Callable[[Bench, int], Awaitable[Throughput]]:
    """One managed ledger in a layout of benchmarks.storage_layouts ("one-node" standalone,
    "three-nodes" E=3 Qw=2 Qa=2)."""

    async def run(bench: Bench, size: int) -> Throughput:
        from benchmarks.storage_layouts import LAYOUTS

        _, open_layout = LAYOUTS[layout]
        factory, config, close = await open_layout(bench.fresh_dir(layout))
        payload = os.urandom(size)
        try:
            ledger = await factory.open(f"bench/{layout}-{size}", config)
            return await closed_loop(lambda i: ledger.append(payload, i), bench.seconds,
                                     IN_FLIGHT)
        finally:
            await close()

    return run


SCENARIOS: list[Scenario] = [
    Scenario("storage node, in process", node_in_process),
    Scenario("storage node, TCP loopback", node_over_tcp),
    Scenario("managed ledger, 1 node in process, Qa=1", managed_ledger("one-node")),
    Scenario("managed ledger, 3 node processes, Qw=2 Qa=2", managed_ledger("three-nodes")),
]


# --- running and reporting ------------------------------------------------------------------------

async def run(reactor, args: argparse.Namespace) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="kop-storage-bench-", dir=args.dir))
    bench = Bench(workdir, args.seconds, reactor)
    rows: list[dict] = []
    try:
        for size in args.sizes:
            # The limit is measured before and after the scenarios and the best run counts:
            # on a shared disk this keeps a momentary slump from flattering the ratios.
            limits = measure_limits(workdir, size, args.seconds)
            results = [(scenario.name, await scenario.run(bench, size))
                       for scenario in SCENARIOS
                       if not args.only or any(word in scenario.name for word in args.only)]
            limits += measure_limits(workdir, size, args.seconds)
            limit = max((result for _, result in limits), key=Throughput.entries_per_second)
            for name, result in limits + results:
                rows.append(_row(name, size, result, limit))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def _row(name: str, size: int, result: Throughput, limit: Throughput) -> dict:
    row = {"scenario": name, "entry_bytes": size, **asdict(result),
           "entries_per_second": round(result.entries_per_second(), 1),
           "megabytes_per_second": round(result.megabytes_per_second(size), 2),
           "ratio_to_limit": round(result.entries_per_second() / limit.entries_per_second(), 2)}
    print(f"{name:<48} {size:>6} B {row['entries_per_second']:>10.0f} entries/s "
          f"{row['megabytes_per_second']:>8.2f} MB/s {row['ratio_to_limit']:>6.2f}x limit",
          flush=True)
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--sizes", default="1024,16384",
                        help="comma-separated entry sizes in bytes")
    parser.add_argument("--dir", default=None,
                        help="where to write (default: the system temp dir); the disk measured")
    parser.add_argument("--only", default="", help="run only scenarios whose name contains one "
                                                    "of these comma-separated words")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.sizes.split(",")]
    args.only = [word for word in args.only.split(",") if word]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    async def body(reactor) -> None:
        rows = await run(reactor, args)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")

    task.react(lambda reactor: defer.ensureDeferred(body(reactor)))


if __name__ == "__main__":
    main(sys.argv[1:])
