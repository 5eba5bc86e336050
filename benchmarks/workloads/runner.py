"""Runs one scenario against a broker: the right client for its kind, and the checks after.

Produce runs are compared with the broker's high watermarks (a difference is kept as a
warning); consume runs read back the records the matching produce run had acknowledged, and
fail if the broker holds fewer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from benchmarks.plan import AIOKAFKA, CONFLUENT, KAFKA_PYTHON, Scenario
from benchmarks.workloads.consumer import consume_confluent
from benchmarks.workloads.latency import measure_latency
from benchmarks.workloads.outcome import Outcome, WorkloadError
from benchmarks.workloads.producers import (
    produce_aiokafka,
    produce_confluent,
    produce_kafka_python,
)
from benchmarks.workloads.topics import stored_records

Producer = Callable[[str, str, Scenario], Outcome]

PRODUCERS: dict[str, Producer] = {
    CONFLUENT: produce_confluent,
    KAFKA_PYTHON: produce_kafka_python,
    AIOKAFKA: produce_aiokafka,
}


def run_workload(scenario: Scenario, bootstrap: str, topic: str,
                 records_to_read: int | None = None) -> Outcome:
    """Drive `scenario` on `topic` (which exists); `records_to_read` is for consume runs."""
    if scenario.kind == "produce":
        produce = PRODUCERS.get(scenario.client)
        if produce is None:
            raise WorkloadError(f"no producer workload for client {scenario.client!r}")
        outcome = produce(bootstrap, topic, scenario)
        stored = stored_records(bootstrap, topic, scenario.partitions)
        if stored != outcome.records:
            # Not fatal: a broker may misreport its high watermark (Tansu reports the last
            # batch's base offset + 1) while storing everything; consume runs count records.
            return replace(outcome, warning=f"{outcome.records} records acknowledged, high "
                                            f"watermarks add up to {stored}")
        return outcome
    if scenario.kind == "consume":
        if scenario.client != CONFLUENT:
            raise WorkloadError(f"no consumer workload for client {scenario.client!r}")
        if records_to_read is None:
            raise WorkloadError(f"{scenario.key} needs the record count its producer stored")
        outcome = consume_confluent(bootstrap, topic, scenario, records_to_read)
        if outcome.records > records_to_read:
            raise WorkloadError(f"read {outcome.records} records, but only {records_to_read} "
                                f"were stored")
        return outcome
    if scenario.kind == "latency":
        if scenario.client != CONFLUENT:
            raise WorkloadError(f"no latency workload for client {scenario.client!r}")
        return measure_latency(bootstrap, topic, scenario)
    raise WorkloadError(f"unknown workload kind {scenario.kind!r}")
