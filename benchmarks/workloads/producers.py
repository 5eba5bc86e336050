"""Producer throughput: send records as fast as the client takes them for a fixed time.

The clock starts before the first send and stops when the last record is acknowledged
(acks=all), so a run is at least the scenario's `seconds` long whatever the broker's speed.
Every record carries the same value of the scenario's size and no key; the clients choose
partitions with their own default partitioners. Records the broker refused are counted as
errors and fail the run.
"""

from __future__ import annotations

import asyncio
import os
import time

from benchmarks.plan import Scenario
from benchmarks.workloads.outcome import Outcome, WorkloadError
from benchmarks.workloads.settings import (
    FLUSH_TIMEOUT_SECONDS,
    LINGER_MS,
    confluent_producer_config,
)

# confluent-kafka's produce() is cheap; checking the clock once per burst keeps the loop tight.
_CONFLUENT_BURST = 500


def _value(scenario: Scenario) -> bytes:
    return os.urandom(scenario.value_bytes)


def _outcome(scenario: Scenario, sent: int, errors: int, started: float,
             first_error: object) -> Outcome:
    if errors:
        raise WorkloadError(f"{errors} of {sent} records were not acknowledged "
                            f"(first error: {first_error})")
    seconds = time.monotonic() - started
    return Outcome(sent, sent * scenario.value_bytes, seconds)


def produce_confluent(bootstrap: str, topic: str, scenario: Scenario) -> Outcome:
    from confluent_kafka import Producer

    errors = 0
    first_error: object = None

    def on_delivery(error, _message) -> None:
        nonlocal errors, first_error
        if error is not None:
            errors += 1
            first_error = first_error or error

    producer = Producer({**confluent_producer_config(bootstrap), "on_delivery": on_delivery,
                         "delivery.report.only.error": True})
    value = _value(scenario)
    sent = 0
    started = time.monotonic()
    deadline = started + scenario.seconds
    while time.monotonic() < deadline:
        for _ in range(_CONFLUENT_BURST):
            try:
                producer.produce(topic, value)
            except BufferError:
                # The client's queue is full: wait for acknowledgements to make room.
                producer.poll(0.001)
                break
            sent += 1
        producer.poll(0)
    unacknowledged = producer.flush(FLUSH_TIMEOUT_SECONDS)
    if unacknowledged:
        raise WorkloadError(f"{unacknowledged} records still unacknowledged after "
                            f"{FLUSH_TIMEOUT_SECONDS:g} s")
    return _outcome(scenario, sent, errors, started, first_error)


def produce_kafka_python(bootstrap: str, topic: str, scenario: Scenario) -> Outcome:
    from kafka import KafkaProducer

    errors = 0
    first_error: object = None

    def on_error(exception: BaseException) -> None:
        nonlocal errors, first_error
        errors += 1
        first_error = first_error or exception

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=LINGER_MS,
                             enable_idempotence=False, client_id="kop-bench")
    try:
        value = _value(scenario)
        sent = 0
        started = time.monotonic()
        deadline = started + scenario.seconds
        while time.monotonic() < deadline:
            producer.send(topic, value).add_errback(on_error)
            sent += 1
        producer.flush(FLUSH_TIMEOUT_SECONDS)
        return _outcome(scenario, sent, errors, started, first_error)
    finally:
        producer.close(timeout=10)


def produce_aiokafka(bootstrap: str, topic: str, scenario: Scenario) -> Outcome:
    return asyncio.run(_produce_aiokafka(bootstrap, topic, scenario))


async def _produce_aiokafka(bootstrap: str, topic: str, scenario: Scenario) -> Outcome:
    from aiokafka import AIOKafkaProducer

    errors = 0
    completed = 0
    first_error: object = None

    def on_done(future: asyncio.Future) -> None:
        nonlocal errors, completed, first_error
        completed += 1
        if future.cancelled() or future.exception() is not None:
            errors += 1
            first_error = first_error or (future.cancelled() or future.exception())

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=LINGER_MS,
                                enable_idempotence=False, client_id="kop-bench")
    await producer.start()
    try:
        value = _value(scenario)
        sent = 0
        started = time.monotonic()
        deadline = started + scenario.seconds
        while time.monotonic() < deadline:
            # send() returns once the record is in a batch; the future is its acknowledgement.
            delivery = await producer.send(topic, value)
            delivery.add_done_callback(on_done)
            sent += 1
        await asyncio.wait_for(producer.flush(), FLUSH_TIMEOUT_SECONDS)
        callbacks_deadline = time.monotonic() + FLUSH_TIMEOUT_SECONDS
        while completed < sent and time.monotonic() < callbacks_deadline:
            # Done callbacks run on the loop's next turns, after flush() has returned.
            await asyncio.sleep(0)
        return _outcome(scenario, sent, errors, started, first_error)
    finally:
        await producer.stop()
