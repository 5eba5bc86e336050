"""kafka-python adapter: the scenarios' primitives through kafka-python's public API."""

from __future__ import annotations

from typing import Any

import kafka.codec
import kafka.errors
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from compat_tests.clients.base import (
    DEFAULT_WAIT_SECONDS,
    Client,
    Member,
    record_from_python_client,
)
from compat_tests.kafka_errors import name_for_code
from compat_tests.model import (
    BrokerError,
    GroupDescription,
    NotExpressible,
    ProducerOptions,
    ReadResult,
    Record,
    Start,
)
from compat_tests.waiting import Deadline, WaitTimeout

# kafka-python needs an optional package per codec; without it the codec cannot be used.
_CODEC_PACKAGES = {
    "gzip": ("gzip", kafka.codec.has_gzip),
    "snappy": ("python-snappy", kafka.codec.has_snappy),
    "lz4": ("lz4", kafka.codec.has_lz4),
    "zstd": ("zstandard", kafka.codec.has_zstd),
}
_POLL_MS = 200


def _broker_error(exc: KafkaError) -> BrokerError | KafkaError:
    errno = getattr(exc, "errno", None)
    return BrokerError(name_for_code(errno), str(exc)) if errno is not None else exc

_to_record = record_from_python_client


class KafkaPythonMember(Member):
    def __init__(self, bootstrap: str, group_id: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group_id,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10000,
            heartbeat_interval_ms=500,
        )
        self.topic = topic

    def poll(self, timeout: float) -> list[Record]:
        polled = self.consumer.poll(timeout_ms=int(timeout * 1000))
        return [_to_record(message) for batch in polled.values() for message in batch]

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def commit(self, offsets: dict[int, int] | None = None, metadata: str = "") -> None:
        if offsets is None:
            self.consumer.commit()
            return
        self.consumer.commit(
            {
                TopicPartition(self.topic, partition): OffsetAndMetadata(offset, metadata, -1)
                for partition, offset in offsets.items()
            }
        )

    def committed(self, partitions: list[int]) -> dict[int, tuple[int | None, str]]:
        result: dict[int, tuple[int | None, str]] = {}
        for partition in partitions:
            found = self.consumer.committed(TopicPartition(self.topic, partition), metadata=True)
            result[partition] = (
                (None, "") if found is None else (found.offset, found.metadata or "")
            )
        return result

    def close(self) -> None:
        self.consumer.close(autocommit=False)


