"""Produce (key 0) v0-11.

Each partition's records are validated (header rules, CRC-32C, `max.message.bytes`),
stamped with offsets and appended to the partition's managed ledger as one entry. acks=1 and
acks=-1 are both answered only once the entry is durable on the ack quorum of storage nodes
(kop has no follower brokers: durability is the storage tier's quorum). acks=0 gets no
response; as in Kafka, an error on an acks=0 produce closes the connection so the client
notices and refreshes its metadata.

Errors are per partition (the others still succeed): UNKNOWN_TOPIC_OR_PARTITION,
NOT_LEADER_OR_FOLLOWER, CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE,
OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH; a retried idempotent batch is answered
with its original offset. Topics are auto-created on produce when allowed. v0-v2 carry legacy
message sets (magic 0/1), converted to one v2 batch before storing. Transactional batches
are stored like any other; as in Kafka before KIP-890, kop does not check that the partition
was added to the producer's transaction.
"""

from __future__ import annotations

import logging

from twisted.internet import defer
from twisted.python.failure import Failure

from kop.errors import KafkaError, error_code_of
from kop.handlers.common import owned_partition
from kop.handlers.registry import handles
from kop.partition_log import AppendResult, PartitionLog
from wire.generated.error_codes import ErrorCode
from wire.messages import ProduceResponse

log = logging.getLogger(__name__)

PRODUCE_KEY = 0
PartitionResponse = ProduceResponse.PartitionProduceResponse


def _fill_success(result: AppendResult, response: PartitionResponse) -> None:
    response.error_code = ErrorCode.NONE
    response.base_offset = result.base_offset
    response.log_append_time_ms = result.log_append_time
    response.log_start_offset = result.log_start_offset


def _fill_error(response: PartitionResponse, error: BaseException) -> None:
    response.error_code = error_code_of(error)
    response.base_offset = -1
    if isinstance(error, KafkaError):
        response.error_message = error.message


async def _append_when_open(ctx, topic: str, partition: int, records: bytes) -> AppendResult:
    await ctx.broker.ensure_topic(topic, auto_create=True)
    partition_log = await owned_partition(ctx.broker, topic, partition)
    return await _append(ctx, partition_log, records)


def _append(ctx, partition_log: PartitionLog, records: bytes) -> defer.Deferred[AppendResult]:
    return partition_log.append(records)


@handles(PRODUCE_KEY, 0, 11)
def handle_produce(ctx, request) -> ProduceResponse | defer.Deferred[ProduceResponse] | None:
    broker = ctx.broker
    topics = []
    waiting: list[defer.Deferred] = []
    errors = 0
    acks = request.acks

    for topic_data in request.topic_data:
        partitions = []
        topics.append(ProduceResponse.TopicProduceResponse(
            name=topic_data.name, partition_responses=partitions))
        for data in topic_data.partition_data:
            response = PartitionResponse(index=data.index, error_code=ErrorCode.NONE,
                                         base_offset=-1, log_append_time_ms=-1,
                                         log_start_offset=-1)
            partitions.append(response)
            if acks not in (0, 1, -1):
                _fill_error(response, KafkaError(ErrorCode.INVALID_REQUIRED_ACKS))
                errors += 1
                continue
            if data.records is None:
                _fill_error(response, KafkaError(ErrorCode.INVALID_RECORD, "records are null"))
                errors += 1
                continue
            try:
                partition_log = broker.partitions.cached(topic_data.name, data.index)
                if partition_log is not None and broker.owns(topic_data.name, data.index):
                    appended = _append(ctx, partition_log, data.records)
                else:
                    appended = defer.ensureDeferred(
                        _append_when_open(ctx, topic_data.name, data.index, data.records))
            except KafkaError as exc:
                _fill_error(response, exc)
                errors += 1
                continue
            waiting.append(appended.addCallbacks(
                _fill_success, _record_failure, callbackArgs=(response,), errbackArgs=(response,)))

    result = ProduceResponse(responses=topics, throttle_time_ms=0)
    if acks == 0:
        if errors:
            ctx.connection.close_for_bad_input("acks=0 produce failed (Kafka closes the connection)")
        elif waiting:
            defer.gatherResults(waiting).addCallback(
                lambda _: _close_if_failed(ctx, topics))
        return None
    if not waiting:
        return result
    return defer.gatherResults(waiting).addCallback(lambda _: result)


def _record_failure(failure: Failure, response: PartitionResponse) -> None:
    if not isinstance(failure.value, KafkaError):
        log.error("produce failed unexpectedly: %s", failure.getTraceback())
    _fill_error(response, failure.value)


def _close_if_failed(ctx, topics) -> None:
    for topic in topics:
        for partition in topic.partition_responses:
            if partition.error_code != ErrorCode.NONE:
                ctx.connection.close_for_bad_input(
                    "acks=0 produce failed (Kafka closes the connection)")
                return
