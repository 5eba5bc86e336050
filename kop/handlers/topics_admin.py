"""CreateTopics (key 19) v0-7, DeleteTopics (key 20) v0-6, CreatePartitions (key 37) v0-3.

CreateTopics validates names (INVALID_TOPIC_EXCEPTION), partition counts
(INVALID_PARTITIONS), replication factors (INVALID_REPLICATION_FACTOR for 0 or below -1) and
configs (INVALID_CONFIG for any config kop does not honour), refuses existing topics
(TOPIC_ALREADY_EXISTS) and names given twice in one request (INVALID_REQUEST), and with
`validate_only` creates nothing. -1 partitions / replication factor take the broker defaults
(v4+). The replication factor is accepted but not used per topic: durability comes from the
storage tier's write and ack quorums. Manual replica assignments only fix the partition count.
v5+ answers carry the created topic's partition count and configs; v7+ its topic id.

DeleteTopics removes a topic and deletes its partitions' managed ledgers (by name, or by
topic id in v6+). CreatePartitions only grows a topic (INVALID_PARTITIONS otherwise).
"""

from __future__ import annotations

import uuid
from collections import Counter

from twisted.internet import defer

from kop.errors import KafkaError
from kop.handlers.configs import describe_topic_configs
from kop.handlers.registry import handles
from kop.topics import TopicRegistry
from wire.generated.error_codes import ErrorCode
from wire.messages import CreatePartitionsResponse, CreateTopicsResponse, DeleteTopicsResponse

CREATE_TOPICS_KEY = 19
DELETE_TOPICS_KEY = 20
CREATE_PARTITIONS_KEY = 37
ZERO_UUID = uuid.UUID(int=0)


def _partition_count(broker, topic) -> int:
    if topic.assignments:
        if topic.num_partitions != -1 or topic.replication_factor != -1:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             "Both partition count/replication factor and assignments were set")
        return len(topic.assignments)
    if topic.num_partitions == -1:
        return broker.config.default_partitions
    return topic.num_partitions


def _check_replication_factor(factor: int) -> int:
    if factor == 0 or factor < -1:
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                         "Replication factor must be larger than 0, or -1 to use the default")
    return 1 if factor == -1 else factor


async def _create_topics(ctx, request) -> CreateTopicsResponse:
    broker = ctx.broker
    version = ctx.api_version
    counts = Counter(topic.name for topic in request.topics)
    validate_only = version >= 1 and request.validate_only
    results = []
    for topic in request.topics:
        result = CreateTopicsResponse.CreatableTopicResult(
            name=topic.name, topic_id=ZERO_UUID, error_code=ErrorCode.NONE, error_message=None,
            num_partitions=-1, replication_factor=-1, configs=None)
        results.append(result)
        try:
            if counts[topic.name] > 1:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"Create topics request from client contains a duplicate topic "
                                 f"'{topic.name}'")
            partitions = _partition_count(broker, topic)
            replication = _check_replication_factor(topic.replication_factor)
            configs = {c.name: c.value for c in topic.configs}
            TopicRegistry.check_new_topic(topic.name, partitions, configs)
            if await broker.topics.lookup(topic.name) is not None:
                raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS,
                                 f"Topic '{topic.name}' already exists.")
            if validate_only:
                info = None
            else:
                info = await broker.topics.create(topic.name, partitions, configs)
                result.topic_id = info.topic_id
        except KafkaError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
            continue
        if version >= 5:
            result.num_partitions = partitions
            result.replication_factor = replication
            described = describe_topic_configs(broker, configs if info is None else info.configs,
                                               None, include_synonyms=False)
            result.configs = [
                CreateTopicsResponse.CreatableTopicConfigs(
                    name=c.name, value=c.value, read_only=c.read_only,
                    config_source=c.config_source, is_sensitive=False)
                for c in described
            ]
    return CreateTopicsResponse(throttle_time_ms=0, topics=results)


@handles(CREATE_TOPICS_KEY, 0, 7)
def handle_create_topics(ctx, request) -> defer.Deferred[CreateTopicsResponse]:
    return defer.ensureDeferred(_create_topics(ctx, request))


async def _delete_topics(ctx, request) -> DeleteTopicsResponse:
    broker = ctx.broker
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, ZERO_UUID) for name in request.topic_names]
    results = []
    for name, topic_id in wanted:
        result = DeleteTopicsResponse.DeletableTopicResult(
            name=name, topic_id=topic_id, error_code=ErrorCode.NONE, error_message=None)
        results.append(result)
        try:
            if name is None:
                info = broker.topics.by_id(topic_id)
                if info is None:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID, f"Topic id {topic_id} not found")
                name = result.name = info.name
            info = await broker.topics.lookup(name)
            if info is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"Topic '{name}' does not exist")
            result.topic_id = info.topic_id
            await broker.delete_topic(name)
        except KafkaError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
    return DeleteTopicsResponse(throttle_time_ms=0, responses=results)


@handles(DELETE_TOPICS_KEY, 0, 6)
def handle_delete_topics(ctx, request) -> defer.Deferred[DeleteTopicsResponse]:
    return defer.ensureDeferred(_delete_topics(ctx, request))


async def _create_partitions(ctx, request) -> CreatePartitionsResponse:
    broker = ctx.broker
    counts = Counter(topic.name for topic in request.topics)
    results = []
    for topic in request.topics:
        result = CreatePartitionsResponse.CreatePartitionsTopicResult(
            name=topic.name, error_code=ErrorCode.NONE, error_message=None)
        results.append(result)
        try:
            if counts[topic.name] > 1:
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Duplicate topic '{topic.name}'")
            info = await broker.topics.lookup(topic.name)
            if info is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"Topic '{topic.name}' does not exist")
            if topic.count <= info.partitions:
                raise KafkaError(
                    ErrorCode.INVALID_PARTITIONS,
                    f"Topic currently has {info.partitions} partitions, which is higher than "
                    f"or equal to the requested {topic.count}.")
            if topic.assignments is not None and len(topic.assignments) != topic.count - info.partitions:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 "Assignments must name exactly the new partitions")
            if not request.validate_only:
                await broker.topics.set_partition_count(topic.name, topic.count)
        except KafkaError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
    return CreatePartitionsResponse(throttle_time_ms=0, results=results)


@handles(CREATE_PARTITIONS_KEY, 0, 3)
def handle_create_partitions(ctx, request) -> defer.Deferred[CreatePartitionsResponse]:
    return defer.ensureDeferred(_create_partitions(ctx, request))
