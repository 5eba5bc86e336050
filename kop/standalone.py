"""`kop standalone`: a broker, one storage node and the embedded metadata store in one process.

Everything lives under one data directory: `metadata/` (the embedded store), `storage/` (the
storage node's journal and index). Ledgers use E=Qw=Qa=1 on that node. The process prints
one line, READY_LINE_PREFIX + "host:port", once it accepts Kafka connections (tests and
scripts that asked for port 0 learn the real port from it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort

from kop.broker import Broker, BrokerConfig
from kop.server import KafkaServerFactory
from storage.gc_pauses import freeze_startup_objects
from storage.ledger import LedgerClient, NodePool
from storage.managed_ledger import ManagedLedgerFactory
from storage.metadata import MetadataStore, open_metadata_store
from storage.node import LocalStorageNodeClient, StorageNode

log = logging.getLogger(__name__)

READY_LINE_PREFIX = "kop listening on "


@dataclass
class RunningStandalone:
    broker: Broker
    store: MetadataStore
    node: StorageNode
    port: IListeningPort

    @property
    def address(self) -> str:
        return f"{self.broker.config.host}:{self.broker.config.port}"

    async def stop(self) -> None:
        """Stop accepting, finish and seal open partitions, then close storage and metadata."""
        await self.port.stopListening()
        try:
            await self.broker.stop()
        finally:
            await self.node.close()
            await self.store.close()


async def start_standalone(data_dir: str | os.PathLike, listen_host: str, listen_port: int,
                           config: BrokerConfig, reactor=None) -> RunningStandalone:
    if reactor is None:
        from twisted.internet import reactor
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    store = open_metadata_store(str(root / "metadata"))
    node = await StorageNode.open(root / "storage")
    try:
        pool = NodePool.for_local_node(LocalStorageNodeClient(node))
        ledgers = ManagedLedgerFactory(store, LedgerClient(store, pool))
        broker = Broker(config, store, ledgers)
        port = reactor.listenTCP(listen_port, KafkaServerFactory(broker), interface=listen_host)
        if config.port == 0:
            config.port = port.getHost().port
        await broker.start()
    except BaseException:
        await node.close()
        await store.close()
        raise
    log.info("kop standalone serving %s:%d (data in %s)", config.host, config.port, root)
    return RunningStandalone(broker, store, node, port)


def run_until_signalled(start) -> int:
    """Run the reactor: `start()` returns a Deferred of something with `address` and
    `stop()`; SIGINT/SIGTERM stop it cleanly. Returns the exit code."""
    from twisted.internet import reactor

    exit_code = 0

    def started(running) -> None:
        freeze_startup_objects()
        print(READY_LINE_PREFIX + running.address, flush=True)
        reactor.addSystemEventTrigger("before", "shutdown",
                                      lambda: defer.ensureDeferred(running.stop()))

    def failed(failure) -> None:
        nonlocal exit_code
        exit_code = 1
        log.error("kop failed to start: %s", failure.getErrorMessage())
        log.debug("%s", failure.getTraceback())
        reactor.stop()

    reactor.callWhenRunning(lambda: start().addCallbacks(started, failed))
    reactor.run()
    return exit_code
