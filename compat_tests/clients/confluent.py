"""confluent-kafka (librdkafka) adapter: the scenarios' primitives through its public API."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from compat_tests.clients.base import DEFAULT_WAIT_SECONDS, Client, Member
from compat_tests.kafka_errors import name_for_code
from compat_tests.model import (
    BrokerError,
    GroupDescription,
    ProducerOptions,
    ReadResult,
    Record,
    Start,
)
from compat_tests.waiting import Deadline, WaitTimeout

_GROUP_STATE_NAMES = {
    ConsumerGroupState.UNKNOWN: "Unknown",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.DEAD: "Dead",
    ConsumerGroupState.EMPTY: "Empty",
}
_POLL_SECONDS = 0.2


def _raise_kafka_error(error: KafkaError) -> None:
    """Broker errors (code >= 0) become BrokerError; librdkafka's local ones stay as they are."""
    if error.code() >= 0:
        raise BrokerError(name_for_code(error.code()), error.str())
    raise KafkaException(error)


def _await(future: Any) -> Any:
    try:
        return future.result(timeout=DEFAULT_WAIT_SECONDS)
    except KafkaException as exc:
        _raise_kafka_error(exc.args[0])


def _remember(reports: list[Any], index: int, error: Any, message: Any) -> None:
    """Delivery callback: keeps each record's (error, message) in send order."""
    reports[index] = (error, message)


def _to_record(message: Any) -> Record:
    _kind, timestamp = message.timestamp()
    return Record(
        key=message.key(),
        value=message.value(),
        headers=tuple((name, value or b"") for name, value in message.headers() or ()),
        timestamp=timestamp,
        partition=message.partition(),
        offset=message.offset(),
    )


class ConfluentMember(Member):
    def __init__(self, bootstrap: str, group_id: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 500,
            }
        )
        self.consumer.subscribe([topic])
        self.topic = topic

    def poll(self, timeout: float) -> list[Record]:
        records = []
        for message in self.consumer.consume(num_messages=1000, timeout=timeout):
            if message.error():
                _raise_kafka_error(message.error())
            records.append(_to_record(message))
        return records

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def commit(self, offsets: dict[int, int] | None = None, metadata: str = "") -> None:
        if offsets is None:
            self.consumer.commit(asynchronous=False)
            return
        self.consumer.commit(
            offsets=[
                TopicPartition(self.topic, partition, offset, metadata=metadata)
                for partition, offset in offsets.items()
            ],
            asynchronous=False,
        )

    def committed(self, partitions: list[int]) -> dict[int, tuple[int | None, str]]:
        found = self.consumer.committed(
            [TopicPartition(self.topic, p) for p in partitions], timeout=DEFAULT_WAIT_SECONDS
        )
        return {
            tp.partition: (None if tp.offset < 0 else tp.offset, tp.metadata or "") for tp in found
        }

    def close(self) -> None:
        self.consumer.close()


