"""ListOffsets (key 2) v0-10, OffsetForLeaderEpoch (key 23) v0-4, DeleteRecords (key 21) v0-2.

ListOffsets: timestamp -2 = earliest (log start offset), -1 = latest (high watermark, or the
last stable offset for read_committed), -3 = the record with the largest timestamp (v7+),
-4 = earliest local (v8+: the log start offset, kop has no remote tier yet), -5 = earliest
pending upload (v9+: none, offset -1); any other value finds the first record whose
timestamp is at or after it (offset -1 when there is none). v0 answers with the
old-style offset list.

OffsetForLeaderEpoch: the end offset of the requested epoch. A partition's leader epoch only
changes when another broker takes it over, and then the log continues without divergence, so
every epoch up to the current one ends at the log end offset.

DeleteRecords: moves the log start offset (-1 means the high watermark); whole ledgers
before it are deleted. Answers the new low watermark.
"""

from __future__ import annotations

from twisted.internet import defer

from kop.errors import KafkaError
from kop.handlers.common import owned_partition
from kop.handlers.registry import handles
from wire.generated.error_codes import ErrorCode
from wire.messages import DeleteRecordsResponse, ListOffsetsResponse, OffsetForLeaderEpochResponse

LIST_OFFSETS_KEY = 2
DELETE_RECORDS_KEY = 21
OFFSET_FOR_LEADER_EPOCH_KEY = 23

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
EARLIEST_PENDING_UPLOAD = -5
READ_COMMITTED = 1


async def _list_offset(ctx, request, topic: str, partition) -> ListOffsetsResponse.ListOffsetsPartitionResponse:
    broker = ctx.broker
    answer = ListOffsetsResponse.ListOffsetsPartitionResponse(
        partition_index=partition.partition_index, error_code=ErrorCode.NONE,
        timestamp=-1, offset=-1, leader_epoch=-1, old_style_offsets=[])
    try:
        log = await owned_partition(broker, topic, partition.partition_index)
        epoch = broker.leader_epoch_of(topic, partition.partition_index)
        wanted = partition.timestamp
        found: tuple[int, int] | None
        if wanted == LATEST:
            committed = ctx.api_version >= 2 and request.isolation_level == READ_COMMITTED
            found = (log.last_stable_offset if committed else log.high_watermark, -1)
        elif wanted in (EARLIEST, EARLIEST_LOCAL):
            found = (log.log_start_offset, -1)
        elif wanted == EARLIEST_PENDING_UPLOAD:
            found = None
        elif wanted == MAX_TIMESTAMP:
            found = await log.max_timestamp_offset()
        elif wanted < 0:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown special timestamp {wanted}")
        else:
            found = await log.offset_for_timestamp(wanted)
        if found is not None:
            answer.offset, answer.timestamp = found
            if ctx.api_version >= 4:
                answer.leader_epoch = epoch
        if ctx.api_version == 0:
            answer.old_style_offsets = [] if found is None else [found[0]]
    except KafkaError as exc:
        answer.error_code = exc.code
    return answer


async def _list_offsets(ctx, request) -> ListOffsetsResponse:
    topics = []
    for topic in request.topics:
        partitions = [await _list_offset(ctx, request, topic.name, p) for p in topic.partitions]
        topics.append(ListOffsetsResponse.ListOffsetsTopicResponse(name=topic.name,
                                                                   partitions=partitions))
    return ListOffsetsResponse(throttle_time_ms=0, topics=topics)


@handles(LIST_OFFSETS_KEY, 0, 10)
def handle_list_offsets(ctx, request) -> defer.Deferred[ListOffsetsResponse]:
    return defer.ensureDeferred(_list_offsets(ctx, request))


async def _epoch_end(ctx, topic: str, partition) -> OffsetForLeaderEpochResponse.EpochEndOffset:
    broker = ctx.broker
    answer = OffsetForLeaderEpochResponse.EpochEndOffset(
        error_code=ErrorCode.NONE, partition=partition.partition, leader_epoch=-1, end_offset=-1)
    try:
        log = await owned_partition(broker, topic, partition.partition)
        current = broker.leader_epoch_of(topic, partition.partition)
        requested_current = partition.current_leader_epoch if ctx.api_version >= 2 else -1
        if requested_current >= 0 and requested_current != current:
            raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH if requested_current < current
                             else ErrorCode.UNKNOWN_LEADER_EPOCH)
        if partition.leader_epoch <= current:
            answer.leader_epoch = partition.leader_epoch
            answer.end_offset = log.high_watermark
    except KafkaError as exc:
        answer.error_code = exc.code
    return answer


async def _offset_for_leader_epoch(ctx, request) -> OffsetForLeaderEpochResponse:
    topics = []
    for topic in request.topics:
        partitions = [await _epoch_end(ctx, topic.topic, p) for p in topic.partitions]
        topics.append(OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(
            topic=topic.topic, partitions=partitions))
    return OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=topics)


@handles(OFFSET_FOR_LEADER_EPOCH_KEY, 0, 4)
def handle_offset_for_leader_epoch(ctx, request) -> defer.Deferred[OffsetForLeaderEpochResponse]:
    return defer.ensureDeferred(_offset_for_leader_epoch(ctx, request))


async def _delete_one(ctx, topic: str, partition) -> DeleteRecordsResponse.DeleteRecordsPartitionResult:
    answer = DeleteRecordsResponse.DeleteRecordsPartitionResult(
        partition_index=partition.partition_index, low_watermark=-1, error_code=ErrorCode.NONE)
    try:
        log = await owned_partition(ctx.broker, topic, partition.partition_index)
        answer.low_watermark = await log.delete_records_before(partition.offset)
    except KafkaError as exc:
        answer.error_code = exc.code
    return answer


async def _delete_records(ctx, request) -> DeleteRecordsResponse:
    topics = []
    for topic in request.topics:
        partitions = [await _delete_one(ctx, topic.name, p) for p in topic.partitions]
        topics.append(DeleteRecordsResponse.DeleteRecordsTopicResult(name=topic.name,
                                                                     partitions=partitions))
    return DeleteRecordsResponse(throttle_time_ms=0, topics=topics)


@handles(DELETE_RECORDS_KEY, 0, 2)
def handle_delete_records(ctx, request) -> defer.Deferred[DeleteRecordsResponse]:
    return defer.ensureDeferred(_delete_records(ctx, request))
