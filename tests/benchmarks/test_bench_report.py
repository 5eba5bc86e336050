"""benchmarks.report: the Markdown tables and PNG plots people read, from results alone."""

import sys

import pytest

from benchmarks.report import (
    LATENCY_PNG,
    RESULTS_MARKDOWN,
    THROUGHPUT_PNG,
    format_number,
    main,
    markdown_report,
    plot_latency_cdf,
    plot_throughput,
    write_report,
)
from benchmarks.results import KOP, Results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("value, text", [
    (45_123.0, "45,100"), (312.4, "312"), (4.123, "4.12"), (0.03512, "0.0351"), (0.0, "0"),
    (1_000_000.0, "1,000,000"), (99.96, "100.0"),
])
def test_numbers_keep_three_significant_figures(value, text):
    assert format_number(value) == text


def _row(markdown: str, starts_with: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(starts_with))


def test_goal_table_shows_both_brokers_ratio_and_verdict(results):
    markdown = markdown_report(results)
    produce = _row(markdown, "| produce confluent-kafka 1 KiB, 1 partition: rec/s")
    assert "| 200 (100–400) | 200 (200–200) |" in produce
    assert "1.00× (0.50–2.00)" in produce and "≥ 1×" in produce and "**met**" in produce
    latency = _row(markdown, "| latency confluent-kafka 1 KiB, 1 partition, 1,000 rec/s: ms")
    assert "0.25×" in latency and "≤ 1.5×" in latency


def test_a_missed_goal_says_so(results):
    results.measurements = [m for m in results.measurements
                            if not (m.broker == KOP and m.scenario.startswith("produce")
                                    and m.round != 0)]
    produce = _row(markdown_report(results), "| produce confluent-kafka 1 KiB, 1 partition: rec/s")
    assert "0.50×" in produce and "**not met**" in produce


def test_report_lists_failures_warnings_and_conditions(results):
    markdown = markdown_report(results)
    assert "round 2, kop, consume/confluent-kafka/1024B/1p: WorkloadError: stalled" in markdown
    assert "- tansu: 2 of 12 runs, for example:" in markdown
    assert "  - round 0, latency/confluent-kafka/1024B/1p/1000rps: odd watermark" in markdown
    assert "- note: synthetic" in markdown
    assert "- 1-minute load average at the end of each run: 2.0 to 4.0, median 3.0" in markdown
    assert "| kop p99 | Tansu p99 | kop / Tansu |" in markdown


def test_plots_are_png_files(results, tmp_path):
    assert plot_throughput(results, tmp_path / "t.png")
    assert plot_latency_cdf(results, tmp_path / "l.png")
    for name in ("t.png", "l.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000


def test_nothing_to_plot_writes_no_file(results, tmp_path):
    empty = Results(results.plan, results.rounds, results.scenarios)
    assert not plot_throughput(empty, tmp_path / "t.png")
    assert not plot_latency_cdf(empty, tmp_path / "l.png")
    assert not list(tmp_path.iterdir())


def test_report_command_regenerates_everything_from_the_json(results, tmp_path, capsys):
    results.save(tmp_path / "results.json")
    assert main([str(tmp_path / "results.json")]) == 0
    for name in (RESULTS_MARKDOWN, THROUGHPUT_PNG, LATENCY_PNG):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / RESULTS_MARKDOWN).read_text() == markdown_report(results)


def test_report_command_on_a_bad_file_explains_and_fails(tmp_path, capsys):
    bad = tmp_path / "results.json"
    bad.write_text('{"format": "nope"}')
    assert main([str(bad)]) == 2
    assert "not a kop-benchmarks/1 results file" in capsys.readouterr().err
    assert not (tmp_path / RESULTS_MARKDOWN).exists()


def test_write_report_names_what_it_wrote(results, tmp_path):
    written = write_report(results, tmp_path / "out")
    assert [p.name for p in written] == [RESULTS_MARKDOWN, THROUGHPUT_PNG, LATENCY_PNG]


def test_many_warnings_are_summarised_not_listed(results):
    from dataclasses import replace

    results.measurements = [replace(m, warning="short watermark") if m.broker == "tansu" else m
                            for m in results.measurements]
    markdown = markdown_report(results)
    assert "- tansu: 12 of 12 runs, for example:" in markdown
    assert markdown.count(": short watermark") == 3
    assert "  - and 9 more (all in the JSON)" in markdown


def test_without_matplotlib_the_tables_are_still_written(results, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    written = write_report(results, tmp_path)
    assert [p.name for p in written] == [RESULTS_MARKDOWN]
    assert "plots skipped: matplotlib is not installed" in capsys.readouterr().err
    assert not (tmp_path / THROUGHPUT_PNG).exists()
