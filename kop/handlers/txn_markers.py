"""WriteTxnMarkers (key 27) v0-1: write commit/abort markers into partitions this broker owns.

In Kafka this is how a transaction coordinator has partition leaders on other brokers write
the markers that end a transaction; kop's coordinator does the same in cluster mode when a
partition of the transaction is owned by another broker (kop/cluster/markers.py sends it).
Each partition is answered on its own: NONE once its marker is durable, NOT_LEADER_OR_FOLLOWER
if this broker does not own it (the sender looks for the owner again),
UNKNOWN_TOPIC_OR_PARTITION if it does not exist, INVALID_PRODUCER_EPOCH if the partition has
seen a newer epoch of the producer (the marker is obsolete), TRANSACTION_COORDINATOR_FENCED if
it has had a marker for the producer from a newer coordinator epoch (the sender has been
replaced as the id's coordinator).

A marker for a `__consumer_offsets` partition ends the producer's offsets sent in the
transaction (TxnOffsetCommit): the group coordinator commits or drops them for every group
of that partition, durably, before NONE is answered. NOT_COORDINATOR or
COORDINATOR_LOAD_IN_PROGRESS say the partition is not (yet) served here; the sender retries.

Kafka allows this API only to brokers (CLUSTER_ACTION); kop has no ACLs, so it answers any
client, like every other API. Registered by kop.cluster.runner: only cluster brokers offer it.
"""

from __future__ import annotations

import logging

from twisted.internet import defer

from kop.errors import KafkaError
from kop.groups import OFFSETS_TOPIC
from kop.handlers.common import owned_partition
from kop.handlers.registry import handles
from wire.generated.error_codes import ErrorCode
from wire.messages import WriteTxnMarkersRequest, WriteTxnMarkersResponse

log = logging.getLogger(__name__)

WRITE_TXN_MARKERS_KEY = 27

PartitionResult = WriteTxnMarkersResponse.WritableTxnMarkerPartitionResult
TopicResult = WriteTxnMarkersResponse.WritableTxnMarkerTopicResult
MarkerResult = WriteTxnMarkersResponse.WritableTxnMarkerResult


async def write_local_marker(broker, topic: str, partition: int, producer_id: int,
                             producer_epoch: int, commit: bool,
                             coordinator_epoch: int = 0) -> ErrorCode:
    """Append one marker to a partition this broker owns (or, for an offsets partition,
    complete the producer's transactional offsets there); the error code to answer."""
    try:
        if topic == OFFSETS_TOPIC:
            await _complete_offsets(broker, partition, producer_id, commit)
            return ErrorCode.NONE
        partition_log = await owned_partition(broker, topic, partition)
        await partition_log.append_marker(producer_id, producer_epoch, commit, coordinator_epoch)
    except KafkaError as exc:
        return exc.code
    except Exception:
        log.exception("writing a transaction marker to %s-%d failed", topic, partition)
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return ErrorCode.NONE


async def _complete_offsets(broker, partition: int, producer_id: int, commit: bool) -> None:
    groups = broker.groups
    if not 0 <= partition < groups.partition_count:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                         f"{OFFSETS_TOPIC}-{partition} does not exist")
    await groups.complete_transactions_in_partition(partition, producer_id, commit)


async def _topic_result(broker, marker: WriteTxnMarkersRequest.WritableTxnMarker,
                        topic: WriteTxnMarkersRequest.WritableTxnMarkerTopic) -> TopicResult:
    codes = await defer.gatherResults([
        defer.ensureDeferred(write_local_marker(
            broker, topic.name, index, marker.producer_id, marker.producer_epoch,
            marker.transaction_result, marker.coordinator_epoch))
        for index in topic.partition_indexes])
    return TopicResult(name=topic.name, partitions=[
        PartitionResult(partition_index=index, error_code=code)
        for index, code in zip(topic.partition_indexes, codes, strict=True)])


async def _write_markers(ctx, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse:
    results = []
    for marker in request.markers:
        topics = [await _topic_result(ctx.broker, marker, topic) for topic in marker.topics]
        results.append(MarkerResult(producer_id=marker.producer_id, topics=topics))
    return WriteTxnMarkersResponse(markers=results)


@handles(WRITE_TXN_MARKERS_KEY, 0, 1)
def handle_write_txn_markers(ctx, request) -> defer.Deferred[WriteTxnMarkersResponse]:
    return defer.ensureDeferred(_write_markers(ctx, request))
