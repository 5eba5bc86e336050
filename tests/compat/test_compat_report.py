"""The matrix: JSON round trip, Markdown content, baseline regressions, bad files."""

from __future__ import annotations

import pytest

from compat_tests.model import Outcome
from compat_tests.report import Matrix, ReportError, regressions, render_markdown


def matrix_with(cells: dict[tuple[str, str], Outcome], broker: str = "kop") -> Matrix:
    matrix = Matrix.empty(
        broker, "127.0.0.1:9092", ["kafka-python", "kcat"], ["round_trip", "seek"]
    )
    for (scenario, client), outcome in cells.items():
        matrix.set(scenario, client, outcome)
    return matrix


def test_json_round_trip_keeps_every_cell(tmp_path):
    matrix = matrix_with(
        {
            ("round_trip", "kafka-python"): Outcome("pass", "note"),
            ("seek", "kcat"): Outcome("n/a", "kcat cannot seek"),
            ("seek", "kafka-python"): Outcome("fail", "end offset 9, expected 12"),
        }
    )
    matrix.save(tmp_path / "m.json")
    loaded = Matrix.load(tmp_path / "m.json")
    assert loaded.to_json() == matrix.to_json()
    assert loaded.counts() == {"pass": 1, "fail": 1, "n/a": 1}


def test_markdown_shows_first_error_reason_and_reference_column():
    mine = matrix_with(
        {
            ("round_trip", "kafka-python"): Outcome("fail", "offsets differ"),
            ("round_trip", "kcat"): Outcome("n/a", "no timestamps"),
        }
    )
    reference = matrix_with({("round_trip", "kafka-python"): Outcome("pass")}, broker="tansu")
    text = render_markdown(mine, reference)
    assert "| round_trip | **FAIL** / pass | n/a / – |" in text
    assert "round_trip × kafka-python: offsets differ" in text
    assert "round_trip × kcat: no timestamps" in text
    assert "## Differences from tansu" in text


def test_regression_is_a_pass_that_no_longer_passes():
    baseline = matrix_with(
        {
            ("round_trip", "kafka-python"): Outcome("pass"),
            ("seek", "kafka-python"): Outcome("fail", "old"),
            ("seek", "kcat"): Outcome("pass"),  # not run now: not a regression
        }
    )
    current = matrix_with(
        {
            ("round_trip", "kafka-python"): Outcome("n/a", "now unavailable"),
            ("seek", "kafka-python"): Outcome("pass"),
        }
    )
    assert regressions(baseline, current) == [
        "round_trip × kafka-python: was pass, now n/a: now unavailable"
    ]
    assert regressions(current, current) == []


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not JSON"),
        ('{"format": 99}', "not a compatibility matrix"),
        ('{"format": 1, "broker": "kop"}', "malformed"),
        (
            '{"format": 1, "broker": "x", "clients": {}, "scenarios": {}, "results": {"s": {"c": {}}}}',
            "malformed",
        ),
    ],
)
def test_bad_matrix_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ReportError, match=message):
        Matrix.load(path)


def test_missing_matrix_file_is_refused_clearly(tmp_path):
    with pytest.raises(ReportError, match="cannot read"):
        Matrix.load(tmp_path / "absent.json")


def test_cross_client_verdict_blames_both_sides_of_a_failing_pair():
    matrix = Matrix.empty("kop", "", ["a", "b", "c"], ["cross_client"])
    produced = {
        c: Outcome("pass", data={"topic": f"t-{c}", "sets_timestamps": True}) for c in "abc"
    }
    ok = {"status": "pass", "detail": ""}
    consumed = {
        "a": Outcome("pass", data={"consumed": {"b": ok, "c": ok}}),
        "b": Outcome(
            "pass", data={"consumed": {"a": {"status": "fail", "detail": "value differs"}, "c": ok}}
        ),
        "c": Outcome("pass", data={"consumed": {"a": ok, "b": ok}}),
    }
    matrix.set_cross_client(produced, consumed)
    assert matrix.get("cross_client", "a").status == "fail"
    assert matrix.get("cross_client", "b").detail == "a -> b: value differs"
    assert matrix.get("cross_client", "c").status == "pass"
    assert matrix.cross_client["a"]["b"]["status"] == "fail"


def test_cross_client_blames_the_side_that_fails_with_every_partner():
    matrix = Matrix.empty("tansu", "", ["a", "b", "c"], ["cross_client"])
    produced = {c: Outcome("pass") for c in "abc"}
    ok = {"status": "pass", "detail": ""}
    cannot_connect = Outcome("fail", "cannot connect")  # c reads nobody's records
    consumed = {
        "a": Outcome("pass", data={"consumed": {"b": ok, "c": ok}}),
        "b": Outcome("pass", data={"consumed": {"a": ok, "c": ok}}),
        "c": cannot_connect,
    }
    matrix.set_cross_client(produced, consumed)
    assert {x: matrix.get("cross_client", x).status for x in "abc"} == {
        "a": "pass",
        "b": "pass",
        "c": "fail",
    }
    assert matrix.get("cross_client", "c").detail == "a -> c: cannot connect"
    assert matrix.cross_client["a"]["c"]["status"] == "fail"  # the table still shows the pair
