"""End-to-end latency at a fixed rate: produce timestamp to the moment a consumer has the record.

One confluent-kafka producer sends records at the scenario's rate (acks=all, no linger), each
starting with the CLOCK_MONOTONIC time of its send; a confluent-kafka consumer in a thread of
the same process reads them and subtracts that time from its own clock. Records sent in the
first `warmup_seconds` are measured but not reported (connections and caches settle there).

Before the clock starts, a marker record is sent and awaited, so both clients are connected
and the consumer is fetching: no measured record waits for a connection to be made.
"""

from __future__ import annotations

import struct
import threading
import time

from benchmarks.plan import Scenario
from benchmarks.workloads.outcome import Outcome, WorkloadError
from benchmarks.workloads.settings import (
    FLUSH_TIMEOUT_SECONDS,
    LATENCY_LINGER_MS,
    confluent_consumer_config,
    confluent_producer_config,
)

_TIMESTAMP = struct.Struct(">q")
_MARKER_TIMESTAMP = -1
# The producer wakes this often and sends whatever has fallen due (10 records at 10,000/s).
_PACING_INTERVAL_SECONDS = 0.001
_CONNECT_TIMEOUT_SECONDS = 30.0
_NANOSECONDS = 1_000_000_000


def records_due(elapsed_ns: int, rate: int) -> int:
    """How many records a producer sending `rate` per second has owed since it began."""
    return elapsed_ns * rate // _NANOSECONDS


class _Receiver(threading.Thread):
    """Polls the consumer and keeps (send time, receive time) of every record."""

    def __init__(self, consumer) -> None:
        super().__init__(name="latency-receiver", daemon=True)
        self._consumer = consumer
        self.samples: list[tuple[int, int]] = []
        self.marker_seen = threading.Event()
        self.stopping = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            message = self._consumer.poll(0.05)
            received_ns = time.monotonic_ns()
            if message is None:
                continue
            if message.error() is not None:
                self.error = str(message.error())
                return
            (sent_ns,) = _TIMESTAMP.unpack_from(message.value())
            if sent_ns == _MARKER_TIMESTAMP:
                self.marker_seen.set()
            else:
                self.samples.append((sent_ns, received_ns))


def measure_latency(bootstrap: str, topic: str, scenario: Scenario) -> Outcome:
    from confluent_kafka import Consumer, Producer, TopicPartition

    if scenario.rate is None or scenario.value_bytes < _TIMESTAMP.size:
        raise ValueError(f"{scenario.key}: a latency run needs a rate and >= 8-byte values")
    padding = bytes(scenario.value_bytes - _TIMESTAMP.size)
    producer = Producer(confluent_producer_config(bootstrap, LATENCY_LINGER_MS))
    consumer = Consumer(confluent_consumer_config(bootstrap))
    consumer.assign([TopicPartition(topic, partition, 0)
                     for partition in range(scenario.partitions)])
    receiver = _Receiver(consumer)
    receiver.start()
    try:
        producer.produce(topic, _TIMESTAMP.pack(_MARKER_TIMESTAMP) + padding)
        producer.flush(_CONNECT_TIMEOUT_SECONDS)
        if not receiver.marker_seen.wait(_CONNECT_TIMEOUT_SECONDS):
            raise WorkloadError(f"the consumer did not see a record within "
                                f"{_CONNECT_TIMEOUT_SECONDS:g} s ({receiver.error or 'no error'})")
        started_ns = time.monotonic_ns()
        sent = _send_at_rate(producer, topic, padding, scenario, started_ns)
        if producer.flush(FLUSH_TIMEOUT_SECONDS):
            raise WorkloadError(f"records still unacknowledged after {FLUSH_TIMEOUT_SECONDS:g} s")
        _wait_for_all(receiver, sent)
    finally:
        receiver.stopping.set()
        receiver.join()
        consumer.close()
    measured_from = started_ns + int(scenario.warmup_seconds * _NANOSECONDS)
    latencies = sorted((received - sent_ns) / 1e6 for sent_ns, received in receiver.samples
                       if sent_ns >= measured_from)
    if not latencies:
        raise WorkloadError("no records were sent after the warm-up")
    return Outcome(len(latencies), sent * scenario.value_bytes,
                   scenario.seconds + scenario.warmup_seconds, tuple(latencies))


def _send_at_rate(producer, topic: str, padding: bytes, scenario: Scenario,
                  started_ns: int) -> int:
    assert scenario.rate is not None
    ends_ns = started_ns + int((scenario.seconds + scenario.warmup_seconds) * _NANOSECONDS)
    sent = 0
    while (now_ns := time.monotonic_ns()) < ends_ns:
        due = records_due(now_ns - started_ns, scenario.rate)
        while sent < due:
            producer.produce(topic, _TIMESTAMP.pack(time.monotonic_ns()) + padding)
            sent += 1
        producer.poll(0)
        time.sleep(_PACING_INTERVAL_SECONDS)  # rate control, not synchronisation
    return sent


def _wait_for_all(receiver: _Receiver, sent: int) -> None:
    deadline = time.monotonic() + FLUSH_TIMEOUT_SECONDS
    while len(receiver.samples) < sent:
        if receiver.error is not None:
            raise WorkloadError(f"consumer error: {receiver.error}")
        if time.monotonic() > deadline or not receiver.is_alive():
            raise WorkloadError(f"{sent - len(receiver.samples)} of {sent} acknowledged "
                                f"records never reached the consumer")
        time.sleep(0.01)  # polls the count, bounded by the deadline above
