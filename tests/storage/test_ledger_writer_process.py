"""A ledger writer as a separate process, for the integration tests that kill or freeze it.

    python -m tests.storage.test_ledger_writer_process --metadata zk://... [--count N]

It creates a ledger (E=3 Qw=2 Qa=2 by default) and appends entry_payload(i) for i = 0, 1, ...
with a bounded number of appends in flight. On stdout it reports, one line each:
    ledger <id>            once the ledger exists
    acked <entry id>       the highest entry acknowledged so far (reported every few ms)
    failed <Error> <text>  the first failed append; the process then exits with status 3
    done                   every append was acknowledged
Collected by pytest as a test module, it holds no tests.
"""

from __future__ import annotations

import argparse

from twisted.internet import defer, task
from twisted.python.failure import Failure

ACK_REPORT_INTERVAL = 0.005  # seconds between "acked" lines


def entry_payload(entry_id: int, size: int = 100) -> bytes:
    """The deterministic payload of entry `entry_id`, so any reader can verify its bytes."""
    stamp = b"entry %d|" % entry_id
    return (stamp * (size // len(stamp) + 1))[:size]


class AppendStream:
    """Appends entry_payload(0), entry_payload(1), ... to `writer`, keeping at most `window`
    appends unacknowledged. `acked` is the highest acknowledged entry id; `done` fires once
    all `count` entries are acknowledged or at the first failure (kept in `failure`)."""

    def __init__(self, writer, count: int, *, window: int = 200, payload_size: int = 100):
        self.writer = writer
        self.count = count
        self.window = window
        self.payload_size = payload_size
        self.acked = -1
        self.failure: Failure | None = None
        self.done: defer.Deferred[None] = defer.Deferred()
        self._next_entry = 0

    def start(self) -> AppendStream:
        self._refill()
        return self

    def _refill(self) -> None:
        while (self.failure is None and self._next_entry < self.count
               and self._next_entry - self.acked <= self.window):
            appending = self.writer.append(entry_payload(self._next_entry, self.payload_size))
            appending.addCallbacks(self._on_acked, self._on_failed)
            self._next_entry += 1
        if self.acked == self.count - 1 and not self.done.called:
            self.done.callback(None)

    def _on_acked(self, entry_id: int) -> None:
        self.acked = entry_id
        self._refill()

    def _on_failed(self, failure: Failure) -> None:
        if self.failure is None:
            self.failure = failure
            if not self.done.called:
                self.done.callback(None)


async def write(reactor, arguments: argparse.Namespace) -> int:
    from storage.ledger import LedgerClient, NodePool
    from storage.metadata import open_metadata_store

    store = open_metadata_store(arguments.metadata)
    await store.ready()
    pool = await NodePool.for_cluster(store)
    sizes = [int(size) for size in arguments.sizes.split(",")]
    while len(pool.live_addresses()) < sizes[0]:
        await task.deferLater(reactor, 0.02)
    writer = await LedgerClient(store, pool).create_ledger(*sizes)
    print(f"ledger {writer.ledger_id}", flush=True)

    stream = AppendStream(
        writer, arguments.count, window=arguments.window, payload_size=arguments.payload_size
    )

    def report() -> None:
        if stream.acked >= 0:
            print(f"acked {stream.acked}", flush=True)

    reporter = task.LoopingCall(report)
    reporter.start(ACK_REPORT_INTERVAL)
    await stream.start().done
    reporter.stop()
    report()
    if stream.failure is not None:
        error = stream.failure.value
        print(f"failed {type(error).__name__} {error}", flush=True)
        return 3
    print("done", flush=True)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metadata", required=True)
    parser.add_argument("--count", type=int, default=10**9)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--payload-size", type=int, default=100)
    parser.add_argument("--sizes", default="3,2,2", help="E,Qw,Qa")
    arguments = parser.parse_args()

    async def run(reactor) -> None:
        exit_code = await write(reactor, arguments)
        if exit_code:
            raise SystemExit(exit_code)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))  # exits the process


if __name__ == "__main__":
    main()
