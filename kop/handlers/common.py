"""Helpers shared by handler modules."""

from __future__ import annotations

from kop.errors import KafkaError
from kop.partition_log import PartitionLog
from wire.generated.error_codes import ErrorCode


async def owned_partition(broker, topic: str, partition: int) -> PartitionLog:
    """The open log of a partition this broker owns.

    Raises UNKNOWN_TOPIC_OR_PARTITION for partitions that do not exist and
    NOT_LEADER_OR_FOLLOWER for those another broker owns (the client refreshes metadata).
    """
    cached = broker.partitions.cached(topic, partition)
    if cached is not None and broker.owns(topic, partition):
        return cached
    info = await broker.topics.lookup(topic)
    if info is None or not 0 <= partition < info.partitions:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"{topic}-{partition} does not exist")
    if not broker.owns(topic, partition):
        raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                         f"this broker does not own {topic}-{partition}")
    return await broker.partitions.get(topic, partition)
