"""Benchmark results: raw measurements, the metrics derived from them, and their JSON form.

The JSON keeps every round of every scenario on every broker (a `Measurement`), plus the
conditions of the run; medians, spreads and kop/Tansu ratios (`Comparison`) are computed from
those, so a report can always be regenerated from the file alone (`python -m benchmarks.report`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.plan import GOALS, Goal, Kind, Scenario
from benchmarks.stats import Summary, cdf_points, percentile, ratio

FORMAT = "kop-benchmarks/1"
KOP = "kop"
PEER = "tansu"
MB = 1_000_000


class ResultsFormatError(ValueError):
    """A results file is not one this version can read."""


@dataclass(frozen=True)
class LatencyFigures:
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    cdf: tuple[tuple[float, float], ...]  # (latency ms, fraction at or below)

    @classmethod
    def of(cls, sorted_ms: tuple[float, ...]) -> LatencyFigures:
        return cls(percentile(sorted_ms, 0.50), percentile(sorted_ms, 0.99),
                   percentile(sorted_ms, 0.999), sorted_ms[-1],
                   tuple(cdf_points(sorted_ms)))

    def to_json(self) -> dict:
        return {**asdict(self), "cdf": [list(point) for point in self.cdf]}

    @classmethod
    def from_json(cls, data: dict) -> LatencyFigures:
        return cls(data["p50_ms"], data["p99_ms"], data["p999_ms"], data["max_ms"],
                   tuple((value, fraction) for value, fraction in data["cdf"]))


@dataclass(frozen=True)
class Measurement:
    """One scenario, once, on one broker. `error` is set (and the figures zero) if it failed."""
    scenario: str
    broker: str
    round: int
    records: int = 0
    payload_bytes: int = 0
    seconds: float = 0.0
    broker_cpu_seconds: float = 0.0
    broker_peak_rss_bytes: int = 0
    latency: LatencyFigures | None = None
    error: str | None = None
    warning: str | None = None
    # The machine's 1-minute load average when the run ended (the benchmark's own client and
    # broker add about 2): a run on a busy machine can be told from a slow broker.
    load_average: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        data = asdict(self)
        data["latency"] = None if self.latency is None else self.latency.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> Measurement:
        latency = data.get("latency")
        return cls(**{**data, "latency": None if latency is None
                      else LatencyFigures.from_json(latency)})


@dataclass(frozen=True)
class Metric:
    name: str
    title: str  # column heading
    unit: str
    higher_is_better: bool
    kinds: tuple[Kind, ...]
    value: Callable[[Measurement], float]


def _per_second(count: Callable[[Measurement], float]) -> Callable[[Measurement], float]:
    return lambda m: count(m) / m.seconds if m.seconds > 0 else 0.0


def _latency(attribute: str) -> Callable[[Measurement], float]:
    return lambda m: getattr(m.latency, attribute) if m.latency is not None else 0.0


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("records_per_second", "records/s", "rec/s", True, ("produce", "consume"),
           _per_second(lambda m: m.records)),
    Metric("megabytes_per_second", "MB/s", "MB/s", True, ("produce", "consume"),
           _per_second(lambda m: m.payload_bytes / MB)),
    Metric("latency_p50_ms", "p50", "ms", False, ("latency",), _latency("p50_ms")),
    Metric("latency_p99_ms", "p99", "ms", False, ("latency",), _latency("p99_ms")),
    Metric("latency_p999_ms", "p99.9", "ms", False, ("latency",), _latency("p999_ms")),
    Metric("broker_cpu_seconds_per_mb", "CPU s/MB", "CPU s/MB", False, ("produce", "consume", "latency"),
           lambda m: m.broker_cpu_seconds / (m.payload_bytes / MB) if m.payload_bytes else 0.0),
    Metric("broker_peak_rss_mb", "peak RSS MB", "MB", False, ("produce", "consume", "latency"),
           lambda m: m.broker_peak_rss_bytes / MB),
)}


@dataclass(frozen=True)
class Comparison:
    """One metric of one scenario: each broker's rounds summarised, and kop / Tansu."""
    scenario: Scenario
    metric: Metric
    kop: Summary | None
    peer: Summary | None
    # kop / Tansu of each round in which both succeeded (rounds alternate broker order).
    paired_ratios: Summary | None
    goal: Goal | None = None

    @property
    def ratio(self) -> float | None:
        """kop's median over Tansu's median."""
        if self.kop is None or self.peer is None:
            return None
        return ratio(self.kop.median, self.peer.median)

    @property
    def goal_met(self) -> bool | None:
        if self.goal is None or self.ratio is None:
            return None
        return self.goal.met_by(self.ratio)

    def to_json(self) -> dict:
        return {
            "scenario": self.scenario.key, "metric": self.metric.name, "unit": self.metric.unit,
            "higher_is_better": self.metric.higher_is_better,
            KOP: None if self.kop is None else self.kop.to_json(),
            PEER: None if self.peer is None else self.peer.to_json(),
            "ratio": self.ratio,
            "paired_ratios": None if self.paired_ratios is None else self.paired_ratios.to_json(),
            "goal": None if self.goal is None else self.goal.to_json(),
            "goal_met": self.goal_met,
        }


