"""benchmarks.stats: medians with spread, nearest-rank percentiles, ratios, CDF points."""

import math

import pytest

from benchmarks.stats import CDF_FRACTIONS, Summary, cdf_points, percentile, ratio


def test_summary_is_median_and_range_not_best_run():
    summary = Summary.of([30.0, 10.0, 20.0])
    assert (summary.median, summary.minimum, summary.maximum, summary.count) == (20, 10, 30, 3)
    assert summary.relative_spread == pytest.approx(1.0)


def test_summary_of_even_count_takes_middle_mean():
    assert Summary.of([1.0, 2.0, 3.0, 10.0]).median == 2.5


def test_summary_needs_values():
    with pytest.raises(ValueError):
        Summary.of([])


def test_summary_json_round_trip():
    summary = Summary.of([1.5, 2.5, 9.0])
    assert Summary.from_json(summary.to_json()) == summary


def test_spread_of_zero_median():
    assert Summary.of([0.0, 0.0]).relative_spread == 0.0
    assert Summary.of([-1.0, 0.0, 1.0]).relative_spread == math.inf


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.999) == 100
    assert percentile(values, 0.0) == 1
    assert percentile(values, 1.0) == 100


def test_p999_of_a_thousand_values_is_the_largest():
    values = [float(v) for v in range(1000)]
    assert percentile(values, 0.999) == 998
    assert percentile(values + [5000.0], 0.999) == 999


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_percentile_refuses_fractions_outside_zero_one(fraction):
    with pytest.raises(ValueError):
        percentile([1.0], fraction)


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_ratio_edge_cases():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(0.0, 0.0) == 1.0
    assert ratio(1.0, 0.0) == math.inf


def test_cdf_points_rise_and_end_at_the_maximum():
    values = sorted(float(v) for v in range(10_000))
    points = cdf_points(values)
    assert len(points) == len(CDF_FRACTIONS)
    latencies = [value for value, _ in points]
    fractions = [fraction for _, fraction in points]
    assert latencies == sorted(latencies)
    assert fractions == sorted(fractions)
    assert points[-1] == (9999.0, 1.0)
    assert (percentile(values, 0.99), 0.99) in points
