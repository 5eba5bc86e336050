"""`python -m compat_tests`: run unmodified Kafka clients x scenarios against a broker.

Examples:
    python -m compat_tests --bootstrap 127.0.0.1:9092 --report build/compat
    python -m compat_tests --start kop --reference tansu --report build/compat \\
        --baseline compat_tests/baseline/kop.json
    python -m compat_tests --start tansu --clients kafka-python,kcat --scenarios round_trip,seek
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import uuid
from pathlib import Path

from compat_tests.brokers import Broker, BrokerStartError
from compat_tests.clients import CLIENTS
from compat_tests.model import Outcome
from compat_tests.report import Matrix, ReportError, regressions, render_markdown
from compat_tests.runner import Runner, selected
from compat_tests.scenarios import ALL_SCENARIO_NAMES, SCENARIOS

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compat_tests",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--bootstrap", metavar="HOST:PORT", help="an already running broker")
    target.add_argument(
        "--start", choices=["kop", "tansu"], help="start this broker on a free port"
    )
    parser.add_argument(
        "--name", help="the broker's name in the report (default: --start or 'broker')"
    )
    parser.add_argument(
        "--reference", choices=["tansu"], help="also run against this reference broker"
    )
    parser.add_argument(
        "--reference-report",
        type=Path,
        metavar="FILE",
        help="compare with a matrix JSON from an earlier run",
    )
    parser.add_argument("--clients", help=f"comma-separated (default all: {','.join(CLIENTS)})")
    parser.add_argument("--scenarios", help="comma-separated (default all; see --list)")
    parser.add_argument(
        "--report", type=Path, metavar="DIR", help="write NAME.json and NAME.md here"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="exit 1 if a cell that passed in this matrix JSON now does not",
    )
    parser.add_argument("--jobs", type=int, default=3, help="cells run at once (default 3)")
    parser.add_argument("--list", action="store_true", help="list clients and scenarios, then exit")
    parser.add_argument("--quiet", action="store_true", help="no per-cell progress lines")
    return parser


def print_catalogue() -> None:
    print("clients:")
    for info in CLIENTS.values():
        print(f"  {info.name:<16} {info.pinned}")
    print("scenarios:")
    for name in ALL_SCENARIO_NAMES:
        summary = (
            SCENARIOS[name].summary if name in SCENARIOS else "every client pair, byte-identical"
        )
        print(f"  {name:<20} {summary}")


def run_against(
    kind: str | None,
    bootstrap: str | None,
    name: str,
    clients: list[str],
    scenarios: list[str],
    args: argparse.Namespace,
) -> Matrix:
    """Runs the selection against a broker (started here when `kind` is given)."""
    log = (
        None
        if args.quiet
        else (lambda line: print(f"[{name}] {line}", file=sys.stderr, flush=True))
    )
    run_id = uuid.uuid4().hex[:8]
    log_dir = args.report / "logs" / name if args.report else None
    with Broker(kind) if kind else contextlib.nullcontext() as broker:  # enter starts it
        address = broker.bootstrap if broker is not None else bootstrap
        runner = Runner(
            address, run_id, jobs=args.jobs, log_dir=log_dir, progress=log or (lambda line: None)
        )
        started = time.monotonic()
        matrix = runner.run(clients, scenarios, name)
        if log:
            log(f"done in {time.monotonic() - started:.0f} s: {matrix.counts()}")
        return matrix


def broker_failed_matrix(name: str, clients: list[str], scenarios: list[str], error: str) -> Matrix:
    matrix = Matrix.empty(name, "", clients, scenarios)
    for scenario in scenarios:
        for client in clients:
            matrix.set(scenario, client, Outcome("fail", error))
    return matrix


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print_catalogue()
        return EXIT_OK
    if not args.bootstrap and not args.start:
        parser.error("give --bootstrap HOST:PORT or --start kop|tansu")
    try:
        clients = selected(args.clients, list(CLIENTS), "clients")
        scenarios = selected(args.scenarios, ALL_SCENARIO_NAMES, "scenarios")
        baseline = Matrix.load(args.baseline) if args.baseline else None
        reference = Matrix.load(args.reference_report) if args.reference_report else None
    except (ValueError, ReportError) as exc:
        parser.error(str(exc))

    name = args.name or args.start or "broker"
    broker_error = None
    try:
        matrix = run_against(args.start, args.bootstrap, name, clients, scenarios, args)
    except BrokerStartError as exc:
        broker_error = str(exc)
        print(f"compat_tests: {broker_error}", file=sys.stderr)
        first_line = broker_error.splitlines()[0]
        matrix = broker_failed_matrix(name, clients, scenarios, first_line)
    if args.reference:
        try:
            reference = run_against(args.reference, None, args.reference, clients, scenarios, args)
        except BrokerStartError as exc:
            print(f"compat_tests: reference {exc}", file=sys.stderr)

    markdown = render_markdown(matrix, reference)
    if args.report:
        matrix.save(args.report / f"{name}.json")
        (args.report / f"{name}.md").write_text(markdown)
        if args.reference and reference is not None:
            reference.save(args.report / f"{reference.broker}.json")
            (args.report / f"{reference.broker}.md").write_text(render_markdown(reference))
        print(f"compat_tests: wrote {args.report / (name + '.md')}", file=sys.stderr)
    else:
        print(markdown)

    if baseline is not None:
        found = regressions(baseline, matrix)
        if found:
            print(
                f"compat_tests: {len(found)} regression(s) against {args.baseline}:",
                file=sys.stderr,
            )
            for line in found:
                print(f"  {line}", file=sys.stderr)
            return EXIT_REGRESSION
        print(f"compat_tests: no regression against {args.baseline}", file=sys.stderr)
    return EXIT_USAGE if broker_error and baseline is None else EXIT_OK
