"""The suite must be able to fail: a broker that loses records fails the round trip for
every client, whether it drops batches on the way in (Produce) or on the way out (Fetch).

Each fault has a control: the same cells pass against the same broker without the
proxy, so the failures come from the fault, not from the client or the broker.
"""

from __future__ import annotations

import json
import uuid

from compat_tests.brokers import Broker
from compat_tests.cli import main
from compat_tests.clients import CLIENTS, unavailable_reason
from compat_tests.model import Outcome
from compat_tests.report import Matrix
from compat_tests.runner import Runner

AVAILABLE = [name for name in CLIENTS if unavailable_reason(name) is None]
# kcat (librdkafka 2.0.2) cannot talk to Tansu at all: its ApiVersions answer writes
# default-valued tagged fields ("Read underflow", PITFALLS.md #1).
TANSU_CLIENTS = [name for name in AVAILABLE if name != "kcat"]


def round_trips(bootstrap: str, clients: list[str]) -> dict[str, Outcome]:
    """The round_trip cell of every client, run side by side."""
    runner = Runner(bootstrap, uuid.uuid4().hex[:8], jobs=len(clients))
    matrix = runner.run(clients, ["round_trip"], "under-test")
    return {client: matrix.get("round_trip", client) for client in clients}


def statuses(outcomes: dict[str, Outcome]) -> dict[str, str]:
    return {client: outcome.status for client, outcome in outcomes.items()}


def details(outcomes: dict[str, Outcome]) -> str:
    return "\n".join(f"{client}: {o.status} {o.detail}" for client, o in outcomes.items())


def test_round_trip_passes_for_every_client_against_plain_kop(kop):
    outcomes = round_trips(kop.bootstrap, AVAILABLE)
    assert statuses(outcomes) == dict.fromkeys(AVAILABLE, "pass"), details(outcomes)


def test_round_trip_fails_for_every_client_when_fetched_batches_are_dropped(
    kop_dropping_fetched_batches,
):
    dropped_before = kop_dropping_fetched_batches.dropped
    outcomes = round_trips(kop_dropping_fetched_batches.bootstrap, AVAILABLE)
    assert kop_dropping_fetched_batches.dropped > dropped_before
    assert statuses(outcomes) == dict.fromkeys(AVAILABLE, "fail"), details(outcomes)
    assert all(outcome.detail for outcome in outcomes.values())  # the first error is named


def test_round_trip_passes_for_every_client_against_plain_tansu(tansu):
    outcomes = round_trips(tansu.bootstrap, TANSU_CLIENTS)
    assert statuses(outcomes) == dict.fromkeys(TANSU_CLIENTS, "pass"), details(outcomes)


def test_round_trip_fails_for_every_client_when_produced_batches_are_dropped(
    tansu_dropping_produced_batches,
):
    dropped_before = tansu_dropping_produced_batches.dropped
    outcomes = round_trips(tansu_dropping_produced_batches.bootstrap, TANSU_CLIENTS)
    assert tansu_dropping_produced_batches.dropped > dropped_before
    assert statuses(outcomes) == dict.fromkeys(TANSU_CLIENTS, "fail"), details(outcomes)
    assert all(outcome.detail for outcome in outcomes.values())


def run_cli(bootstrap: str, tmp_path, baseline_status: str) -> int:
    baseline = Matrix.empty("broker", "", ["kafka-python"], ["round_trip"])
    baseline.set("round_trip", "kafka-python", Outcome(baseline_status))
    baseline.save(tmp_path / "baseline.json")
    return main(
        [
            "--bootstrap",
            bootstrap,
            "--clients",
            "kafka-python",
            "--scenarios",
            "round_trip",
            "--report",
            str(tmp_path / "report"),
            "--baseline",
            str(tmp_path / "baseline.json"),
            "--quiet",
        ]
    )


def test_baseline_regression_makes_the_command_exit_non_zero(
    tansu_dropping_produced_batches, tmp_path
):
    assert run_cli(tansu_dropping_produced_batches.bootstrap, tmp_path, "pass") == 1
    written = json.loads((tmp_path / "report" / "broker.json").read_text())
    assert written["results"]["round_trip"]["kafka-python"]["status"] == "fail"
    assert "**FAIL**" in (tmp_path / "report" / "broker.md").read_text()


def test_a_failure_the_baseline_already_had_is_not_a_regression(
    tansu_dropping_produced_batches, tmp_path
):
    assert run_cli(tansu_dropping_produced_batches.bootstrap, tmp_path, "fail") == 0


def test_no_regression_exits_zero(tansu, tmp_path):
    assert run_cli(tansu.bootstrap, tmp_path, "pass") == 0


def test_start_runs_one_broker_and_stops_it(monkeypatch, tmp_path):
    started = []

    class RecordingBroker(Broker):
        def start(self) -> Broker:
            result = super().start()
            started.append(self.process)
            return result

    monkeypatch.setattr("compat_tests.cli.Broker", RecordingBroker)
    code = main(
        ["--start", "tansu", "--clients", "kafka-python", "--scenarios", "round_trip"]
        + ["--report", str(tmp_path), "--quiet"]
    )
    assert code == 0
    assert len(started) == 1
    assert started[0].poll() is not None  # stopped, not left running
