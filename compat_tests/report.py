"""The client x scenario matrix: JSON for machines, Markdown for people, baseline checks.

JSON layout (`Matrix.to_json`):
    {"format": 1, "broker": "kop", "bootstrap": "...", "generated": "...",
     "clients": {"kafka-python": "3.0.12", ...}, "scenarios": {"round_trip": "summary", ...},
     "results": {"round_trip": {"kafka-python": {"status": "pass", "detail": "", ...}}},
     "cross_client": {"producer": {"consumer": {"status": ..., "detail": ...}}}}
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compat_tests.clients import CLIENTS
from compat_tests.model import Outcome
from compat_tests.scenarios import CROSS_CLIENT, CROSS_CLIENT_SUMMARY, SCENARIOS

FORMAT_VERSION = 1


class ReportError(Exception):
    """A matrix file that cannot be read (missing, not JSON, wrong format)."""


def _summary(scenario: str) -> str:
    if scenario == CROSS_CLIENT:
        return CROSS_CLIENT_SUMMARY
    known = SCENARIOS.get(scenario)
    return known.summary if known else ""


@dataclass
class Matrix:
    broker: str
    bootstrap: str
    clients: dict[str, str]
    scenarios: dict[str, str]
    results: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    cross_client: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    generated: str = ""

    @classmethod
    def empty(cls, broker: str, bootstrap: str, clients: list[str], scenarios: list[str]) -> Matrix:
        return cls(
            broker=broker,
            bootstrap=bootstrap,
            clients={c: CLIENTS[c].pinned if c in CLIENTS else "" for c in clients},
            scenarios={s: _summary(s) for s in scenarios},
            generated=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )

    def set(self, scenario: str, client: str, outcome: Outcome) -> None:
        self.results.setdefault(scenario, {})[client] = outcome

    def get(self, scenario: str, client: str) -> Outcome | None:
        return self.results.get(scenario, {}).get(client)

    def set_cross_client(self, produced: dict[str, Outcome], consumed: dict[str, Outcome]) -> None:
        """Fills the producer x consumer table and one verdict per client: a client
        passes when its records are read correctly by every other client and it reads
        every other client's records correctly. A failing pair counts against the side
        that fails with every partner (a consumer that reads nobody's records, or a
        producer whose records nobody reads), against both sides when that is unclear."""
        pairs: dict[str, dict[str, dict[str, str]]] = {p: {} for p in produced}
        for consumer, outcome in consumed.items():
            if outcome.status != "pass":
                for producer in produced:
                    if producer != consumer and produced[producer].status == "pass":
                        pairs[producer][consumer] = {
                            "status": outcome.status,
                            "detail": outcome.detail,
                        }
                continue
            for producer, verdict in outcome.data.get("consumed", {}).items():
                pairs[producer][consumer] = verdict
        self.cross_client = pairs
        for client in produced:
            if produced[client].status != "pass":
                verdict = Outcome(produced[client].status, f"producing: {produced[client].detail}")
            else:
                failures = [
                    f"{producer} -> {consumer}: {result['detail']}"
                    for producer, row in pairs.items()
                    for consumer, result in row.items()
                    if result["status"] != "pass" and client in _blamed(pairs, producer, consumer)
                ]
                verdict = Outcome("fail", failures[0]) if failures else Outcome("pass")
            verdict.seconds = produced[client].seconds + consumed[client].seconds
            self.set(CROSS_CLIENT, client, verdict)

    # -- counting ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        totals = {"pass": 0, "fail": 0, "n/a": 0}
        for row in self.results.values():
            for outcome in row.values():
                totals[outcome.status] = totals.get(outcome.status, 0) + 1
        return totals

    # -- JSON ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "broker": self.broker,
            "bootstrap": self.bootstrap,
            "generated": self.generated,
            "clients": self.clients,
            "scenarios": self.scenarios,
            "results": {
                scenario: {client: outcome.to_json() for client, outcome in row.items()}
                for scenario, row in self.results.items()
            },
            "cross_client": self.cross_client,
        }

    @classmethod
    def from_json(cls, data: Any) -> Matrix:
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
            raise ReportError(f"not a compatibility matrix of format {FORMAT_VERSION}")
        try:
            return cls(
                broker=data["broker"],
                bootstrap=data.get("bootstrap", ""),
                clients=dict(data["clients"]),
                scenarios=dict(data["scenarios"]),
                results={
                    scenario: {c: Outcome.from_json(o) for c, o in row.items()}
                    for scenario, row in data["results"].items()
                },
                cross_client=data.get("cross_client") or {},
                generated=data.get("generated", ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReportError(f"malformed compatibility matrix: {exc!r}") from exc

    @classmethod
    def load(cls, path: Path) -> Matrix:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ReportError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path} is not JSON: {exc}") from exc
        try:
            return cls.from_json(data)
        except ReportError as exc:
            raise ReportError(f"{path}: {exc}") from exc

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")


def _blamed(pairs: dict[str, dict[str, dict[str, str]]], producer: str, consumer: str) -> set[str]:
    """Which side a failing producer -> consumer pair counts against (see set_cross_client)."""
    consumer_fails_all = all(
        row[consumer]["status"] != "pass" for row in pairs.values() if consumer in row
    )
    producer_fails_all = all(result["status"] != "pass" for result in pairs[producer].values())
    if consumer_fails_all and not producer_fails_all:
        return {consumer}
    if producer_fails_all and not consumer_fails_all:
        return {producer}
    return {producer, consumer}


# -- Markdown ----------------------------------------------------------------------


def _cell(outcome: Outcome | None) -> str:
    if outcome is None:
        return "–"
    return {"pass": "pass", "fail": "**FAIL**", "n/a": "n/a"}[outcome.status]


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(matrix: Matrix, reference: Matrix | None = None) -> str:
    clients = list(matrix.clients)
    counts = matrix.counts()
    lines = [
        f"# Compatibility matrix: {matrix.broker}",
        "",
        f"Generated {matrix.generated} by `python -m compat_tests` against {matrix.broker}. "
        f"{counts['pass']} pass, {counts['fail']} fail, {counts['n/a']} n/a.",
        "",
        "Clients: "
        + ", ".join(f"{name} {version}" for name, version in matrix.clients.items())
        + ".",
        "",
    ]
    if reference is not None:
        lines += [
            f"Each cell: {matrix.broker} / {reference.broker} (reference broker, same run).",
            "",
        ]
    lines += ["| scenario | " + " | ".join(clients) + " |", "|---" * (len(clients) + 1) + "|"]
    for scenario in matrix.scenarios:
        cells = []
        for client in clients:
            cell = _cell(matrix.get(scenario, client))
            if reference is not None:
                cell += " / " + _cell(reference.get(scenario, client))
            cells.append(cell)
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    lines += ["", "## Scenarios", ""]
    lines += [f"- **{name}**: {summary}" for name, summary in matrix.scenarios.items()]

    for status, title in (("fail", "Failures (first error)"), ("n/a", "Not applicable (reason)")):
        entries = [
            f"- {scenario} × {client}: {_escape(outcome.detail)}"
            for scenario in matrix.scenarios
            for client in clients
            if (outcome := matrix.get(scenario, client)) is not None and outcome.status == status
        ]
        if entries:
            lines += ["", f"## {title}", "", *entries]

    notes = [
        f"- {scenario} × {client}: {_escape(outcome.detail)}"
        for scenario in matrix.scenarios
        for client in clients
        if (outcome := matrix.get(scenario, client)) is not None
        and outcome.status == "pass"
        and outcome.detail
    ]
    if notes:
        lines += ["", "## Notes on passes", "", *notes]

    if matrix.cross_client:
        producers = list(matrix.cross_client)
        lines += [
            "",
            "## Cross-client (row produced, column consumed)",
            "",
            "| producer \\ consumer | " + " | ".join(producers) + " |",
            "|---" * (len(producers) + 1) + "|",
        ]
        for producer in producers:
            row = matrix.cross_client[producer]
            cells = [
                "·" if consumer == producer else (row.get(consumer, {}).get("status", "–"))
                for consumer in producers
            ]
            lines.append(f"| {producer} | " + " | ".join(cells) + " |")

    if reference is not None:
        lines += ["", f"## Differences from {reference.broker}", ""]
        differences = [
            f"| {scenario} | {client} | {_cell(mine)} | {_cell(theirs)} |"
            for scenario in matrix.scenarios
            for client in clients
            if (mine := matrix.get(scenario, client)) is not None
            and (theirs := reference.get(scenario, client)) is not None
            and mine.status != theirs.status
        ]
        if differences:
            lines += [
                f"| scenario | client | {matrix.broker} | {reference.broker} |",
                "|---|---|---|---|",
                *differences,
            ]
        else:
            lines.append("None: every cell has the same status.")
    return "\n".join(lines) + "\n"


def regressions(baseline: Matrix, current: Matrix) -> list[str]:
    """Cells that passed in the baseline and do not pass now (cells not run now are skipped)."""
    found = []
    for scenario, row in baseline.results.items():
        for client, before in row.items():
            now = current.get(scenario, client)
            if before.status == "pass" and now is not None and now.status != "pass":
                found.append(f"{scenario} × {client}: was pass, now {now.status}: {now.detail}")
    return found
