"""benchmarks.run: the order of rounds, what is kept for reading back, and failures recorded
rather than hidden. The broker is a fake around a real child process (so CPU and memory are
really read from /proc); the workloads are fakes."""

from __future__ import annotations

import subprocess
import sys

import pytest

import benchmarks.run as run_module
from benchmarks.brokers import BrokerUnderTest
from benchmarks.plan import CONFLUENT, Plan, Scenario
from benchmarks.results import Results
from benchmarks.run import run_plan, run_round, topic_name
from benchmarks.workloads import Outcome, WorkloadError

PRODUCE = Scenario("produce", CONFLUENT, 100, 1, seconds=1.0)
CONSUME = Scenario("consume", CONFLUENT, 100, 1, seconds=1.0)
OTHER = Scenario("produce", "kafka-python", 100, 1, seconds=1.0)
LATENCY = Scenario("latency", CONFLUENT, 100, 1, seconds=1.0, rate=1000)
PLAN = Plan("test", 1, (PRODUCE, OTHER, CONSUME, LATENCY))


class FakeBroker(BrokerUnderTest):
    description = "a sleeping child process"

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> str:
        self.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        self.log.append(f"start {self.name}")
        return "127.0.0.1:1"

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def version(self) -> str:
        return "test"


@pytest.fixture
def topics(monkeypatch):
    """Records topic housekeeping instead of talking to a broker."""
    log: list[str] = []
    monkeypatch.setattr(run_module, "create_topic", lambda _b, t, _p: log.append(f"create {t}"))
    monkeypatch.setattr(run_module, "delete_topic", lambda _b, t: log.append(f"delete {t}"))
    return log


def fake_workloads(monkeypatch, behaviour):
    calls: list[tuple[str, str, int | None]] = []

    def run_workload(scenario, bootstrap, topic, records_to_read=None):
        calls.append((scenario.key, topic, records_to_read))
        return behaviour(scenario)

    monkeypatch.setattr(run_module, "run_workload", run_workload)
    return calls


def ok(scenario: Scenario) -> Outcome:
    if scenario.kind == "latency":
        return Outcome(3, 300, 1.0, (1.0, 2.0, 3.0))
    return Outcome(500, 50_000, 2.0)


def test_topic_names_are_legal_kafka_names():
    assert topic_name(LATENCY, 2) == "bench-r2-latency-confluent-kafka-100B-1p-1000rps"


def test_a_round_measures_every_scenario_and_keeps_only_what_is_read_back(monkeypatch, topics):
    calls = fake_workloads(monkeypatch, ok)
    log: list[str] = []
    measurements = run_round(PLAN, FakeBroker("kop", log), 0, lambda *_: None)
    assert [m.scenario for m in measurements] == [s.key for s in PLAN.scenarios]
    assert all(m.ok and m.broker == "kop" and m.broker_peak_rss_bytes > 0 for m in measurements)
    # The consumer reads the confluent producer's topic and is told how many were acknowledged.
    produce_topic = topic_name(PRODUCE, 0)
    assert calls[2] == (CONSUME.key, produce_topic, 500)
    assert topics == [f"create {produce_topic}",
                      f"create {topic_name(OTHER, 0)}", f"delete {topic_name(OTHER, 0)}",
                      f"delete {produce_topic}",
                      f"create {topic_name(LATENCY, 0)}", f"delete {topic_name(LATENCY, 0)}"]
    assert measurements[3].latency.p50_ms == 2.0
    assert log == ["start kop", "stop kop"]


def test_a_failed_workload_is_recorded_and_the_round_goes_on(monkeypatch, topics):
    def behaviour(scenario):
        if scenario.key == PRODUCE.key:
            raise WorkloadError("3 records were not acknowledged")
        return ok(scenario)

    fake_workloads(monkeypatch, behaviour)
    measurements = run_round(PLAN, FakeBroker("kop", []), 0, lambda *_: None)
    errors = {m.scenario: m.error for m in measurements}
    assert errors[PRODUCE.key] == "WorkloadError: 3 records were not acknowledged"
    assert "did not complete" in errors[CONSUME.key]
    assert errors[OTHER.key] is None and errors[LATENCY.key] is None
    assert f"delete {topic_name(PRODUCE, 0)}" in topics


def test_a_broker_that_dies_fails_the_rest_of_its_round(monkeypatch, topics):
    broker = FakeBroker("tansu", [])

    def behaviour(scenario):
        if scenario.key == OTHER.key:
            broker.process.kill()
            broker.process.wait()
            raise WorkloadError("connection refused")
        return ok(scenario)

    calls = fake_workloads(monkeypatch, behaviour)
    seen = []
    measurements = run_round(PLAN, broker, 1, lambda m, s: seen.append(s.key))
    assert measurements[0].ok
    assert all("tansu exited during " + OTHER.key in m.error for m in measurements[1:])
    assert [key for key, _, _ in calls] == [PRODUCE.key, OTHER.key]  # nothing ran after
    assert seen == [s.key for s in PLAN.scenarios]


def test_rounds_alternate_which_broker_goes_first(monkeypatch, topics):
    fake_workloads(monkeypatch, ok)
    log: list[str] = []
    brokers = [FakeBroker("kop", log), FakeBroker("tansu", log)]
    plan = Plan("test", 3, (PRODUCE,))
    saved = []
    results = run_plan(plan, brokers, Results(plan.name, plan.rounds, list(plan.scenarios)),
                       lambda *_: None, after_round=lambda r: saved.append(len(r.measurements)))
    starts = [entry for entry in log if entry.startswith("start")]
    assert starts == ["start kop", "start tansu", "start tansu", "start kop",
                      "start kop", "start tansu"]
    # Never two brokers at once: every start follows the previous broker's stop.
    assert log == [entry for name in [s.split()[1] for s in starts]
                   for entry in (f"start {name}", f"stop {name}")]
    assert saved == [1, 2, 3, 4, 5, 6]
    assert sorted((m.round, m.broker) for m in results.measurements) == [
        (r, b) for r in range(3) for b in ("kop", "tansu")]
