"""A real kop cluster for integration tests, a client workload to run through failures, and
the checks applied afterwards.

    cluster = ClusterUnderTest(tmp_path, zookeeper_server.unique_url("/cluster"))
    cluster.start()                                    # 3 storage nodes, brokers 1-3
    workload = Workload(cluster.bootstrap(), TOPIC, PARTITIONS, GROUP).start()
    ... kill / freeze / add processes ...
    workload.stop()
    check_log(workload, read_partitions(...))          # every ack exactly once, in order
    check_group_resumes(...)                           # a new member starts at the commits

Processes: ZooKeeper (the shared test server, a chroot per cluster), storage nodes and
brokers as child processes (kop/cluster/process.py). Clients are unmodified confluent-kafka
(the idempotent acks=all producer and the group member that commits as it goes) and
kafka-python (the checker that reads every partition end to end, and the member that
resumes the group afterwards).

Ledgers use E=2 Qw=2 Qa=2 on three storage nodes unless a test asks otherwise: losing a node
then leaves a spare for ensemble changes (with E=3 on three nodes, writes would wait for the
lost node). `replication=None` keeps the brokers' default, E=3 Qw=2 Qa=2, which needs a fourth
storage node for that. Every broker runs auto-recovery with a short grace period.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kop.broker import ReplicationSettings
from kop.cluster.process import BrokerProcess, StorageNodeService
from storage.ledger.auto_recovery import AutoRecoverySettings

SESSION_TIMEOUT = 4.0
REPLICATION = ReplicationSettings(ensemble_size=2, write_quorum=2, ack_quorum=2)
BROKER_SETTINGS = {"group.initial.rebalance.delay.ms": "0"}
# A storage node away for a second is lost; marked ledgers are looked at twice a second.
AUTO_RECOVERY = AutoRecoverySettings(grace_period=1.0, audit_interval=60.0, retry_interval=0.5)
POLL_SECONDS = 0.05


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll until `condition()` is truthy (returns it); AssertionError naming `what` after
    `timeout` seconds. A client error from `condition` (a broker going away just then)
    counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except KafkaException:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_SECONDS)


class ClusterUnderTest:
    def __init__(self, base_dir: Path, zookeeper_url: str,
                 session_timeout: float = SESSION_TIMEOUT,
                 replication: ReplicationSettings | None = REPLICATION,
                 auto_recovery: AutoRecoverySettings = AUTO_RECOVERY) -> None:
        self.base_dir = base_dir
        self.metadata_url = f"{zookeeper_url}?session_timeout={session_timeout:g}"
        self.session_timeout = session_timeout
        self.replication = replication
        self.auto_recovery = auto_recovery
        self.storage_nodes: list[StorageNodeService] = []
        self.brokers: dict[int, BrokerProcess] = {}
        self._admins: dict[str, AdminClient] = {}
        self.frozen: set[int] = set()

    def start(self, storage_nodes: int = 3, brokers: int = 3) -> ClusterUnderTest:
        self.storage_nodes = [StorageNodeService(self.base_dir / f"storage-{n}",
                                                 self.metadata_url)
                              for n in range(1, storage_nodes + 1)]
        _start_together(self.storage_nodes)
        new = [self._broker(broker_id) for broker_id in range(1, brokers + 1)]
        _start_together(new)
        return self

    def _broker(self, broker_id: int) -> BrokerProcess:
        broker = BrokerProcess(self.base_dir / f"broker-{broker_id}.log", self.metadata_url,
                               broker_id=broker_id, replication=self.replication,
                               settings=BROKER_SETTINGS, auto_recovery=self.auto_recovery)
        self.brokers[broker_id] = broker
        return broker

    def add_broker(self, broker_id: int) -> BrokerProcess:
        broker = self._broker(broker_id)
        broker.start()
        return broker

    def bootstrap(self) -> str:
        """The brokers that run now (stopped or frozen ones would only slow clients down)."""
        return ",".join(b.address for broker_id, b in self.brokers.items()
                        if b.address and b.running and broker_id not in self.frozen)

    def freeze(self, broker_id: int) -> None:
        self.frozen.add(broker_id)
        self.brokers[broker_id].freeze()

    def thaw(self, broker_id: int) -> None:
        self.brokers[broker_id].thaw()
        self.frozen.discard(broker_id)

    def admin(self) -> AdminClient:
        """An admin client for the brokers running now. Kept: librdkafka fails the requests
        of a client it destroys."""
        bootstrap = self.bootstrap()
        if bootstrap not in self._admins:
            self._admins[bootstrap] = AdminClient({"bootstrap.servers": bootstrap})
        return self._admins[bootstrap]

    def restart_brokers(self) -> None:
        """Stop every broker gracefully (each closes its partitions: every ledger is sealed),
        then start them all again on their ports."""
        running = [broker for broker in self.brokers.values() if broker.running]
        with ThreadPoolExecutor(len(running)) as pool:
            for stopped in [pool.submit(broker.stop) for broker in running]:
                assert stopped.result() == 0, "a broker did not stop cleanly"
        self._admins.clear()  # their connections went with the brokers
        _start_together(running)

    def create_topic(self, topic: str, partitions: int,
                     config: dict[str, str] | None = None) -> None:
        futures = self.admin().create_topics([NewTopic(topic, partitions, config=config or {})])
        futures[topic].result(30)

    def leaders(self, topic: str) -> dict[int, int]:
        """partition -> leader id, as Metadata (from any broker) answers now."""
        metadata = self.admin().list_topics(topic, timeout=10)
        return {p: info.leader for p, info in metadata.topics[topic].partitions.items()}

    def live_broker_ids(self) -> set[int]:
        return set(self.admin().list_topics(timeout=10).brokers)

    def group_coordinator(self, group: str) -> int:
        description = self.admin().describe_consumer_groups([group])[group].result(30)
        return description.coordinator.id

    def log_of(self, broker_id: int) -> str:
        return self.brokers[broker_id].log_text()

    def close(self) -> None:
        for process in [*self.brokers.values(), *self.storage_nodes]:
            process.thaw()
            process.kill()


def _start_together(processes: list) -> None:
    with ThreadPoolExecutor(len(processes)) as pool:
        for started in [pool.submit(p.start) for p in processes]:
            started.result()


@dataclass(frozen=True)
class Acked:
    seq: int
    partition: int
    offset: int
    at: float  # time.monotonic() of the acknowledgement


@dataclass
class Workload:
    """An idempotent acks=all producer and one committing group member, on threads."""

    bootstrap: str
    topic: str
    partitions: int
    group: str
    acked: list[Acked] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    consumed: list[tuple[int, int, int]] = field(default_factory=list)  # partition, offset, seq
    committed: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop_producing = threading.Event()
        self._stop_consuming = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Workload:
        for target in (self._produce, self._consume):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    # -- the producer ---------------------------------------------------------------------------

    def _produce(self) -> None:
        producer = Producer({
            "bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "socket.timeout.ms": 5000, "message.timeout.ms": 60000,
            "retry.backoff.ms": 50, "reconnect.backoff.max.ms": 500})
        seq = 0
        while not self._stop_producing.is_set():
            partition = seq % self.partitions
            try:
                producer.produce(self.topic, key=str(seq).encode(), value=str(seq).encode(),
                                 partition=partition, on_delivery=self._delivered(seq))
                seq += 1
            except BufferError:
                pass
            producer.poll(0.005)
        left = producer.flush(90)
        if left:
            self.failures.append(f"{left} records neither acknowledged nor failed")

    def _delivered(self, seq: int):
        def on_delivery(error, message) -> None:
            with self._lock:
                if error is not None:
                    self.failures.append(f"record {seq}: {error}")
                else:
                    self.acked.append(Acked(seq, message.partition(), message.offset(),
                                            time.monotonic()))
        return on_delivery

    # -- the group member -----------------------------------------------------------------------

    def _consume(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": self.group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        consumer.subscribe([self.topic])
        positions: dict[int, int] = {}
        last_commit = time.monotonic()
        while not self._stop_consuming.is_set():
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                with self._lock:
                    self.consumed.append((message.partition(), message.offset(),
                                          int(message.value())))
                positions[message.partition()] = message.offset() + 1
            if time.monotonic() - last_commit > 0.5 and positions:
                last_commit = time.monotonic()
                self._commit(consumer, positions)
        deadline = time.monotonic() + 60
        while positions and not self._commit(consumer, positions):
            if time.monotonic() > deadline:
                self.failures.append("the group member could not commit its final offsets")
                break
            time.sleep(0.2)
        consumer.close()

    def _commit(self, consumer: Consumer, positions: dict[int, int]) -> bool:
        offsets = [TopicPartition(self.topic, p, o) for p, o in sorted(positions.items())]
        try:
            answered = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException:
            return False  # the coordinator is moving: commit again later
        if any(tp.error is not None for tp in answered):
            return False
        with self._lock:
            self.committed.update({tp.partition: tp.offset for tp in answered})
        return True

    # -- observing it ---------------------------------------------------------------------------

    def acked_since(self, since: float) -> dict[int, float]:
        """partition -> time of its first acknowledgement after `since`."""
        first: dict[int, float] = {}
        with self._lock:
            for acked in self.acked:
                if acked.at >= since and acked.partition not in first:
                    first[acked.partition] = acked.at
        return first

    def wait_for_acks(self, since: float, partitions: set[int], timeout: float) -> dict[int, float]:
        """Until every partition in `partitions` had a record acknowledged after `since`."""
        def all_acked() -> dict[int, float] | None:
            first = self.acked_since(since)
            return first if partitions <= first.keys() else None

        return wait_for(all_acked, timeout, f"acknowledgements on partitions {partitions}")

    def consumed_count(self) -> int:
        with self._lock:
            return len(self.consumed)

    def stop(self) -> None:
        self._stop_producing.set()
        self._threads[0].join(120)
        self._stop_consuming.set()
        self._threads[1].join(120)
        assert not any(t.is_alive() for t in self._threads), "the workload did not stop"


# -- checks ----------------------------------------------------------------------------------------


def read_partitions(bootstrap: str, topic: str, partitions: int,
                    timeout: float = 60) -> dict[int, dict[int, int]]:
    """Every record of every partition, read end to end with kafka-python: partition ->
    {offset: seq}."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KafkaPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                             group_id=None, auto_offset_reset="earliest")
    try:
        assigned = [KafkaPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(assigned)
        contents: dict[int, dict[int, int]] = {p: {} for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in assigned):
            assert time.monotonic() < deadline, "reading every partition took too long"
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    contents[tp.partition][record.offset] = int(record.value)
        return contents
    finally:
        consumer.close()


def check_log(workload: Workload, contents: dict[int, dict[int, int]]) -> None:
    """Every acknowledged record is present exactly once, where it was acknowledged, and every
    partition holds its records in the order they were produced."""
    assert not [f for f in workload.failures if "neither" in f], workload.failures
    every = Counter(seq for records in contents.values() for seq in records.values())
    duplicates = sorted(seq for seq, count in every.items() if count > 1)
    assert not duplicates, f"records stored twice: {duplicates[:10]}"
    missing = [a for a in workload.acked if contents[a.partition].get(a.offset) != a.seq]
    assert not missing, f"acknowledged records missing or moved: {missing[:10]}"
    for partition, records in contents.items():
        seqs = [records[offset] for offset in sorted(records)]
        assert all(seq % workload.partitions == partition for seq in seqs)
        assert seqs == sorted(seqs), f"partition {partition} is out of order"


def check_group_progress(workload: Workload) -> None:
    """The member committed on every partition, and only offsets it had consumed."""
    assert set(workload.committed) == set(range(workload.partitions)), workload.committed
    consumed = {(partition, offset) for partition, offset, _ in workload.consumed}
    for partition, committed in workload.committed.items():
        skipped = [o for o in range(committed) if (partition, o) not in consumed]
        assert not skipped, f"partition {partition}: committed past unconsumed {skipped[:5]}"


def check_group_resumes(bootstrap: str, workload: Workload, timeout: float = 60) -> None:
    """A new member of the group (kafka-python) starts every partition at the committed
    offset: its first record there is the one at that offset."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(workload.topic, bootstrap_servers=bootstrap.split(","),
                             group_id=workload.group, enable_auto_commit=False,
                             auto_offset_reset="earliest", session_timeout_ms=6000,
                             heartbeat_interval_ms=500)
    first: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(first) < workload.partitions:
            assert time.monotonic() < deadline, f"resumed on {sorted(first)} only"
            for tp, records in consumer.poll(timeout_ms=500).items():
                if records:
                    first.setdefault(tp.partition, records[0].offset)
    finally:
        consumer.close()
    assert first == workload.committed


def produce_one_per_partition(bootstrap: str, topic: str, partitions: int) -> None:
    """A record after the last commit on every partition, for the resumed member to find."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "message.timeout.ms": 60000})
    errors: list[object] = []
    after_everything = partitions * 10**9  # keeps "seq % partitions == partition"
    for partition in range(partitions):
        producer.produce(topic, value=str(after_everything + partition).encode(),
                         partition=partition,
                         on_delivery=lambda error, _: errors.append(error) if error else None)
    assert producer.flush(60) == 0 and not errors, errors


class ParkedProduce:
    """A produce request written into a broker's socket while the broker is frozen, to see
    what the broker does with it on waking (tests/integration/raw.py's bare connection)."""

    def __init__(self, address: str, topic: str, partition: int, value: int) -> None:
        from tests.integration.raw import RawConnection

        self.topic, self.partition, self.value = topic, partition, value
        self._connection = RawConnection(address, timeout=60)  # connect while it still runs

    def send(self) -> None:
        from wire.messages import ProduceRequest
        from wire.protocol import RequestHeader, encode_request
        from wire.records.record import BatchBuilder

        builder = BatchBuilder()
        builder.append(str(self.value).encode())
        request = ProduceRequest(
            transactional_id=None, acks=-1, timeout_ms=30_000,
            topic_data=[ProduceRequest.TopicProduceData(name=self.topic, partition_data=[
                ProduceRequest.PartitionProduceData(index=self.partition,
                                                    records=builder.build())])])
        self._connection.send_bytes(encode_request(
            RequestHeader(PRODUCE_KEY, PRODUCE_VERSION, 1, "parked"), request))

    def answer(self):
        """The partition's produce response (blocks until the broker answers)."""
        from wire.protocol import decode_response

        frame = self._connection.read_frame()
        self._connection.close()
        assert frame is not None, "the broker closed the connection"
        _, response = decode_response(frame, PRODUCE_KEY, PRODUCE_VERSION)
        return response.responses[0].partition_responses[0]


PRODUCE_KEY, PRODUCE_VERSION = 0, 9
