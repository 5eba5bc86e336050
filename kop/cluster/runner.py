"""`kop broker`: one broker of a cluster — no data of its own, metadata and ownership in
ZooKeeper, partitions stored as managed ledgers on the storage nodes registered there.

Start-up: connect to ZooKeeper, take a broker id (given, or allocated from a counter), listen
for Kafka clients, register (ownership), then let the balancer claim and open the partitions
designated to this broker. The process prints READY_LINE_PREFIX + "host:port" once serving.

Every broker also runs auto-recovery (storage/ledger/auto_recovery.py) unless told not to: it
is one of the re-replication workers, and stands in the election of the one auditor, so a
cluster of brokers restores the copies of ledgers that lost a storage node without a service
of its own to deploy.

Graceful stop (SIGTERM/SIGINT): announce leaving (other brokers stop designating partitions
here), close every partition cleanly and release its claim — so other brokers take over at
once instead of after a session timeout — then leave the auditor election (another broker
takes auditing over), deregister and disconnect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IListeningPort

import kop.handlers.txn_markers  # noqa: F401  (registers WriteTxnMarkers: cluster brokers only)
from kop.broker import Broker, BrokerConfig, ReplicationSettings
from kop.cluster.balancer import PartitionBalancer
from kop.cluster.markers import RemoteMarkers
from kop.cluster.ownership import ZooKeeperOwnership, allocate_broker_id
from kop.cluster.peers import PeerClient
from kop.cluster.registration import ClusterError
from kop.groups import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC
from kop.ownership import BrokerAddress
from kop.server import KafkaServerFactory
from storage.ledger import LedgerClient, NodePool
from storage.ledger.auto_recovery import AutoRecovery, AutoRecoverySettings, default_identity
from storage.managed_ledger import ManagedLedgerFactory
from storage.metadata import MetadataStore, open_metadata_store, parse_metadata_url
from storage.metadata.urls import ZooKeeperLocation
from storage.metadata.zookeeper import ZooKeeperStore

log = logging.getLogger(__name__)

# BookKeeper's usual replication: three nodes per ledger, two copies of each entry, two acks.
CLUSTER_REPLICATION = ReplicationSettings(ensemble_size=3, write_quorum=2, ack_quorum=2)
CONNECT_TIMEOUT_SECONDS = 30.0
DEFAULT_AUTO_RECOVERY = AutoRecoverySettings()


@dataclass
class RunningClusterBroker:
    broker: Broker
    ownership: ZooKeeperOwnership
    balancer: PartitionBalancer
    store: MetadataStore
    pool: NodePool
    ledgers: ManagedLedgerFactory
    peers: PeerClient
    port: IListeningPort
    auto_recovery: AutoRecovery | None = None

    @property
    def address(self) -> str:
        return f"{self.broker.config.host}:{self.broker.config.port}"

    async def stop(self) -> None:
        """Hand every partition off, deregister, then close everything."""
        await self.balancer.stop()
        await self.ownership.leave()
        try:
            await self.broker.stop()  # closes partitions (releasing claims), then deregisters
        finally:
            if self.auto_recovery is not None:
                await self.auto_recovery.stop()  # after the ledger it is repairing, if any
            await self.port.stopListening()
            await self.peers.close()
            await self.ledgers.close()
            await self.pool.close()
            await self.store.close()


def zookeeper_location(metadata_url: str) -> ZooKeeperLocation:
    """The ZooKeeper a cluster broker uses; ClusterError for any other kind of store."""
    try:
        location = parse_metadata_url(metadata_url)
    except ValueError as exc:
        raise ClusterError(str(exc)) from None
    if not isinstance(location, ZooKeeperLocation):
        raise ClusterError(f"a cluster broker keeps its metadata in ZooKeeper: expected "
                           f"zk://host:port[,host:port]/chroot, got {metadata_url!r}")
    return location


async def start_cluster_broker(metadata_url: str, listen_host: str, listen_port: int,
                               config: BrokerConfig, *, reactor: Any = None,
                               connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                               auto_recovery: AutoRecoverySettings | None = DEFAULT_AUTO_RECOVERY
                               ) -> RunningClusterBroker:
    """Start a broker; `config.node_id` < 0 asks for an allocated id, `config.port` 0 for the
    port actually listened on, `auto_recovery` None for no auto-recovery in this broker."""
    if reactor is None:
        from twisted.internet import reactor
    location = zookeeper_location(metadata_url)
    store = open_metadata_store(metadata_url, reactor=reactor)
    assert isinstance(store, ZooKeeperStore)  # what a zk:// URL opens
    closers: list[Any] = [store.close]
    try:
        await store.ready(connect_timeout)
        if store.session_timeout != location.session_timeout:
            log.warning("ZooKeeper granted a session timeout of %g s (%g s asked for): "
                        "partitions move that long after this broker dies",
                        store.session_timeout, location.session_timeout)
        if config.node_id < 0:
            config.node_id = await allocate_broker_id(store)
        pool = await NodePool.for_cluster(store)
        closers.append(pool.close)
        ledgers = ManagedLedgerFactory(store, LedgerClient(store, pool))
        closers.append(ledgers.close)
        ownership = ZooKeeperOwnership(
            store, lambda: BrokerAddress(config.node_id, config.host, config.port),
            # The timeout granted, not the one asked for: the lease must not outlive the session.
            config.namespace, session_timeout=lambda: store.session_timeout,
            claim_before_serving=[OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC], reactor=reactor)
        broker = Broker(config, store, ledgers, ownership=ownership)
        peers = PeerClient(reactor)
        closers.append(peers.close)
        broker.transactions.remote_markers = RemoteMarkers(broker, peers, reactor=reactor)
        port = reactor.listenTCP(listen_port, KafkaServerFactory(broker), interface=listen_host)
        closers.append(port.stopListening)
        if config.port == 0:
            config.port = port.getHost().port
        await broker.start()
        closers.append(ownership.stop)
        balancer = PartitionBalancer(broker, ownership, reactor=reactor)
        balancer.start()
        closers.append(balancer.stop)
        recovery = None
        if auto_recovery is not None:
            recovery = AutoRecovery(store, pool, settings=auto_recovery, clock=reactor,
                                    identity=f"broker-{config.node_id}@{default_identity()}")
            await recovery.start()
            closers.append(recovery.stop)
    except BaseException:
        for close in reversed(closers):
            try:
                closing = close()
                if closing is not None:
                    await closing
            except Exception as exc:
                log.warning("cleaning up after a failed start: %s", exc)
        raise
    log.info("kop broker %d serving %s:%d (metadata %s)", config.node_id, config.host,
             config.port, metadata_url)
    return RunningClusterBroker(broker, ownership, balancer, store, pool, ledgers, peers, port,
                                recovery)
