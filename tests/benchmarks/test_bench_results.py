"""benchmarks.results: figures derived from raw rounds, kop/Tansu ratios, the JSON file."""

import json

import pytest

from benchmarks.plan import HEADLINE_CONSUME, HEADLINE_LATENCY, HEADLINE_PRODUCE
from benchmarks.results import (
    FORMAT,
    KOP,
    METRICS,
    PEER,
    Measurement,
    Results,
    ResultsFormatError,
)


def test_throughput_is_the_median_of_rounds_and_the_ratio_of_medians(results):
    comparison = results.compare(HEADLINE_PRODUCE, METRICS["records_per_second"])
    assert comparison.kop.median == 200 and comparison.kop.minimum == 100
    assert comparison.kop.maximum == 400 and comparison.peer.median == 200
    assert comparison.ratio == 1.0
    # Each round's own kop / Tansu: 0.5, 1.0 and 2.0.
    assert (comparison.paired_ratios.minimum, comparison.paired_ratios.median,
            comparison.paired_ratios.maximum) == (0.5, 1.0, 2.0)
    assert comparison.goal is not None and comparison.goal_met is True


def test_failed_rounds_are_left_out_of_the_figures(results):
    comparison = results.compare(HEADLINE_CONSUME, METRICS["records_per_second"])
    assert comparison.kop.count == 2 and comparison.peer.count == 3
    assert comparison.kop.median == 1000 and comparison.peer.median == 500
    assert comparison.ratio == 2.0
    assert comparison.paired_ratios.count == 2
    assert [m.round for m in results.failures()] == [2]


def test_latency_goal_is_an_upper_bound(results):
    comparison = results.compare(HEADLINE_LATENCY, METRICS["latency_p99_ms"])
    assert comparison.kop.median == pytest.approx(9.9)
    assert comparison.peer.median == pytest.approx(39.6)
    assert comparison.ratio == pytest.approx(0.25)
    assert comparison.goal_met is True


def test_a_broker_with_no_successful_round_has_no_figure(results):
    results.measurements = [m for m in results.measurements if m.broker != KOP]
    comparison = results.compare(HEADLINE_PRODUCE, METRICS["records_per_second"])
    assert comparison.kop is None and comparison.ratio is None and comparison.goal_met is None


def test_cpu_per_megabyte_and_peak_memory(results):
    measurement = results.measured(HEADLINE_PRODUCE.key, KOP)[0]
    assert METRICS["broker_cpu_seconds_per_mb"].value(measurement) == pytest.approx(
        2.0 / (1000 * 1024 / 1e6))
    assert METRICS["broker_peak_rss_mb"].value(measurement) == 50.0


def test_metrics_apply_only_to_their_kinds(results):
    pairs = {(c.scenario.kind, c.metric.name) for c in results.comparisons()}
    assert ("latency", "records_per_second") not in pairs
    assert ("produce", "latency_p99_ms") not in pairs
    assert ("latency", "latency_p999_ms") in pairs


def test_json_round_trip_keeps_every_measurement(results, tmp_path):
    path = tmp_path / "results.json"
    results.save(path)
    loaded = Results.load(path)
    assert loaded.measurements == results.measurements
    assert [s.key for s in loaded.scenarios] == [s.key for s in results.scenarios]
    assert loaded.conditions == results.conditions
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT
    goal_rows = [c for c in data["comparisons"] if c["goal"] is not None]
    assert len(goal_rows) == 3 and all(row["goal_met"] is True for row in goal_rows)
    assert not list(tmp_path.glob("*.partial"))


def test_save_replaces_the_old_file_whole(results, tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    results.save(path)
    assert Results.load(path).plan == results.plan


@pytest.mark.parametrize("text, message", [
    ("{not json", "not JSON"),
    ('{"format": "something-else/9"}', "something-else/9"),
    ("[1, 2]", "list"),
    (json.dumps({"format": FORMAT, "plan": "quick"}), "malformed"),
    (json.dumps({"format": FORMAT, "plan": "q", "rounds": 1, "scenarios": [],
                 "measurements": [{"scenario": "x", "broker": "kop", "round": 0,
                                   "unknown_field": 1}]}), "malformed"),
])
def test_unreadable_results_are_refused_clearly(tmp_path, text, message):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(ResultsFormatError, match=message):
        Results.load(path)


def test_a_measurement_without_latency_round_trips():
    measurement = Measurement("produce/x/1B/1p", PEER, 1, records=5, error=None)
    assert Measurement.from_json(measurement.to_json()) == measurement
