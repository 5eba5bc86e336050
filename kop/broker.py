"""The broker: what every handler works with — config, topics, partitions, coordinators.

`Broker` ties the Kafka view (topics, partitions, offsets) to the native model (managed
ledgers in a metadata store). Partitions are opened lazily, on the first request that needs
them, and kept open; opening a managed ledger recovers (fences) its previous writer, so a
broker that restarts after `kill -9` carries on from exactly what was durable.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import defer, task

from kop.configs import BROKER_DEFAULTS, EffectiveTopicConfig
from kop.deferreds import follow
from kop.errors import KafkaError
from kop.fetch_sessions import FetchSessionCache
from kop.groups import GroupCoordinator
from kop.naming import Namespace
from kop.ownership import BrokerAddress, Ownership, SoleOwnership
from kop.partition_log import PartitionLog
from kop.producer_ids import ProducerIdAllocator
from kop.topics import TopicInfo, TopicRegistry
from kop.transactions import TransactionCoordinator
from storage.managed_ledger import ManagedLedgerConfig, ManagedLedgerFactory
from storage.metadata import MetadataStore, NodeExistsError
from wire.generated.error_codes import ErrorCode

log = logging.getLogger(__name__)

STATE_SAVE_INTERVAL_SECONDS = 10.0


@dataclass
class ReplicationSettings:
    """Ensemble, write quorum and ack quorum of new ledgers."""

    ensemble_size: int = 1
    write_quorum: int = 1
    ack_quorum: int = 1


@dataclass
class BrokerConfig:
    node_id: int = 0
    host: str = "127.0.0.1"
    port: int = 9092
    namespace: Namespace = field(default_factory=Namespace)
    replication: ReplicationSettings = field(default_factory=ReplicationSettings)
    settings: dict[str, str] = field(default_factory=lambda: dict(BROKER_DEFAULTS))

    @property
    def auto_create_topics(self) -> bool:
        return self.settings["auto.create.topics.enable"].lower() == "true"

    @property
    def default_partitions(self) -> int:
        return int(self.settings["num.partitions"])

    def setting(self, name: str) -> int:
        return int(self.settings[name])


class PartitionManager:
    """Opens, caches and closes the PartitionLogs this broker owns."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._open: dict[tuple[str, int], PartitionLog] = {}
        self._opening: dict[tuple[str, int], defer.Deferred[PartitionLog]] = {}

    def cached(self, topic: str, partition: int) -> PartitionLog | None:
        log_ = self._open.get((topic, partition))
        if log_ is not None and log_.failed:
            self._discard(topic, partition)
            return None
        return log_

    def get(self, topic: str, partition: int) -> defer.Deferred[PartitionLog]:
        """The open PartitionLog, opening it if needed (UNKNOWN_TOPIC_OR_PARTITION if absent)."""
        ready = self.cached(topic, partition)
        if ready is not None:
            return defer.succeed(ready)
        key = (topic, partition)
        opening = self._opening.get(key)
        if opening is None:
            opening = defer.ensureDeferred(self._open_partition(topic, partition))
            self._opening[key] = opening

            def done(result):
                self._opening.pop(key, None)
                # Every caller hears the outcome through its follower (chained after this);
                # the open's own chain ends there, so a failed open is not "unhandled".
                opening.addErrback(lambda _: None)
                return result

            opening.addBoth(done)
        return follow(opening)

    async def _open_partition(self, topic: str, partition: int) -> PartitionLog:
        info = await self._broker.topics.lookup(topic)
        if info is None or not 0 <= partition < info.partitions:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"{topic}-{partition} does not exist")
        broker = self._broker
        epoch = await broker.ownership.acquire(topic, partition)
        name = broker.config.namespace.managed_ledger_name(topic, partition)
        config = broker.topic_config(info)
        try:
            ledger = await broker.ledgers.open(name, broker.managed_ledger_config(config))
        except Exception:
            await broker.ownership.release(topic, partition)
            raise
        partition_log = PartitionLog(topic, partition, ledger, config, broker.clock, epoch)
        try:
            await partition_log.load()
        except Exception:
            await ledger.close()
            await broker.ownership.release(topic, partition)
            raise
        self._open[(topic, partition)] = partition_log
        log.info("opened %s-%d: log start %d, high watermark %d", topic, partition,
                 partition_log.log_start_offset, partition_log.high_watermark)
        return partition_log

    def _discard(self, topic: str, partition: int) -> None:
        """Drop a partition whose log failed or whose ownership was lost, without saving
        anything (another broker may own it already: only storage fencing speaks now)."""
        failed = self._open.pop((topic, partition), None)
        if failed is not None:
            defer.ensureDeferred(failed.ledger.close()).addErrback(lambda _: None)
            defer.ensureDeferred(self._broker.ownership.release(topic, partition)).addErrback(
                lambda _: None)

    def ownership_lost(self, topic: str, partition: int) -> None:
        if (topic, partition) in self._open:
            log.warning("lost ownership of %s-%d: closing it", topic, partition)
            self._discard(topic, partition)

    async def close(self, topic: str, partition: int) -> None:
        """Close one partition cleanly (state saved, ledger sealed) and release its claim."""
        partition_log = self._open.pop((topic, partition), None)
        if partition_log is not None:
            try:
                await partition_log.close()
            finally:
                await self._broker.ownership.release(topic, partition)

    def open_partitions(self) -> list[PartitionLog]:
        return list(self._open.values())

    async def close_topic(self, topic: str) -> None:
        for name, partition in list(self._open):
            if name == topic:
                await self.close(name, partition)

    def reconfigure_topic(self, info: TopicInfo) -> None:
        config = self._broker.topic_config(info)
        for (name, _), partition_log in self._open.items():
            if name == info.name:
                partition_log.config = config
                partition_log.ledger.update_config(self._broker.managed_ledger_config(config))

    async def save_all(self) -> None:
        for partition_log in list(self._open.values()):
            if partition_log.failed:
                continue
            try:
                await partition_log.save_state()
                await partition_log.refresh_log_start()
            except Exception as exc:
                log.warning("%r: saving state failed: %s", partition_log, exc)

    async def close_all(self) -> None:
        for topic, partition in list(self._open):
            try:
                await self.close(topic, partition)
            except Exception as exc:
                log.warning("%s-%d: close failed: %s", topic, partition, exc)


