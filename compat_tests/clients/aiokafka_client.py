"""aiokafka adapter: the scenarios' primitives through aiokafka's public asyncio API.

The scenarios are synchronous; this adapter owns one event loop running on a thread
of its own, and runs each primitive to completion on it. Group members keep their
background tasks (heartbeats, rebalances) on that loop, so they run all the time,
as in an asyncio application, and several threads may call primitives at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

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

T = TypeVar("T")
_POLL_MS = 200


def _broker_error(exc: KafkaError) -> Exception:
    errno = getattr(exc, "errno", None)
    return BrokerError(name_for_code(errno), str(exc)) if errno is not None else exc


def _check_error_code(code: int, what: str) -> None:
    if code:
        raise BrokerError(name_for_code(code), what)

_to_record = record_from_python_client


class AIOKafkaMember(Member):
    def __init__(self, client: AIOKafkaClient, group_id: str, topic: str) -> None:
        self.client = client
        self.group_id = group_id
        self.topic = topic
        self.consumer = client.construct(
            lambda: AIOKafkaConsumer(
                topic,
                bootstrap_servers=client.bootstrap,
                group_id=group_id,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                session_timeout_ms=10000,
                heartbeat_interval_ms=500,
            )
        )
        client.run(self.consumer.start())

    def poll(self, timeout: float) -> list[Record]:
        polled = self.client.run(self.consumer.getmany(timeout_ms=int(timeout * 1000)))
        return [_to_record(message) for batch in polled.values() for message in batch]

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def commit(self, offsets: dict[int, int] | None = None, metadata: str = "") -> None:
        if offsets is None:
            self.client.run(self.consumer.commit())
            return
        self.client.run(
            self.consumer.commit(
                {
                    TopicPartition(self.topic, p): OffsetAndMetadata(offset, metadata)
                    for p, offset in offsets.items()
                }
            )
        )

    def committed(self, partitions: list[int]) -> dict[int, tuple[int | None, str]]:
        # The consumer's committed() returns no metadata; the admin API's listing does.
        listed = self.client.run(self.client.admin().list_consumer_group_offsets(self.group_id))
        result: dict[int, tuple[int | None, str]] = {p: (None, "") for p in partitions}
        for tp, found in listed.items():
            if tp.topic == self.topic and tp.partition in result:
                result[tp.partition] = (found.offset, found.metadata or "")
        return result

    def close(self) -> None:
        self.client.run(self.consumer.stop())


class AIOKafkaClient(Client):
    name = "aiokafka"
    unsupported: ClassVar[dict[str, str]] = {
        "delete_group": "aiokafka's admin client has no delete_consumer_groups",
    }

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self.loop.run_forever, name="aiokafka-loop", daemon=True
        )
        self._loop_thread.start()
        self._admin: AIOKafkaAdminClient | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        bounded = asyncio.wait_for(coroutine, timeout=DEFAULT_WAIT_SECONDS)
        return asyncio.run_coroutine_threadsafe(bounded, self.loop).result()

    def construct(self, factory: Callable[[], T]) -> T:
        """aiokafka objects must be created inside their event loop."""

        async def create() -> T:
            return factory()

        return self.run(create())

    def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            self._admin = self.construct(
                lambda: AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            )
            self.run(self._admin.start())
        return self._admin

    def close(self) -> None:
        try:
            if self._admin is not None:
                self.run(self._admin.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._loop_thread.join(timeout=DEFAULT_WAIT_SECONDS)
            self.loop.close()

    # -- producing -----------------------------------------------------------------

    def _producer(self, options: ProducerOptions, **extra: Any) -> AIOKafkaProducer:
        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "acks": "all",
            "linger_ms": 5,
            "enable_idempotence": options.idempotent,
        }
        if options.compression != "none":
            settings["compression_type"] = options.compression
        if options.max_request_bytes:
            settings["max_request_size"] = options.max_request_bytes
        settings.update(extra)
        return AIOKafkaProducer(**settings)

    @staticmethod
    async def _send(producer: AIOKafkaProducer, topic: str, record: Record) -> Any:
        return await producer.send(
            topic,
            key=record.key,
            value=record.value,
            headers=list(record.headers),
            partition=record.partition,
            timestamp_ms=record.timestamp,
        )

    async def _produce(
        self, topic: str, batches: list[list[Record]], options: ProducerOptions
    ) -> list[list[tuple[int, int]]]:
        producer = self._producer(options)
        await producer.start()
        try:
            acks = []
            for batch in batches:
                futures = [await self._send(producer, topic, record) for record in batch]
                await producer.flush()
                batch_acks = []
                for future in futures:
                    try:
                        metadata = await future
                    except KafkaError as exc:
                        raise _broker_error(exc) from exc
                    batch_acks.append((metadata.partition, metadata.offset))
                acks.append(batch_acks)
            return acks
        finally:
            await producer.stop()

    def produce(
        self, topic: str, batches: list[list[Record]], options: ProducerOptions
    ) -> list[list[tuple[int, int]]]:
        return self.run(self._produce(topic, batches, options))

    async def _transactions(
        self, topic: str, transactional_id: str, transactions: list[tuple[list[Record], bool]]
    ) -> None:
        producer = self._producer(
            ProducerOptions(idempotent=True), transactional_id=transactional_id
        )
        await producer.start()
        try:
            for records, commit in transactions:
                await producer.begin_transaction()
                for record in records:
                    await self._send(producer, topic, record)
                await producer.flush()
                if commit:
                    await producer.commit_transaction()
                else:
                    await producer.abort_transaction()
        finally:
            await producer.stop()

    def produce_transactions(
        self, topic: str, transactional_id: str, transactions: list[tuple[list[Record], bool]]
    ) -> None:
        self.run(self._transactions(topic, transactional_id, transactions))

    # -- consuming -----------------------------------------------------------------

    async def _reader(self, isolation: str, *topics: str) -> AIOKafkaConsumer:
        """A consumer outside any group; given `topics`, it subscribes to them and
        starts with every partition of each assigned (aiokafka's no-group mode)."""
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level=isolation,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        return consumer

    @staticmethod
    async def _read_until(
        consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], max_records: int | None
    ) -> list[Record]:
        records: list[Record] = []
        deadline = Deadline(DEFAULT_WAIT_SECONDS - 2)
        while max_records is None or len(records) < max_records:
            positions = {tp: await consumer.position(tp) for tp in ends}
            if all(positions[tp] >= end for tp, end in ends.items()):
                break
            if deadline.expired():
                raise WaitTimeout(
                    f"read {len(records)} records; positions "
                    f"{ {tp.partition: pos for tp, pos in positions.items()} } never reached ends "
                    f"{ {tp.partition: end for tp, end in ends.items()} }"
                )
            remaining = None if max_records is None else max_records - len(records)
            polled = await consumer.getmany(timeout_ms=_POLL_MS, max_records=remaining)
            records.extend(_to_record(m) for batch in polled.values() for m in batch)
        return records

    async def _read(
        self, topic: str, partition: int, start: Start, max_records: int | None, isolation: str
    ) -> ReadResult:
        consumer = await self._reader(isolation)
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            if start.kind == "beginning":
                await consumer.seek_to_beginning(tp)
            elif start.kind == "end":
                await consumer.seek_to_end(tp)
            elif start.kind == "offset":
                consumer.seek(tp, start.value)
            else:
                found = (await consumer.offsets_for_times({tp: start.value}))[tp]
                if found is None:
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, found.offset)
            end = (await consumer.end_offsets([tp]))[tp]
            records = await self._read_until(consumer, {tp: end}, max_records)
            return ReadResult(records, await consumer.position(tp))
        finally:
            await consumer.stop()

    def read(
        self,
        topic: str,
        partition: int,
        start: Start,
        max_records: int | None = None,
        isolation: str = "read_uncommitted",
    ) -> ReadResult:
        return self.run(self._read(topic, partition, start, max_records, isolation))

    async def _read_all(self, topic: str, isolation: str) -> list[Record]:
        # Subscribing is how an aiokafka application learns a topic's partitions: start()
        # requests metadata for the subscribed topic and assigns all of its partitions.
        # (topics() would not do: it fetches metadata into a separate cluster object, so
        # partitions_for_topic() only knew the topic if the bootstrap metadata listed it.)
        consumer = await self._reader(isolation, topic)
        try:
            tps = sorted(consumer.assignment())
            if not tps:
                raise WaitTimeout(f"subscribing to {topic} assigned no partitions")
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            return await self._read_until(consumer, ends, None)
        finally:
            await consumer.stop()

    def read_all(self, topic: str, isolation: str = "read_uncommitted") -> list[Record]:
        return self.run(self._read_all(topic, isolation))

    async def _offsets(self, topic: str, partition: int) -> tuple[int, int]:
        consumer = await self._reader("read_uncommitted")
        try:
            tp = TopicPartition(topic, partition)
            return (
                (await consumer.beginning_offsets([tp]))[tp],
                (await consumer.end_offsets([tp]))[tp],
            )
        finally:
            await consumer.stop()

    def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        return self.run(self._offsets(topic, partition))

    async def _offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        consumer = await self._reader("read_uncommitted")
        try:
            tp = TopicPartition(topic, partition)
            found = (await consumer.offsets_for_times({tp: timestamp}))[tp]
            return None if found is None else found.offset
        finally:
            await consumer.stop()

    def offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        return self.run(self._offset_for_time(topic, partition, timestamp))

    def group_member(self, group_id: str, topic: str) -> Member:
        return AIOKafkaMember(self, group_id, topic)

    # -- admin ---------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        response = self.run(
            self.admin().create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
        )
        for error in response.topic_errors:
            _check_error_code(error[1], f"creating {name}")

    def list_topics(self) -> set[str]:
        return set(self.run(self.admin().list_topics()))

    def describe_topic(self, name: str) -> int:
        (described,) = self.run(self.admin().describe_topics([name]))
        _check_error_code(described["error_code"], f"describing {name}")
        return len(described["partitions"])

    def delete_topic(self, name: str) -> None:
        response = self.run(self.admin().delete_topics([name]))
        for _topic, code, *_rest in response.topic_error_codes:
            _check_error_code(code, f"deleting {name}")

    def create_partitions(self, name: str, total: int) -> None:
        try:
            response = self.run(self.admin().create_partitions({name: NewPartitions(total)}))
        except KafkaError as exc:
            raise _broker_error(exc) from exc
        for _topic, code, *_rest in response.topic_errors:
            _check_error_code(code, f"adding partitions to {name}")

    def describe_configs(self, topic: str) -> dict[str, str]:
        (response,) = self.run(
            self.admin().describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        )
        (resource,) = response.to_object()["resources"]
        _check_error_code(resource["error_code"], f"describing configs of {topic}")
        return {e["config_names"]: e["config_value"] for e in resource["config_entries"]}

    def alter_configs(self, topic: str, configs: dict[str, str]) -> None:
        (response,) = self.run(
            self.admin().alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)]
            )
        )
        for resource in response.to_object()["resources"]:
            _check_error_code(resource["error_code"], f"altering configs of {topic}")

    def list_groups(self) -> set[str]:
        return {group_id for group_id, *_rest in self.run(self.admin().list_consumer_groups())}

    def describe_group(self, group_id: str) -> GroupDescription:
        (response,) = self.run(self.admin().describe_consumer_groups([group_id]))
        (group,) = response.to_object()["groups"]
        _check_error_code(group["error_code"], f"describing group {group_id}")
        return GroupDescription(state=group["state"], member_count=len(group["members"]))

    def delete_group(self, group_id: str) -> None:
        raise NotExpressible("aiokafka's admin client has no delete_consumer_groups")
