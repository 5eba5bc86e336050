"""Metadata (key 3) v0-12 and DescribeCluster (key 60) v0-1.

Metadata lists the live brokers and, for the requested topics (all topics when the list is
null, none when it is empty), each partition with its owning broker as leader. Replicas and
ISR name the leader only: replication happens below, in the storage tier, not between
brokers. A missing topic is auto-created with `num.partitions` partitions when both the
request (v4+) and `auto.create.topics.enable` allow it; otherwise it is answered with
UNKNOWN_TOPIC_OR_PARTITION (or INVALID_TOPIC_EXCEPTION for an illegal name). v10+ topic ids
are stable across restarts (kept in the topic catalogue). Leader epochs are those of the
partition's owner (`Broker.leader_epoch_of`).
"""

from __future__ import annotations

import uuid

from twisted.internet import defer

from kop.errors import KafkaError
from kop.handlers.registry import handles
from kop.naming import validate_topic_name
from kop.topics import TopicInfo
from wire.generated.error_codes import ErrorCode
from wire.messages import DescribeClusterResponse, MetadataResponse

METADATA_KEY = 3
DESCRIBE_CLUSTER_KEY = 60
ZERO_UUID = uuid.UUID(int=0)
AUTHORIZED_OPERATIONS_UNKNOWN = -(2**31)
# ALTER, ALTER_CONFIGS, CREATE, DELETE, DESCRIBE, DESCRIBE_CONFIGS, READ, WRITE: kop has no ACLs.
ALL_TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))


def _topic_entry(broker, info: TopicInfo,
                 include_operations: bool) -> MetadataResponse.MetadataResponseTopic:
    partitions = []
    for index in range(info.partitions):
        leader = broker.leader_of(info.name, index)
        if leader is None:
            partitions.append(MetadataResponse.MetadataResponsePartition(
                error_code=ErrorCode.LEADER_NOT_AVAILABLE, partition_index=index, leader_id=-1,
                leader_epoch=-1, replica_nodes=[], isr_nodes=[], offline_replicas=[]))
            continue
        partitions.append(MetadataResponse.MetadataResponsePartition(
            error_code=ErrorCode.NONE, partition_index=index, leader_id=leader,
            leader_epoch=broker.leader_epoch_of(info.name, index),
            replica_nodes=[leader], isr_nodes=[leader], offline_replicas=[]))
    return MetadataResponse.MetadataResponseTopic(
        error_code=ErrorCode.NONE, name=info.name, topic_id=info.topic_id, is_internal=False,
        partitions=partitions,
        topic_authorized_operations=(
            ALL_TOPIC_OPERATIONS if include_operations else AUTHORIZED_OPERATIONS_UNKNOWN),
    )


def _error_entry(name: str | None, code: ErrorCode,
                 topic_id: uuid.UUID = ZERO_UUID) -> MetadataResponse.MetadataResponseTopic:
    return MetadataResponse.MetadataResponseTopic(
        error_code=code, name=name, topic_id=topic_id, is_internal=False, partitions=[])


async def _metadata(ctx, request) -> MetadataResponse:
    broker = ctx.broker
    version = ctx.api_version
    # v0: an empty list means all topics; v1+: null means all, empty means none.
    all_topics = request.topics is None or (version == 0 and not request.topics)
    allow_auto_create = request.allow_auto_topic_creation if version >= 4 else True
    operations = version >= 8 and request.include_topic_authorized_operations

    entries = []
    if all_topics:
        entries = [_topic_entry(broker, info, operations) for info in broker.topics.all()]
    else:
        for wanted in request.topics:
            name = wanted.name
            if name is None:  # v10+: by topic id
                info = broker.topics.by_id(wanted.topic_id)
                entries.append(_topic_entry(broker, info, operations) if info else _error_entry(
                    None, ErrorCode.UNKNOWN_TOPIC_ID, wanted.topic_id))
                continue
            try:
                validate_topic_name(name)
                info = await broker.ensure_topic(name, allow_auto_create)
            except KafkaError as exc:
                entries.append(_error_entry(name, exc.code))
                continue
            if info is None:
                entries.append(_error_entry(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
            else:
                entries.append(_topic_entry(broker, info, operations))

    brokers = [
        MetadataResponse.MetadataResponseBroker(
            node_id=b.node_id, host=b.host, port=b.port, rack=b.rack)
        for b in broker.live_brokers()
    ]
    return MetadataResponse(
        throttle_time_ms=0, brokers=brokers, cluster_id=broker.cluster_id,
        controller_id=broker.controller_id(), topics=entries,
        cluster_authorized_operations=AUTHORIZED_OPERATIONS_UNKNOWN,
    )


@handles(METADATA_KEY, 0, 12)
def handle_metadata(ctx, request) -> defer.Deferred[MetadataResponse]:
    return defer.ensureDeferred(_metadata(ctx, request))


@handles(DESCRIBE_CLUSTER_KEY, 0, 1)
def handle_describe_cluster(ctx, request) -> DescribeClusterResponse:
    broker = ctx.broker
    return DescribeClusterResponse(
        throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
        endpoint_type=1, cluster_id=broker.cluster_id, controller_id=broker.controller_id(),
        brokers=[
            DescribeClusterResponse.DescribeClusterBroker(
                broker_id=b.node_id, host=b.host, port=b.port, rack=b.rack)
            for b in broker.live_brokers()
        ],
        cluster_authorized_operations=AUTHORIZED_OPERATIONS_UNKNOWN,
    )