class Broker:
    def __init__(self, config: BrokerConfig, store: MetadataStore,
                 ledgers: ManagedLedgerFactory, clock: Callable[[], float] = time.time,
                 ownership: Ownership | None = None) -> None:
        self.config = config
        self.store = store
        self.ledgers = ledgers
        self.clock = clock
        self.cluster_id = ""
        self.topics = TopicRegistry(store, config.namespace)
        self.partitions = PartitionManager(self)
        self.ownership = ownership or SoleOwnership(
            lambda: BrokerAddress(config.node_id, config.host, config.port))
        self.ownership.add_lost_listener(self.partitions.ownership_lost)
        self.transactions = TransactionCoordinator(
            self, store, max_timeout_ms=config.setting("transaction.max.timeout.ms"), clock=clock)
        self.fetch_sessions = FetchSessionCache()
        self.producer_ids = ProducerIdAllocator(store)
        self.groups = GroupCoordinator(self)
        self._saver: task.LoopingCall | None = None

    @property
    def node_id(self) -> int:
        return self.config.node_id

    def live_brokers(self) -> list[BrokerAddress]:
        return self.ownership.live_brokers()

    def leader_of(self, topic: str, partition: int) -> int | None:
        """The broker owning a partition (None while no live broker owns it)."""
        return self.ownership.leader_of(topic, partition)

    def leader_epoch_of(self, topic: str, partition: int) -> int:
        return self.ownership.leader_epoch_of(topic, partition)

    def owns(self, topic: str, partition: int) -> bool:
        return self.ownership.owns(topic, partition)

    def controller_id(self) -> int:
        brokers = self.live_brokers()
        return min(b.node_id for b in brokers) if brokers else -1

    async def start(self) -> None:
        self.cluster_id = await self._cluster_id()
        await self.ownership.start()
        await self.topics.load()
        await self.transactions.start()
        await self.groups.start()
        self._saver = task.LoopingCall(self._save_state)
        self._saver.start(STATE_SAVE_INTERVAL_SECONDS, now=False)
        log.info("broker %d ready (cluster %s, %d topics)", self.node_id, self.cluster_id,
                 len(self.topics.all()))

    async def _cluster_id(self) -> str:
        found = await self.store.get("/cluster-id")
        if found is not None:
            return found.value.decode()
        candidate = uuid.uuid4().hex[:22]
        try:
            await self.store.create("/cluster-id", candidate.encode())
            return candidate
        except NodeExistsError:
            found = await self.store.get("/cluster-id")
            assert found is not None
            return found.value.decode()

    def _save_state(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self.partitions.save_all())

    async def stop(self) -> None:
        if self._saver is not None and self._saver.running:
            self._saver.stop()
        await self.transactions.stop()
        await self.groups.stop()
        await self.partitions.close_all()
        await self.ownership.stop()

    # -- configuration ------------------------------------------------------------------------

    def topic_config(self, info: TopicInfo) -> EffectiveTopicConfig:
        return EffectiveTopicConfig.resolve(info.configs, self.config.settings)

    def managed_ledger_config(self, config: EffectiveTopicConfig) -> ManagedLedgerConfig:
        replication = self.config.replication
        return ManagedLedgerConfig(
            ensemble_size=replication.ensemble_size,
            write_quorum=replication.write_quorum,
            ack_quorum=replication.ack_quorum,
            max_ledger_bytes=config.segment_bytes,
            max_ledger_age_seconds=config.segment_ms / 1000,
            retention_seconds=None if config.retention_ms < 0 else config.retention_ms / 1000,
            retention_bytes=None if config.retention_bytes < 0 else config.retention_bytes,
        )

    # -- topics -------------------------------------------------------------------------------

    async def ensure_topic(self, name: str, auto_create: bool) -> TopicInfo | None:
        """The topic, auto-creating it (num.partitions) when allowed and enabled."""
        info = await self.topics.lookup(name)
        if info is not None or not (auto_create and self.config.auto_create_topics):
            return info
        try:
            return await self.topics.create(name, self.config.default_partitions)
        except KafkaError as exc:
            if exc.code == ErrorCode.TOPIC_ALREADY_EXISTS:
                return await self.topics.lookup(name)
            raise

    async def delete_topic(self, name: str) -> None:
        info = await self.topics.delete(name)
        await self.partitions.close_topic(name)
        for partition in range(info.partitions):
            ledger_name = self.config.namespace.managed_ledger_name(name, partition)
            try:
                await self.ledgers.delete(ledger_name)
            except Exception as exc:
                log.warning("could not delete managed ledger %s: %s", ledger_name, exc)
