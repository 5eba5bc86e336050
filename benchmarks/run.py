"""Runs a plan: rounds x brokers x scenarios, with the broker's CPU and memory measured around
each workload.

Each round starts every broker fresh, one at a time (never two at once), runs every scenario
against it and stops it. Odd rounds reverse the broker order, so a change of load on the
machine during the run weighs on both brokers alike. A scenario that fails is recorded with
its error and the round goes on; if the broker itself died, the rest of its round is recorded
as failed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.brokers import BrokerUnderTest
from benchmarks.plan import Plan, Scenario
from benchmarks.process_meter import ProcessGoneError, ProcessMeter
from benchmarks.results import LatencyFigures, Measurement, Results
from benchmarks.workloads import WorkloadError, run_workload
from benchmarks.workloads.topics import create_topic, delete_topic

log = logging.getLogger(__name__)

Progress = Callable[[Measurement, Scenario], None]


def topic_name(scenario: Scenario, round_number: int) -> str:
    """A topic of its own for each run; Kafka topic names allow [a-zA-Z0-9._-]."""
    return "bench-r" + str(round_number) + "-" + re.sub(r"[^a-zA-Z0-9._-]", "-", scenario.key)


@dataclass
class _Round:
    """One broker's pass through the plan: the topics kept for reading back, by producer key."""
    broker: BrokerUnderTest
    bootstrap: str
    round_number: int
    meter: ProcessMeter
    kept_for_reading: set[str]
    written: dict[str, tuple[str, int]] = field(default_factory=dict)

    def measure(self, scenario: Scenario) -> Measurement:
        if scenario.kind == "consume":
            if scenario.produced_by not in self.written:
                raise WorkloadError(f"nothing to read: {scenario.produced_by} did not complete")
            topic, records = self.written.pop(scenario.produced_by)
        else:
            topic, records = topic_name(scenario, self.round_number), None
            create_topic(self.bootstrap, topic, scenario.partitions)
        try:
            self.meter.start()
            outcome = run_workload(scenario, self.bootstrap, topic, records)
            usage = self.meter.stop()
        except BaseException:
            if self.meter.alive():
                delete_topic(self.bootstrap, topic)
            raise
        if scenario.key in self.kept_for_reading:
            self.written[scenario.key] = (topic, outcome.records)
        else:
            delete_topic(self.bootstrap, topic)
        return Measurement(
            scenario.key, self.broker.name, self.round_number, outcome.records,
            outcome.payload_bytes, outcome.seconds, usage.cpu_seconds, usage.peak_rss_bytes,
            None if outcome.latencies_ms is None else LatencyFigures.of(outcome.latencies_ms),
            warning=outcome.warning, load_average=os.getloadavg()[0])


def run_round(plan: Plan, broker: BrokerUnderTest, round_number: int,
              progress: Progress) -> list[Measurement]:
    measurements: list[Measurement] = []
    bootstrap = broker.start()
    try:
        current = _Round(broker, bootstrap, round_number, ProcessMeter(broker.pid),
                         {s.produced_by for s in plan.scenarios if s.kind == "consume"})
        broker_gone: str | None = None
        for scenario in plan.scenarios:
            if broker_gone is not None:
                measurement = Measurement(scenario.key, broker.name, round_number,
                                          error=broker_gone)
            else:
                try:
                    measurement = current.measure(scenario)
                except Exception as exc:  # recorded, and the round goes on
                    log.debug("%s failed", scenario.key, exc_info=True)
                    error = f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, ProcessGoneError) or not current.meter.alive():
                        broker_gone = f"{broker.name} exited during {scenario.key}"
                        error = f"{broker_gone}: {error}"
                    measurement = Measurement(scenario.key, broker.name, round_number,
                                              error=error)
            measurements.append(measurement)
            progress(measurement, scenario)
    finally:
        broker.stop()
    return measurements


def run_plan(plan: Plan, brokers: Sequence[BrokerUnderTest], results: Results,
             progress: Progress, after_round: Callable[[Results], None] = lambda _: None
             ) -> Results:
    """Appends every measurement to `results`; `after_round` can save partial results."""
    for round_number in range(plan.rounds):
        order = list(brokers) if round_number % 2 == 0 else list(reversed(brokers))
        for broker in order:
            results.measurements.extend(run_round(plan, broker, round_number, progress))
            after_round(results)
    return results
