"""AddPartitionsToTxn (key 24) v0-3, AddOffsetsToTxn (key 25) v0-3, EndTxn (key 26) v0-4.

The client side of transactions, answered by kop's transaction coordinator (kop/transactions.py;
InitProducerId with a transactional id is in producer_ids.py). AddPartitionsToTxn v4+ is
Kafka's broker-to-broker verification form and EndTxn v5 bumps the epoch per transaction
(KIP-890 part 2); neither is offered. Fencing is answered with PRODUCER_FENCED, or with
INVALID_PRODUCER_EPOCH for the request versions that predate it (KIP-588).
"""

from __future__ import annotations

from twisted.internet import defer

from kop.errors import KafkaError
from kop.handlers.registry import handles
from wire.generated.error_codes import ErrorCode
from wire.messages import AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, EndTxnResponse

ADD_PARTITIONS_TO_TXN_KEY = 24
ADD_OFFSETS_TO_TXN_KEY = 25
END_TXN_KEY = 26


def fencing_code(exc: KafkaError, version: int, first_version_with_fenced: int) -> ErrorCode:
    """PRODUCER_FENCED as older clients know it."""
    if exc.code == ErrorCode.PRODUCER_FENCED and version < first_version_with_fenced:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return exc.code


def _coordinator(ctx):
    coordinator = ctx.broker.transactions
    if coordinator is None:
        raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "transactions are not enabled")
    return coordinator


async def _add_partitions(ctx, request) -> AddPartitionsToTxnResponse:
    broker = ctx.broker
    wanted: list[tuple[str, int]] = []
    codes: dict[tuple[str, int], ErrorCode] = {}
    for topic in request.v3_and_below_topics:
        info = await broker.topics.lookup(topic.name)
        for partition in topic.partitions:
            wanted.append((topic.name, partition))
            if info is None or not 0 <= partition < info.partitions:
                codes[(topic.name, partition)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if codes:
        # Kafka adds nothing when any partition is bad; the others are "not attempted".
        for key in wanted:
            codes.setdefault(key, ErrorCode.OPERATION_NOT_ATTEMPTED)
    else:
        code = await _outcome(ctx, lambda coordinator: coordinator.add_partitions(
            request.v3_and_below_transactional_id, request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch, wanted))
        codes = dict.fromkeys(wanted, code)

    by_topic: dict[str, list] = {}
    for (topic, partition), code in codes.items():
        by_topic.setdefault(topic, []).append(
            AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult(
                partition_index=partition, partition_error_code=code))
    return AddPartitionsToTxnResponse(throttle_time_ms=0, results_by_topic_v3_and_below=[
        AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult(name=name, results_by_partition=parts)
        for name, parts in by_topic.items()])


@handles(ADD_PARTITIONS_TO_TXN_KEY, 0, 3)
def handle_add_partitions_to_txn(ctx, request) -> defer.Deferred[AddPartitionsToTxnResponse]:
    return defer.ensureDeferred(_add_partitions(ctx, request))


async def _outcome(ctx, action) -> ErrorCode:
    """The error code of one coordinator call, as this request version names it."""
    try:
        await action(_coordinator(ctx))
    except KafkaError as exc:
        return fencing_code(exc, ctx.api_version, 2)
    return ErrorCode.NONE


async def _add_offsets(ctx, request) -> AddOffsetsToTxnResponse:
    code = await _outcome(ctx, lambda coordinator: coordinator.add_group(
        request.transactional_id, request.producer_id, request.producer_epoch, request.group_id))
    return AddOffsetsToTxnResponse(throttle_time_ms=0, error_code=code)


@handles(ADD_OFFSETS_TO_TXN_KEY, 0, 3)
def handle_add_offsets_to_txn(ctx, request) -> defer.Deferred[AddOffsetsToTxnResponse]:
    return defer.ensureDeferred(_add_offsets(ctx, request))


async def _end_txn(ctx, request) -> EndTxnResponse:
    code = await _outcome(ctx, lambda coordinator: coordinator.end_transaction(
        request.transactional_id, request.producer_id, request.producer_epoch,
        request.committed))
    return EndTxnResponse(throttle_time_ms=0, error_code=code)


@handles(END_TXN_KEY, 0, 4)
def handle_end_txn(ctx, request) -> defer.Deferred[EndTxnResponse]:
    return defer.ensureDeferred(_end_txn(ctx, request))
