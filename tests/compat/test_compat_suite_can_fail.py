"""The suite must be able to fail: a broker that loses records fails the round trip."""

from __future__ import annotations

import json
import uuid

import pytest

from compat_tests.cli import main
from compat_tests.model import Outcome
from compat_tests.report import Matrix
from compat_tests.runner import Runner

CLIENTS_UNDER_PROXY = ["kafka-python", "confluent-kafka"]


def run_round_trip(bootstrap: str, client: str) -> Outcome:
    return Runner(bootstrap, uuid.uuid4().hex[:8]).run_cell(client, "round_trip", deadline=60)


@pytest.mark.parametrize("client", CLIENTS_UNDER_PROXY)
def test_round_trip_passes_against_the_plain_broker(tansu, client):
    outcome = run_round_trip(tansu.bootstrap, client)
    assert outcome.status == "pass", outcome.detail


@pytest.mark.parametrize("client", CLIENTS_UNDER_PROXY)
def test_round_trip_fails_when_every_other_batch_is_dropped(tansu_behind_dropping_proxy, client):
    dropped_before = tansu_behind_dropping_proxy.proxy.dropper.dropped
    outcome = run_round_trip(tansu_behind_dropping_proxy.bootstrap, client)
    assert tansu_behind_dropping_proxy.proxy.dropper.dropped > dropped_before
    assert outcome.status == "fail"
    assert outcome.detail  # the first error is reported


def test_baseline_regression_makes_the_command_exit_non_zero(tansu_behind_dropping_proxy, tmp_path):
    baseline = Matrix.empty("broker", "", ["kafka-python"], ["round_trip"])
    baseline.set("round_trip", "kafka-python", Outcome("pass"))
    baseline.save(tmp_path / "baseline.json")

    code = main(
        [
            "--bootstrap",
            tansu_behind_dropping_proxy.bootstrap,
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

    assert code == 1
    written = json.loads((tmp_path / "report" / "broker.json").read_text())
    assert written["results"]["round_trip"]["kafka-python"]["status"] == "fail"
    assert "**FAIL**" in (tmp_path / "report" / "broker.md").read_text()


def test_no_regression_exits_zero(tansu, tmp_path):
    baseline = Matrix.empty("broker", "", ["kafka-python"], ["round_trip"])
    baseline.set("round_trip", "kafka-python", Outcome("pass"))
    baseline.save(tmp_path / "baseline.json")

    code = main(
        [
            "--bootstrap",
            tansu.bootstrap,
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

    assert code == 0
