"""Cells run isolated: a hang is killed at its deadline, a crash is a failure, never a pass."""

from __future__ import annotations

import sys

from compat_tests.runner import Runner, selected


def runner_running(code: str) -> Runner:
    return Runner("127.0.0.1:1", "test", cell_command=lambda: [sys.executable, "-c", code])


def test_a_hanging_cell_is_killed_at_its_deadline_and_fails():
    outcome = runner_running("import time; time.sleep(120)").run_cell("kafka-python", "seek", 1.0)
    assert outcome.status == "fail"
    assert "timed out after 1 s" in outcome.detail
    assert outcome.seconds < 30


def test_a_cell_that_dies_without_a_result_fails_with_its_last_error_line():
    outcome = runner_running("import sys; sys.exit('library crashed')").run_cell(
        "kafka-python", "seek", 30.0
    )
    assert outcome.status == "fail"
    assert "library crashed" in outcome.detail


def test_a_cell_result_line_is_read_from_stdout():
    code = 'print("noise"); print(\'COMPAT-RESULT {"status": "n/a", "detail": "cannot"}\')'
    outcome = runner_running(code).run_cell("kcat", "transactions", 30.0)
    assert (outcome.status, outcome.detail) == ("n/a", "cannot")


def test_unavailable_client_is_n_a_for_every_scenario(monkeypatch):
    monkeypatch.setattr("compat_tests.runner.unavailable_reason", lambda name: "not installed")
    matrix = runner_running("raise SystemExit(1)").run(["kcat"], ["seek", "cross_client"], "kop")
    assert {matrix.get(s, "kcat").status for s in ["seek", "cross_client"]} == {"n/a"}


def test_selection_keeps_catalogue_order_and_refuses_unknown_names():
    assert selected("b,a", ["a", "b", "c"], "clients") == ["a", "b"]
    assert selected(None, ["a", "b"], "clients") == ["a", "b"]
    try:
        selected("a,zz", ["a"], "clients")
    except ValueError as error:
        assert "unknown clients: zz" in str(error)
    else:
        raise AssertionError("an unknown client was accepted")