class ConfluentClient(Client):
    name = "confluent-kafka"

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    # -- producing -----------------------------------------------------------------

    def _producer(self, options: ProducerOptions, **extra: Any) -> Producer:
        settings: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "enable.idempotence": options.idempotent,
            "compression.type": options.compression,
        }
        if options.max_request_bytes:
            settings["message.max.bytes"] = options.max_request_bytes
        settings.update(extra)
        return Producer(settings)

    @staticmethod
    def _send(producer: Producer, topic: str, record: Record, on_delivery: Any = None) -> None:
        extra: dict[str, Any] = {}
        if record.partition is not None:
            extra["partition"] = record.partition
        if record.timestamp is not None:
            extra["timestamp"] = record.timestamp
        producer.produce(
            topic,
            value=record.value,
            key=record.key,
            headers=list(record.headers),
            on_delivery=on_delivery,
            **extra,
        )

    def produce(
        self, topic: str, batches: list[list[Record]], options: ProducerOptions
    ) -> list[list[tuple[int, int]]]:
        producer = self._producer(options)
        acks = []
        for batch in batches:
            reports: list[Any] = [None] * len(batch)
            for index, record in enumerate(batch):
                self._send(producer, topic, record, partial(_remember, reports, index))
            if producer.flush(DEFAULT_WAIT_SECONDS) > 0:
                raise WaitTimeout(f"records still unacknowledged after {DEFAULT_WAIT_SECONDS:g} s")
            batch_acks = []
            for error, message in reports:
                if error is not None:
                    _raise_kafka_error(error)
                batch_acks.append((message.partition(), message.offset()))
            acks.append(batch_acks)
        return acks

    def produce_transactions(
        self, topic: str, transactional_id: str, transactions: list[tuple[list[Record], bool]]
    ) -> None:
        producer = self._producer(
            ProducerOptions(idempotent=True), **{"transactional.id": transactional_id}
        )
        producer.init_transactions(DEFAULT_WAIT_SECONDS)
        for records, commit in transactions:
            producer.begin_transaction()
            for record in records:
                self._send(producer, topic, record)
            producer.flush(DEFAULT_WAIT_SECONDS)
            if commit:
                producer.commit_transaction(DEFAULT_WAIT_SECONDS)
            else:
                producer.abort_transaction(DEFAULT_WAIT_SECONDS)

    # -- consuming -----------------------------------------------------------------

    def _reader(self, isolation: str) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"compat-reader-{uuid.uuid4()}",  # required, never joined
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": isolation,
                "auto.offset.reset": "earliest",
            }
        )

    @staticmethod
    def _read_until_eof(
        consumer: Consumer,
        partitions: set[int],
        max_records: int | None,
        eof_offsets: dict[int, int] | None = None,
    ) -> list[Record]:
        """Reads until librdkafka reports end-of-partition for each partition (or enough);
        `eof_offsets` receives the offset each end-of-partition event reported."""
        records: list[Record] = []
        at_end: set[int] = set()
        eof_offsets = {} if eof_offsets is None else eof_offsets
        deadline = Deadline(DEFAULT_WAIT_SECONDS)
        while at_end != partitions and (max_records is None or len(records) < max_records):
            if deadline.expired():
                raise WaitTimeout(
                    f"read {len(records)} records; no end-of-partition for "
                    f"{sorted(partitions - at_end)} after {DEFAULT_WAIT_SECONDS:g} s"
                )
            message = consumer.poll(_POLL_SECONDS)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                    eof_offsets[message.partition()] = message.offset()
                    continue
                _raise_kafka_error(message.error())
            records.append(_to_record(message))
        return records

    def read(
        self,
        topic: str,
        partition: int,
        start: Start,
        max_records: int | None = None,
        isolation: str = "read_uncommitted",
    ) -> ReadResult:
        consumer = self._reader(isolation)
        try:
            if start.kind == "timestamp":
                (found,) = consumer.offsets_for_times(
                    [TopicPartition(topic, partition, start.value)], timeout=DEFAULT_WAIT_SECONDS
                )
                offset = found.offset if found.offset >= 0 else OFFSET_END
            else:
                offset = {"beginning": OFFSET_BEGINNING, "end": OFFSET_END}.get(
                    start.kind, start.value
                )
            consumer.assign([TopicPartition(topic, partition, offset)])
            eof_offsets: dict[int, int] = {}
            records = self._read_until_eof(consumer, {partition}, max_records, eof_offsets)
            (position,) = consumer.position([TopicPartition(topic, partition)])
            # position() stays unset (-1001) until a message is consumed; the
            # end-of-partition event then carries the position instead.
            offset = position.offset if position.offset >= 0 else eof_offsets.get(partition, -1)
            return ReadResult(records, offset)
        finally:
            consumer.close()

    def read_all(self, topic: str, isolation: str = "read_uncommitted") -> list[Record]:
        consumer = self._reader(isolation)
        try:
            metadata = consumer.list_topics(topic, timeout=DEFAULT_WAIT_SECONDS)
            partitions = set(metadata.topics[topic].partitions)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            return self._read_until_eof(consumer, partitions, None)
        finally:
            consumer.close()

    def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        consumer = self._reader("read_uncommitted")
        try:
            return consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=DEFAULT_WAIT_SECONDS
            )
        finally:
            consumer.close()

    def offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        consumer = self._reader("read_uncommitted")
        try:
            (found,) = consumer.offsets_for_times(
                [TopicPartition(topic, partition, timestamp)], timeout=DEFAULT_WAIT_SECONDS
            )
            return None if found.offset < 0 else found.offset
        finally:
            consumer.close()

    def group_member(self, group_id: str, topic: str) -> Member:
        return ConfluentMember(self.bootstrap, group_id, topic)

    # -- admin ---------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        futures = self.admin.create_topics([NewTopic(name, partitions, 1, config=configs)])
        _await(futures[name])

    def list_topics(self) -> set[str]:
        return set(self.admin.list_topics(timeout=DEFAULT_WAIT_SECONDS).topics)

    def describe_topic(self, name: str) -> int:
        futures = self.admin.describe_topics(TopicCollection([name]))
        return len(_await(futures[name]).partitions)

    def delete_topic(self, name: str) -> None:
        _await(self.admin.delete_topics([name])[name])

    def create_partitions(self, name: str, total: int) -> None:
        _await(self.admin.create_partitions([NewPartitions(name, total)])[name])

    def describe_configs(self, topic: str) -> dict[str, str]:
        resource = ConfigResource("topic", topic)
        entries = _await(self.admin.describe_configs([resource])[resource])
        return {name: entry.value for name, entry in entries.items()}

    def alter_configs(self, topic: str, configs: dict[str, str]) -> None:
        resource = ConfigResource(
            "topic",
            topic,
            incremental_configs=[
                ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
                for name, value in configs.items()
            ],
        )
        _await(self.admin.incremental_alter_configs([resource])[resource])

    def list_groups(self) -> set[str]:
        listed = _await(self.admin.list_consumer_groups())
        return {group.group_id for group in listed.valid}

    def describe_group(self, group_id: str) -> GroupDescription:
        described = _await(self.admin.describe_consumer_groups([group_id])[group_id])
        return GroupDescription(
            state=_GROUP_STATE_NAMES.get(described.state, str(described.state)),
            member_count=len(described.members),
        )

    def delete_group(self, group_id: str) -> None:
        _await(self.admin.delete_consumer_groups([group_id])[group_id])
