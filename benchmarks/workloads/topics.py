"""Topic housekeeping around each workload: create, count what is stored, delete.

Every run writes to a topic of its own, created before the clock starts and deleted after the
records are read back, so neither broker carries earlier runs' data into later figures.
"""

from __future__ import annotations

import logging

from benchmarks.workloads.outcome import WorkloadError
from benchmarks.workloads.settings import ADMIN_TIMEOUT_SECONDS, confluent_consumer_config

log = logging.getLogger(__name__)


def _admin_config(bootstrap: str) -> dict:
    # log_level 3 (errors): librdkafka's informational line about purged background events
    # when an admin client is dropped would otherwise interleave with the progress output.
    return {"bootstrap.servers": bootstrap, "log_level": 3}


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(_admin_config(bootstrap))
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                            replication_factor=1)])
    try:
        futures[topic].result(ADMIN_TIMEOUT_SECONDS)
    except Exception as exc:
        raise WorkloadError(f"could not create topic {topic}: {exc}") from exc


def delete_topic(bootstrap: str, topic: str) -> None:
    """Best effort: a broker that cannot delete keeps the data, which is logged, not fatal."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(_admin_config(bootstrap))
    try:
        admin.delete_topics([topic])[topic].result(ADMIN_TIMEOUT_SECONDS)
    except Exception as exc:
        log.warning("could not delete topic %s: %s", topic, exc)


def stored_records(bootstrap: str, topic: str, partitions: int) -> int:
    """Sum of the partitions' high watermarks: records the broker holds for a fresh topic."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(confluent_consumer_config(bootstrap))
    try:
        total = 0
        for partition in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=ADMIN_TIMEOUT_SECONDS)
            total += high - low
        return total
    finally:
        consumer.close()
