"""Running a storage node as a process: open its data directory, serve TCP,
register in the metadata store, collect ledgers whose metadata is gone
(storage.ledger.gc), and stop cleanly on SIGTERM/SIGINT.

`kop storage-node` and `python -m storage.node` both call `run_storage_node`.
Once serving, the process prints one line, READY_LINE_PREFIX + "host:port", so
scripts and tests that asked for port 0 learn the real one.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure

from storage.gc_pauses import freeze_startup_objects
from storage.node.client import split_address
from storage.node.core import StorageNode, StorageNodeConfig
from storage.node.registration import NodeRegistration
from storage.node.server import listen as listen_tcp

log = logging.getLogger(__name__)

READY_LINE_PREFIX = "kop storage node listening on "
DEFAULT_LEDGER_GC_INTERVAL = 300.0
"""Seconds between scans for ledgers whose metadata is gone (with a metadata store)."""


@dataclass
class RunningStorageNode:
    node: StorageNode
    listening_port: IListeningPort
    address: str  # as registered and as clients should dial it
    registration: NodeRegistration | None
    ledger_gc: Any = None  # storage.ledger.gc.LedgerGarbageCollector, with a metadata store

    async def stop(self) -> None:
        """Stop taking requests, withdraw the registration, finish the writes in progress
        (their acknowledgements still go out), then disconnect."""
        factory = self.listening_port.factory
        await self.listening_port.stopListening()
        factory.stop_reading()
        if self.ledger_gc is not None:
            await self.ledger_gc.stop()
        if self.registration is not None:
            try:
                await self.registration.close()
            except Exception:
                log.exception("withdrawing the registration of %s", self.address)
        await self.node.close()
        factory.disconnect_all()


async def start_storage_node(data_dir: str | os.PathLike, listen: str,
                             metadata_url: str | None = None, *,
                             advertised_address: str | None = None,
                             config: StorageNodeConfig | None = None,
                             ledger_gc_interval: float | None = DEFAULT_LEDGER_GC_INTERVAL,
                             reactor=None) -> RunningStorageNode:
    """Open the node in `data_dir`, serve it on `listen` ("host:port", port 0 = any free
    one) and, given a metadata URL, register it as /storage-nodes/<address> and delete
    every `ledger_gc_interval` seconds the ledgers whose metadata is gone (None: never)."""
    if reactor is None:
        from twisted.internet import reactor
    host, port = split_address(listen)
    node = await StorageNode.open(data_dir, config, reactor)
    try:
        listening_port = listen_tcp(node, host, port, reactor)
    except BaseException:
        await node.close()
        raise
    address = advertised_address or f"{host}:{listening_port.getHost().port}"
    registration = None
    ledger_gc = None
    if metadata_url:
        from storage.metadata import open_metadata_store

        try:
            store = open_metadata_store(metadata_url)
            # A new incarnation per start tells auto-recovery the node restarted (and may
            # have missed writes, or lost its disk) even when the address is the same.
            registration = NodeRegistration(store, address, {
                "address": address, "hostname": socket.gethostname(), "pid": os.getpid(),
                "data_dir": str(node.data_dir), "incarnation": uuid.uuid4().hex})
            await registration.start()
        except BaseException:
            await listening_port.stopListening()
            await node.close()
            raise
        if ledger_gc_interval:
            from storage.ledger.gc import LedgerGarbageCollector, confirmed_address

            ledger_gc = LedgerGarbageCollector(
                store, node, address=confirmed_address(node.data_dir, address),
                interval=ledger_gc_interval, clock=reactor)
            ledger_gc.start()
    return RunningStorageNode(node, listening_port, address, registration, ledger_gc)


def run_storage_node(data_dir: str | os.PathLike, listen: str, metadata_url: str | None, *,
                     advertised_address: str | None = None,
                     config: StorageNodeConfig | None = None,
                     ledger_gc_interval: float | None = DEFAULT_LEDGER_GC_INTERVAL) -> int:
    """Run a storage node until SIGTERM or SIGINT; returns the process exit code.
    Runs the global reactor, so call it once, from the main thread."""
    from twisted.internet import reactor

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exit_code = 0

    def started(running: RunningStorageNode) -> None:
        freeze_startup_objects()
        print(READY_LINE_PREFIX + running.address, flush=True)
        reactor.addSystemEventTrigger("before", "shutdown",
                                      lambda: defer.ensureDeferred(running.stop()))
        running.node.add_failure_listener(node_failed)

    def node_failed(error: Exception) -> None:
        # A node that cannot write must not stay registered as live; exit so that a
        # supervisor restarts it (the restart rescans the journal tail).
        nonlocal exit_code
        exit_code = 1
        log.error("storage node failed, stopping: %s", error)
        reactor.stop()

    def failed(failure: Failure) -> None:
        nonlocal exit_code
        exit_code = 1
        print(f"kop storage node: cannot start: {failure.getErrorMessage()}", file=sys.stderr)
        log.error("storage node failed to start", exc_info=failure.value)
        reactor.stop()

    def start() -> None:
        defer.ensureDeferred(start_storage_node(
            data_dir, listen, metadata_url, advertised_address=advertised_address,
            config=config, ledger_gc_interval=ledger_gc_interval,
            reactor=reactor)).addCallbacks(started, failed)

    reactor.callWhenRunning(start)
    reactor.run()
    return exit_code