class KafkaPythonClient(Client):
    name = "kafka-python"

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self._admin: KafkaAdminClient | None = None

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()

    @property
    def admin(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        return self._admin

    # -- producing -----------------------------------------------------------------

    def _producer(self, options: ProducerOptions, **extra: Any) -> KafkaProducer:
        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "acks": "all",
            "enable_idempotence": options.idempotent,
            "linger_ms": 5,
        }
        if options.compression != "none":
            package, available = _CODEC_PACKAGES[options.compression]
            if not available():
                raise NotExpressible(
                    f"kafka-python needs the optional '{package}' package for "
                    f"{options.compression}; it is not installed"
                )
            settings["compression_type"] = options.compression
        if options.max_request_bytes:
            settings["max_request_size"] = options.max_request_bytes
        settings.update(extra)
        return KafkaProducer(**settings)

    @staticmethod
    def _send(producer: KafkaProducer, topic: str, record: Record) -> Any:
        return producer.send(
            topic,
            key=record.key,
            value=record.value,
            headers=list(record.headers),
            partition=record.partition,
            timestamp_ms=record.timestamp,
        )

    def produce(
        self, topic: str, batches: list[list[Record]], options: ProducerOptions
    ) -> list[list[tuple[int, int]]]:
        producer = self._producer(options)
        try:
            acks = []
            for batch in batches:
                futures = [self._send(producer, topic, record) for record in batch]
                producer.flush()
                batch_acks = []
                for future in futures:
                    try:
                        metadata = future.get(timeout=DEFAULT_WAIT_SECONDS)
                    except KafkaError as exc:
                        raise _broker_error(exc) from exc
                    batch_acks.append((metadata.partition, metadata.offset))
                acks.append(batch_acks)
            return acks
        finally:
            producer.close()

    def produce_transactions(
        self, topic: str, transactional_id: str, transactions: list[tuple[list[Record], bool]]
    ) -> None:
        producer = self._producer(
            ProducerOptions(idempotent=True), transactional_id=transactional_id
        )
        try:
            producer.init_transactions()
            for records, commit in transactions:
                producer.begin_transaction()
                for record in records:
                    self._send(producer, topic, record)
                producer.flush()
                if commit:
                    producer.commit_transaction()
                else:
                    producer.abort_transaction()
        finally:
            producer.close()

    # -- consuming -----------------------------------------------------------------

    def _reader(self, isolation: str) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level=isolation,
            auto_offset_reset="earliest",
        )

    def _read_until(
        self,
        consumer: KafkaConsumer,
        ends: dict[TopicPartition, int],
        max_records: int | None,
    ) -> list[Record]:
        records: list[Record] = []
        deadline = Deadline(DEFAULT_WAIT_SECONDS)
        while max_records is None or len(records) < max_records:
            if all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
            if deadline.expired():
                positions = {tp.partition: consumer.position(tp) for tp in ends}
                raise WaitTimeout(
                    f"read {len(records)} records; positions {positions} never reached "
                    f"ends { {tp.partition: end for tp, end in ends.items()} }"
                )
            remaining = None if max_records is None else max_records - len(records)
            polled = consumer.poll(timeout_ms=_POLL_MS, max_records=remaining)
            records.extend(_to_record(m) for batch in polled.values() for m in batch)
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
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            if start.kind == "beginning":
                consumer.seek_to_beginning(tp)
            elif start.kind == "end":
                consumer.seek_to_end(tp)
            elif start.kind == "offset":
                consumer.seek(tp, start.value)
            else:
                found = consumer.offsets_for_times({tp: start.value})[tp]
                if found is None:
                    consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, found.offset)
            end = consumer.end_offsets([tp])[tp]
            records = self._read_until(consumer, {tp: end}, max_records)
            return ReadResult(records, consumer.position(tp))
        finally:
            consumer.close()

    def read_all(self, topic: str, isolation: str = "read_uncommitted") -> list[Record]:
        consumer = self._reader(isolation)
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            return self._read_until(consumer, consumer.end_offsets(tps), None)
        finally:
            consumer.close()

    def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        consumer = self._reader("read_uncommitted")
        try:
            tp = TopicPartition(topic, partition)
            return consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
        finally:
            consumer.close()

    def offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        consumer = self._reader("read_uncommitted")
        try:
            tp = TopicPartition(topic, partition)
            found = consumer.offsets_for_times({tp: timestamp})[tp]
            return None if found is None else found.offset
        finally:
            consumer.close()

    def group_member(self, group_id: str, topic: str) -> Member:
        return KafkaPythonMember(self.bootstrap, group_id, topic)

    # -- admin ---------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        try:
            self.admin.create_topics(
                {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs}}
            )
        except KafkaError as exc:
            raise _broker_error(exc) from exc

    def list_topics(self) -> set[str]:
        return set(self.admin.list_topics())

    def describe_topic(self, name: str) -> int:
        (described,) = self.admin.describe_topics([name])
        if described.get("error_code"):
            raise BrokerError(name_for_code(described["error_code"]), name)
        return len(described["partitions"])

    def delete_topic(self, name: str) -> None:
        try:
            self.admin.delete_topics([name])
        except KafkaError as exc:
            raise _broker_error(exc) from exc

    def create_partitions(self, name: str, total: int) -> None:
        try:
            self.admin.create_partitions({name: total})
        except KafkaError as exc:
            raise _broker_error(exc) from exc

    def describe_configs(self, topic: str) -> dict[str, str]:
        answer = self.admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
        (by_name,) = answer.values()
        entries = by_name[topic]
        return {key: data.get("value") for key, data in entries.items()}

    def alter_configs(self, topic: str, configs: dict[str, str]) -> None:
        self.admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])

    def list_groups(self) -> set[str]:
        return {group["group_id"] for group in self.admin.list_groups()}

    def describe_group(self, group_id: str) -> GroupDescription:
        described = self.admin.describe_groups([group_id])[group_id]
        return GroupDescription(
            state=described["group_state"], member_count=len(described["members"])
        )

    def delete_group(self, group_id: str) -> None:
        # kafka-python 3.0.12 answers {group_id: "OK" or the name of its error class}.
        outcome = self.admin.delete_groups([group_id]).get(group_id, "no answer for the group")
        if outcome != "OK":
            error_class = getattr(kafka.errors, str(outcome), None)
            errno = getattr(error_class, "errno", None)
            if errno is None:
                raise KafkaError(f"deleting group {group_id}: {outcome}")
            raise BrokerError(name_for_code(errno), f"deleting group {group_id}: {outcome}")
