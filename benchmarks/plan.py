"""What the benchmark measures: scenarios, the quick and full plans, and the goals (issue 7).

A scenario is one workload with its parameters (client, value size, partitions, rate). A plan
lists scenarios in the order they run against each broker and how many rounds to repeat them.
Goals name a scenario, a metric and the kop/Tansu ratio it has to reach.

Adding a scenario: append it to `full_plan()` (and to `quick_plan()` if it belongs in the
two-minute development run); a "consume" scenario reads back what the "produce" scenario with
the same client, size and partitions wrote earlier in the same round.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

Kind = Literal["produce", "consume", "latency"]

CONFLUENT = "confluent-kafka"
KAFKA_PYTHON = "kafka-python"
AIOKAFKA = "aiokafka"
PRODUCER_CLIENTS = (CONFLUENT, KAFKA_PYTHON, AIOKAFKA)

# Seconds each broker start, topic creation and clean-up add to a round, for the estimate.
_OVERHEAD_PER_BROKER_ROUND = 3.0
_OVERHEAD_PER_SCENARIO = 0.7


def size_label(value_bytes: int) -> str:
    if value_bytes % 1024 == 0:
        return f"{value_bytes // 1024} KiB"
    return f"{value_bytes} B"


@dataclass(frozen=True)
class Scenario:
    """One workload. `seconds` is how long it produces (produce, latency) or at most reads
    (consume); `warmup_seconds` of a latency run are measured but left out of the figures."""
    kind: Kind
    client: str
    value_bytes: int
    partitions: int
    seconds: float
    rate: int | None = None
    warmup_seconds: float = 0.0

    @property
    def key(self) -> str:
        """Stable identity in the JSON results (durations are not part of it)."""
        key = f"{self.kind}/{self.client}/{self.value_bytes}B/{self.partitions}p"
        return key if self.rate is None else f"{key}/{self.rate}rps"

    @property
    def label(self) -> str:
        """Short human name for tables and plots."""
        partitions = "1 partition" if self.partitions == 1 else f"{self.partitions} partitions"
        text = f"{self.kind} {self.client} {size_label(self.value_bytes)}, {partitions}"
        return text if self.rate is None else f"{text}, {self.rate:,} rec/s"

    @property
    def produced_by(self) -> str:
        """For a consume scenario: the key of the produce scenario whose records it reads."""
        if self.kind != "consume":
            raise ValueError(f"{self.key} reads nothing back")
        return replace(self, kind="produce", rate=None).key

    def to_json(self) -> dict:
        return {"key": self.key, "label": self.label, **asdict(self)}


@dataclass(frozen=True)
class Goal:
    """kop's figure divided by Tansu's must be at least (`at_least`) or at most `target`."""
    scenario_key: str
    metric: str
    target: float
    at_least: bool

    def met_by(self, kop_to_tansu: float) -> bool:
        return kop_to_tansu >= self.target if self.at_least else kop_to_tansu <= self.target

    @property
    def text(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.target:g}×"

    def to_json(self) -> dict:
        return {**asdict(self), "text": self.text}


@dataclass(frozen=True)
class Plan:
    name: str
    rounds: int
    scenarios: tuple[Scenario, ...]

    def __post_init__(self) -> None:
        produced: set[str] = set()
        for scenario in self.scenarios:
            if scenario.kind == "produce":
                produced.add(scenario.key)
            elif scenario.kind == "consume" and scenario.produced_by not in produced:
                raise ValueError(f"{scenario.key} runs before {scenario.produced_by}")

    def with_rounds(self, rounds: int) -> Plan:
        return replace(self, rounds=rounds)

    def estimated_seconds(self, brokers: int = 2) -> float:
        """Roughly how long the plan takes (consume scenarios counted at their cap)."""
        per_round = _OVERHEAD_PER_BROKER_ROUND + sum(
            scenario.seconds + scenario.warmup_seconds + _OVERHEAD_PER_SCENARIO
            for scenario in self.scenarios)
        return self.rounds * brokers * per_round


HEADLINE_PRODUCE = Scenario("produce", CONFLUENT, 1024, 1, seconds=10.0)
HEADLINE_CONSUME = Scenario("consume", CONFLUENT, 1024, 1, seconds=10.0)
HEADLINE_LATENCY = Scenario("latency", CONFLUENT, 1024, 1, seconds=10.0, rate=1_000,
                            warmup_seconds=1.0)

GOALS: tuple[Goal, ...] = (
    Goal(HEADLINE_PRODUCE.key, "records_per_second", 1.0, at_least=True),
    Goal(HEADLINE_CONSUME.key, "records_per_second", 1.0, at_least=True),
    Goal(HEADLINE_LATENCY.key, "latency_p99_ms", 1.5, at_least=False),
)


def full_plan(rounds: int = 3, seconds: float = 10.0) -> Plan:
    """Issue 7's matrix: three producer clients x {100 B, 1 KiB} x {1, 6} partitions for at
    least `seconds` each, confluent-kafka reading each of its topics back (for at most half
    that: millions of records, enough for a steady figure, and it keeps the full run under
    20 minutes), and end-to-end latency at 1,000 and 10,000 records/s."""
    scenarios: list[Scenario] = []
    for value_bytes in (100, 1024):
        for partitions in (1, 6):
            for client in PRODUCER_CLIENTS:
                scenarios.append(Scenario("produce", client, value_bytes, partitions, seconds))
            scenarios.append(Scenario("consume", CONFLUENT, value_bytes, partitions,
                                      seconds / 2))
    warmup = min(1.0, seconds / 10)
    for rate in (1_000, 10_000):
        scenarios.append(replace(HEADLINE_LATENCY, rate=rate, seconds=seconds - warmup,
                                 warmup_seconds=warmup))
    return Plan("full", rounds, tuple(scenarios))


def quick_plan(rounds: int = 3) -> Plan:
    """The goal figures only, short: for development, in under two minutes."""
    return Plan("quick", rounds, (
        replace(HEADLINE_PRODUCE, seconds=3.0),
        replace(HEADLINE_CONSUME, seconds=2.0),
        replace(HEADLINE_LATENCY, seconds=2.5, warmup_seconds=0.5),
        replace(HEADLINE_LATENCY, seconds=2.5, warmup_seconds=0.5, rate=10_000),
    ))
