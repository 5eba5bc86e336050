"""Consumer throughput: read a topic back from its first offset with confluent-kafka.

Partitions are assigned at offset 0 (no consumer group), and messages are taken in batches
(`consume(10000, ...)`) so the Python loop costs little beside the client. The clock runs from
assignment to the last expected record, or stops at the scenario's `seconds` when the topic is
bigger than that; the figure is records read over that time either way.
"""

from __future__ import annotations

import time

from benchmarks.plan import Scenario
from benchmarks.workloads.outcome import Outcome, WorkloadError
from benchmarks.workloads.settings import confluent_consumer_config

_BATCH = 10_000
_BATCH_WAIT_SECONDS = 0.5
# A broker that answers nothing for this long has stalled: the run fails rather than waits.
_STALL_SECONDS = 15.0
# Reaching the time limit is fine while records still flow, not when they stopped coming.
_STALL_AT_DEADLINE_SECONDS = 2.0


def consume_confluent(bootstrap: str, topic: str, scenario: Scenario, expected: int) -> Outcome:
    """Read up to `expected` records of `topic` (all of its partitions)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(confluent_consumer_config(bootstrap))
    try:
        received = 0
        payload = 0
        started = time.monotonic()
        deadline = started + scenario.seconds
        last_progress = started
        consumer.assign([TopicPartition(topic, partition, 0)
                         for partition in range(scenario.partitions)])
        while received < expected:
            now = time.monotonic()
            if now >= deadline:
                if now - last_progress > _STALL_AT_DEADLINE_SECONDS:
                    raise WorkloadError(f"stopped receiving after {received} of {expected} "
                                        f"records")
                break
            if now - last_progress > _STALL_SECONDS:
                raise WorkloadError(f"no records for {_STALL_SECONDS:g} s after {received} "
                                    f"of {expected}")
            batch = consumer.consume(_BATCH, _BATCH_WAIT_SECONDS)
            for message in batch:
                if message.error() is not None:
                    raise WorkloadError(f"consumer error: {message.error()}")
                payload += len(message.value())
            if batch:
                received += len(batch)
                last_progress = now
        seconds = time.monotonic() - started
        if received == 0:
            raise WorkloadError("read no records back")
        return Outcome(received, payload, seconds)
    finally:
        consumer.close()
