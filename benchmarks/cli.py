"""`python -m benchmarks [--quick]`: kop beside Tansu, same run, same machine, same clients.

Runs the plan (see benchmarks/plan.py), prints one line per run as it goes, and writes
results.json, RESULTS.md, throughput.png and latency_cdf.png into --out (reports/bench for a
full run, reports/bench/quick for --quick). The JSON is saved after every round, so an
interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from benchmarks import machine
from benchmarks.brokers import REPO_ROOT, BrokerUnderTest, KopBroker, TansuBroker
from benchmarks.plan import Plan, Scenario, full_plan, quick_plan
from benchmarks.report import format_number, write_report
from benchmarks.results import METRICS, Measurement, Results
from benchmarks.run import run_plan
from benchmarks.workloads import settings

DEFAULT_OUT = REPO_ROOT / "reports" / "bench"


def select_scenarios(plan: Plan, only: str | None) -> Plan:
    """Keep scenarios whose key contains `only`, plus the producers their consumers read."""
    if not only:
        return plan
    wanted = {s.key for s in plan.scenarios if only in s.key}
    wanted |= {s.produced_by for s in plan.scenarios if s.key in wanted and s.kind == "consume"}
    if not wanted:
        raise SystemExit(f"no scenario key contains {only!r}; keys: "
                         + ", ".join(s.key for s in plan.scenarios))
    return replace(plan, scenarios=tuple(s for s in plan.scenarios if s.key in wanted))


def initial_conditions(plan: Plan, workdir: Path, note: str | None) -> dict:
    import confluent_kafka

    conditions = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine.describe_machine(),
        "python": platform.python_version(),
        "load_average_at_start": machine.load_average(),
        "kop_data_filesystem": machine.filesystem_of(workdir),
        "fsync_at_start": machine.fsync_latency(workdir),
        "clients": (f"confluent-kafka {machine.package_version('confluent-kafka')} (librdkafka "
                    f"{confluent_kafka.libversion()[0]}), kafka-python "
                    f"{machine.package_version('kafka-python')}, aiokafka "
                    f"{machine.package_version('aiokafka')}; clients run in the benchmark "
                    "process, on the same machine"),
        "client_settings": (f"producers acks=all, linger {settings.LINGER_MS} ms (latency runs "
                            f"{settings.LATENCY_LINGER_MS} ms), idempotence off; consumers "
                            f"assign partitions, fetch.wait.max.ms={settings.FETCH_WAIT_MAX_MS}"),
        "estimated_seconds": round(plan.estimated_seconds()),
    }
    if note:
        conditions["note"] = note
    return conditions


def describe(measurement: Measurement, scenario: Scenario) -> str:
    head = f"round {measurement.round} {measurement.broker:5} {scenario.label}"
    if not measurement.ok:
        return f"{head}: FAILED {measurement.error}"
    if measurement.latency is not None:
        figures = (f"p50 {format_number(measurement.latency.p50_ms)} ms, "
                   f"p99 {format_number(measurement.latency.p99_ms)} ms, "
                   f"p99.9 {format_number(measurement.latency.p999_ms)} ms")
    else:
        figures = (f"{format_number(METRICS['records_per_second'].value(measurement))} rec/s, "
                   f"{format_number(METRICS['megabytes_per_second'].value(measurement))} MB/s "
                   f"in {measurement.seconds:.1f} s")
    cpu = METRICS["broker_cpu_seconds_per_mb"].value(measurement)
    warning = "" if measurement.warning is None else f" (warning: {measurement.warning})"
    return (f"{head}: {figures}; broker {format_number(cpu)} CPU s/MB, "
            f"peak RSS {format_number(measurement.broker_peak_rss_bytes / 1e6)} MB{warning}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="the goal figures only, short runs (under two minutes)")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of each full-plan run (default 10)")
    parser.add_argument("--only", help="run only scenarios whose key contains this text, "
                                       "e.g. 'produce/confluent-kafka/1024B/1p'")
    parser.add_argument("--brokers", default="kop,tansu",
                        help="comma-separated, from kop,tansu (default both)")
    parser.add_argument("--out", type=Path, help="where results go (default reports/bench, "
                                                 "or reports/bench/quick with --quick)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where kop keeps its data during the run (a real disk)")
    parser.add_argument("--note", help="free text stored with the conditions, e.g. machine load")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def make_brokers(names: str, workdir: Path) -> list[BrokerUnderTest]:
    factories = {"kop": lambda: KopBroker(workdir), "tansu": TansuBroker}
    brokers = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in factories:
            raise SystemExit(f"unknown broker {name!r}: choose from {', '.join(factories)}")
        brokers.append(factories[name]())
    return brokers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # kafka-python warns whenever the benchmark's tight send loop holds its event loop
        # for over 100 ms: expected here, and it would bury the progress lines.
        logging.getLogger("kafka").setLevel(logging.ERROR)
    plan = quick_plan(args.rounds) if args.quick else full_plan(args.rounds, args.seconds)
    plan = select_scenarios(plan, args.only)
    out = args.out or (DEFAULT_OUT / "quick" if args.quick else DEFAULT_OUT)
    brokers = make_brokers(args.brokers, args.workdir)
    args.workdir.mkdir(parents=True, exist_ok=True)

    results = Results(plan.name, plan.rounds, list(plan.scenarios),
                      initial_conditions(plan, args.workdir, args.note),
                      {b.name: {"description": b.description, "version": b.version()}
                       for b in brokers})
    scenarios = {s.key: s for s in plan.scenarios}
    print(f"{plan.name} plan: {len(plan.scenarios)} scenarios x {plan.rounds} rounds x "
          f"{len(brokers)} brokers, about {plan.estimated_seconds(len(brokers)) / 60:.0f} min",
          flush=True)
    started = time.monotonic()
    try:
        run_plan(plan, brokers, results,
                 progress=lambda m, s: print(describe(m, scenarios[s.key]), flush=True),
                 after_round=lambda r: r.save(out / "results.json"))
    finally:
        results.conditions["finished"] = datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds")
        results.conditions["load_average_at_end"] = machine.load_average()
        results.conditions["fsync_at_end"] = machine.fsync_latency(args.workdir)
        results.conditions["wall_seconds"] = round(time.monotonic() - started)
        results.save(out / "results.json")
    for path in [out / "results.json", *write_report(results, out)]:
        print(f"wrote {path}")
    return 1 if results.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
