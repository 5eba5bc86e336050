"""Handlers through Twisted's in-memory transport, over a real in-process storage stack
(embedded metadata store and storage node in a temporary directory)."""

from __future__ import annotations

import struct

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from kop.broker import Broker, BrokerConfig
from kop.configs import BROKER_DEFAULTS
from kop.server import ConnectionLimits, KafkaConnection
from storage.ledger import LedgerClient, NodePool
from storage.managed_ledger import ManagedLedgerFactory
from storage.metadata import open_metadata_store
from storage.node import LocalStorageNodeClient, StorageNode
from wire.generated.error_codes import ErrorCode
from wire.messages import (
    CreateTopicsRequest,
    FetchRequest,
    ListOffsetsRequest,
    MetadataRequest,
    ProduceRequest,
)
from wire.protocol import RequestHeader, decode_response, encode_request
from wire.records.batch import iter_batches
from wire.records.record import BatchBuilder, decode_batch

PRODUCE, FETCH, LIST_OFFSETS, METADATA, CREATE_TOPICS = 0, 1, 2, 3, 19


class RecordingTransport(StringTransport):
    """A StringTransport that tells waiters when response bytes arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: list[defer.Deferred] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.callback(None)


class Client:
    def __init__(self, broker: Broker) -> None:
        self.transport = RecordingTransport()
        self.connection = KafkaConnection(broker, ConnectionLimits())
        self.connection.makeConnection(self.transport)
        self._correlation = 0

    def send(self, api_key: int, version: int, message) -> int:
        self._correlation += 1
        self.connection.dataReceived(encode_request(
            RequestHeader(api_key, version, self._correlation, "handler-test"), message))
        return self._correlation

    async def response(self, api_key: int, version: int):
        while len(self.transport.value()) < 4 or len(self.transport.value()) < 4 + struct.unpack_from(
                ">i", self.transport.value())[0]:
            waiter = defer.Deferred()
            self.transport.waiters.append(waiter)
            await waiter
        data = self.transport.value()
        size = struct.unpack_from(">i", data)[0]
        frame, rest = data[4:4 + size], data[4 + size:]
        self.transport.clear()
        self.transport.io.write(rest)
        return decode_response(frame, api_key, version)[1]

    async def call(self, api_key: int, version: int, message):
        self.send(api_key, version, message)
        return await self.response(api_key, version)


@pytest.fixture
def broker(tmp_path):
    settings = dict(BROKER_DEFAULTS, **{"auto.create.topics.enable": "false"})

    async def start() -> tuple[Broker, StorageNode, object]:
        store = open_metadata_store(str(tmp_path / "metadata"))
        node = await StorageNode.open(tmp_path / "storage")
        ledgers = ManagedLedgerFactory(store, LedgerClient(
            store, NodePool.for_local_node(LocalStorageNodeClient(node))))
        started = Broker(BrokerConfig(port=9092, settings=settings), store, ledgers)
        await started.start()
        return started, node, store

    started, node, store = pytest_twisted.blockon(defer.ensureDeferred(start()))
    yield started

    async def stop() -> None:
        await started.stop()
        await node.close()
        await store.close()

    pytest_twisted.blockon(defer.ensureDeferred(stop()))


def batch(*values: bytes) -> bytes:
    builder = BatchBuilder()
    for value in values:
        builder.append(value)
    return builder.build()


def produce_request(topic: str, partitions: dict[int, bytes], acks: int = -1) -> ProduceRequest:
    return ProduceRequest(transactional_id=None, acks=acks, timeout_ms=5000, topic_data=[
        ProduceRequest.TopicProduceData(name=topic, partition_data=[
            ProduceRequest.PartitionProduceData(index=index, records=records)
            for index, records in partitions.items()])])


def fetch_request(topic: str, offset: int, max_wait_ms: int = 0) -> FetchRequest:
    return FetchRequest(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1 << 20,
                        isolation_level=0, session_id=0, session_epoch=-1, topics=[
                            FetchRequest.FetchTopic(topic=topic, partitions=[
                                FetchRequest.FetchPartition(partition=0, fetch_offset=offset,
                                                            partition_max_bytes=1 << 20)])],
                        forgotten_topics_data=[], rack_id="")


async def create_topic(client: Client, name: str, partitions: int) -> None:
    response = await client.call(CREATE_TOPICS, 7, CreateTopicsRequest(topics=[
        CreateTopicsRequest.CreatableTopic(name=name, num_partitions=partitions,
                                           replication_factor=1)], timeout_ms=5000))
    assert response.topics[0].error_code == ErrorCode.NONE


@pytest_twisted.ensureDeferred
async def test_create_then_metadata_lists_the_topic(broker) -> None:
    client = Client(broker)
    await create_topic(client, "made", 3)
    response = await client.call(METADATA, 12, MetadataRequest(
        topics=[MetadataRequest.MetadataRequestTopic(name="made"),
                MetadataRequest.MetadataRequestTopic(name="missing")],
        allow_auto_topic_creation=True))
    made, missing = response.topics
    assert [p.partition_index for p in made.partitions] == [0, 1, 2]
    assert all(p.leader_id == 0 and p.leader_epoch == 0 for p in made.partitions)
    assert made.topic_id == broker.topics.get("made").topic_id
    # auto.create.topics.enable=false wins over the request's permission
    assert missing.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


@pytest_twisted.ensureDeferred
async def test_produce_then_fetch_returns_the_stored_batches_with_offsets(broker) -> None:
    client = Client(broker)
    await create_topic(client, "data", 1)
    first = await client.call(PRODUCE, 9, produce_request("data", {0: batch(b"a", b"b")}))
    second = await client.call(PRODUCE, 9, produce_request("data", {0: batch(b"c")}))
    assert first.responses[0].partition_responses[0].base_offset == 0
    assert second.responses[0].partition_responses[0].base_offset == 2

    fetched = (await client.call(FETCH, 11, fetch_request("data", 1))).responses[0].partitions[0]
    assert fetched.high_watermark == 3 and fetched.log_start_offset == 0
    records = [r for position, header in iter_batches(fetched.records)
               for r in decode_batch(fetched.records, position, header, max_size=1 << 20)]
    assert [(r.offset, r.value) for r in records] == [(0, b"a"), (1, b"b"), (2, b"c")]


@pytest_twisted.ensureDeferred
async def test_a_bad_partition_fails_alone(broker) -> None:
    client = Client(broker)
    await create_topic(client, "mixed", 2)
    damaged = bytearray(batch(b"x"))
    damaged[-1] ^= 0x01
    response = await client.call(PRODUCE, 9, produce_request(
        "mixed", {0: batch(b"good"), 1: bytes(damaged), 7: batch(b"nowhere")}))
    codes = {p.index: (p.error_code, p.base_offset) for p in response.responses[0].partition_responses}
    assert codes == {0: (ErrorCode.NONE, 0), 1: (ErrorCode.CORRUPT_MESSAGE, -1),
                     7: (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1)}


@pytest_twisted.ensureDeferred
async def test_acks_zero_stores_without_answering(broker) -> None:
    client = Client(broker)
    await create_topic(client, "quiet", 1)
    client.send(PRODUCE, 9, produce_request("quiet", {0: batch(b"silent")}, acks=0))
    latest = await client.call(LIST_OFFSETS, 7, ListOffsetsRequest(
        replica_id=-1, isolation_level=0, topics=[ListOffsetsRequest.ListOffsetsTopic(
            name="quiet", partitions=[ListOffsetsRequest.ListOffsetsPartition(
                partition_index=0, timestamp=-1)])]))
    # The only response is ListOffsets'; the acks=0 produce held its slot and wrote nothing.
    assert latest.topics[0].partitions[0].error_code == ErrorCode.NONE
    # The record becomes visible once durable: a waiting fetch is woken by it.
    fetched = (await client.call(FETCH, 11, fetch_request("quiet", 0, max_wait_ms=30_000))
               ).responses[0].partitions[0]
    assert fetched.high_watermark == 1 and fetched.records
    assert client.transport.value() == b""  # nothing was ever written for the produce


@pytest_twisted.ensureDeferred
async def test_fetch_out_of_range_and_list_offsets(broker) -> None:
    client = Client(broker)
    await create_topic(client, "ranges", 1)
    await client.call(PRODUCE, 9, produce_request("ranges", {0: batch(b"1", b"2", b"3")}))
    beyond = (await client.call(FETCH, 11, fetch_request("ranges", 4))).responses[0].partitions[0]
    assert beyond.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    offsets = await client.call(LIST_OFFSETS, 7, ListOffsetsRequest(
        replica_id=-1, isolation_level=0, topics=[ListOffsetsRequest.ListOffsetsTopic(
            name="ranges", partitions=[ListOffsetsRequest.ListOffsetsPartition(
                partition_index=0, timestamp=t) for t in (-2, -1)])]))
    assert [p.offset for p in offsets.topics[0].partitions] == [0, 3]