@dataclass
class Results:
    plan: str
    rounds: int
    scenarios: list[Scenario]
    conditions: dict = field(default_factory=dict)
    brokers: dict[str, dict] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)

    def scenario(self, key: str) -> Scenario:
        for scenario in self.scenarios:
            if scenario.key == key:
                return scenario
        raise KeyError(key)

    def measured(self, scenario_key: str, broker: str) -> list[Measurement]:
        return [m for m in self.measurements
                if m.scenario == scenario_key and m.broker == broker and m.ok]

    def measured_by(self, broker: str) -> list[Measurement]:
        return [m for m in self.measurements if m.broker == broker and m.ok]

    def failures(self) -> list[Measurement]:
        return [m for m in self.measurements if not m.ok]

    def warnings(self) -> list[Measurement]:
        return [m for m in self.measurements if m.warning is not None]

    def compare(self, scenario: Scenario, metric: Metric) -> Comparison:
        kop_runs = self.measured(scenario.key, KOP)
        peer_runs = self.measured(scenario.key, PEER)
        peer_by_round = {m.round: metric.value(m) for m in peer_runs}
        paired = [ratio(metric.value(m), peer_by_round[m.round])
                  for m in kop_runs if m.round in peer_by_round]
        goal = next((g for g in GOALS if g.scenario_key == scenario.key
                     and g.metric == metric.name), None)
        return Comparison(
            scenario, metric,
            Summary.of([metric.value(m) for m in kop_runs]) if kop_runs else None,
            Summary.of([metric.value(m) for m in peer_runs]) if peer_runs else None,
            Summary.of(paired) if paired else None,
            goal)

    def comparisons(self, metric_names: Iterable[str] | None = None) -> list[Comparison]:
        """Every (scenario, metric) pair that applies, in plan order."""
        names = list(METRICS) if metric_names is None else list(metric_names)
        return [self.compare(scenario, METRICS[name])
                for scenario in self.scenarios for name in names
                if scenario.kind in METRICS[name].kinds]

    def goal_comparisons(self) -> list[Comparison]:
        keys = {scenario.key for scenario in self.scenarios}
        return [self.compare(self.scenario(goal.scenario_key), METRICS[goal.metric])
                for goal in GOALS if goal.scenario_key in keys]

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "plan": self.plan,
            "rounds": self.rounds,
            "conditions": self.conditions,
            "brokers": self.brokers,
            "scenarios": [scenario.to_json() for scenario in self.scenarios],
            "measurements": [m.to_json() for m in self.measurements],
            # Derived from the measurements; kept so the file reads on its own.
            "comparisons": [c.to_json() for c in self.comparisons()],
        }

    @classmethod
    def from_json(cls, data: dict) -> Results:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ResultsFormatError(f"not a {FORMAT} results file (format: {found!r})")
        try:
            scenarios = [Scenario(**{k: v for k, v in s.items() if k not in ("key", "label")})
                         for s in data["scenarios"]]
            return cls(data["plan"], data["rounds"], scenarios, data.get("conditions", {}),
                       data.get("brokers", {}),
                       [Measurement.from_json(m) for m in data["measurements"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultsFormatError(f"malformed {FORMAT} results: {exc!r}") from exc

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a crash leaves the previous file, never half of a new one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Results:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ResultsFormatError(f"{path} is not JSON: {exc}") from exc
        return cls.from_json(data)
