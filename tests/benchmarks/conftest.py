"""Synthetic results for the harness's own tests: three rounds of the quick plan."""

from __future__ import annotations

import pytest

from benchmarks.plan import quick_plan
from benchmarks.results import KOP, PEER, LatencyFigures, Measurement, Results

# records/s by (broker, round) for the produce scenario; the ratios per round are
# 0.5, 1.0 and 2.0 (kop / Tansu), and the medians are 200 and 200.
PRODUCE_RATES = {(KOP, 0): 100, (KOP, 1): 200, (KOP, 2): 400,
                 (PEER, 0): 200, (PEER, 1): 200, (PEER, 2): 200}


def make_results() -> Results:
    plan = quick_plan()
    results = Results(plan.name, plan.rounds, list(plan.scenarios), {"note": "synthetic"},
                      {KOP: {"description": "kop", "version": "abc"},
                       PEER: {"description": "tansu", "version": "0.6.0"}})
    for scenario in plan.scenarios:
        for (broker, round_number), rate in PRODUCE_RATES.items():
            if scenario.kind == "produce":
                results.measurements.append(Measurement(
                    scenario.key, broker, round_number, records=rate * 10,
                    payload_bytes=rate * 10 * 1024, seconds=10.0, broker_cpu_seconds=2.0,
                    broker_peak_rss_bytes=50_000_000, load_average=2.0 + round_number))
            elif scenario.kind == "consume":
                failed = broker == KOP and round_number == 2
                results.measurements.append(Measurement(
                    scenario.key, broker, round_number,
                    error="WorkloadError: stalled" if failed else None,
                    **({} if failed else {"records": 1000, "payload_bytes": 1_024_000,
                                          "seconds": 1.0 if broker == KOP else 2.0})))
            else:
                scale = 1.0 if broker == KOP else 4.0
                latencies = tuple(sorted(scale * (v + 1) / 100 for v in range(1000)))
                results.measurements.append(Measurement(
                    scenario.key, broker, round_number, records=1000,
                    payload_bytes=1_024_000, seconds=1.0, broker_cpu_seconds=0.1,
                    broker_peak_rss_bytes=40_000_000, latency=LatencyFigures.of(latencies),
                    warning="odd watermark" if broker == PEER and round_number == 0 else None))
    return results


@pytest.fixture
def results() -> Results:
    return make_results()
