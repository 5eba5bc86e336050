"""Runs client x scenario cells as subprocesses, a few at a time, each under a deadline.

A cell that overruns its deadline is killed with its whole process group (the
kafkajs adapter's Node.js child included) and reported as a failure; one hang
cannot stall the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from compat_tests.cell import RESULT_PREFIX
from compat_tests.clients import CLIENTS, unavailable_reason
from compat_tests.model import Outcome
from compat_tests.report import Matrix
from compat_tests.scenarios import CROSS_CLIENT, SCENARIOS

CROSS_CLIENT_STEP_SECONDS = 90.0
CellCommand = Callable[[], list[str]]


def default_cell_command() -> list[str]:
    return [sys.executable, "-m", "compat_tests.cell"]


class Runner:
    def __init__(
        self,
        bootstrap: str,
        run_id: str,
        jobs: int = 3,
        log_dir: Path | None = None,
        cell_command: CellCommand = default_cell_command,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.bootstrap = bootstrap
        self.run_id = run_id
        self.jobs = jobs
        self.log_dir = log_dir
        self.cell_command = cell_command
        self.progress = progress

    # -- one cell ------------------------------------------------------------------

    def run_cell(self, client: str, scenario: str, deadline: float, **extra: Any) -> Outcome:
        request = {
            "client": client,
            "scenario": scenario,
            "bootstrap": self.bootstrap,
            "run_id": self.run_id,
            **extra,
        }
        started = time.monotonic()
        process = subprocess.Popen(
            self.cell_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so a kill takes its children too
        )
        try:
            stdout, stderr = process.communicate(json.dumps(request).encode(), timeout=deadline)
            outcome = self._parse(stdout, stderr, process.returncode)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            outcome = Outcome("fail", f"timed out after {deadline:g} s; the cell was killed")
        outcome.seconds = time.monotonic() - started
        self._keep_log(client, scenario, extra.get("step"), stderr)
        self.progress(
            f"{scenario:<22} {client:<16} {outcome.status:<5} {outcome.seconds:6.1f}s "
            f"{outcome.detail[:100]}"
        )
        return outcome

    @staticmethod
    def _parse(stdout: bytes, stderr: bytes, returncode: int) -> Outcome:
        for line in reversed(stdout.decode(errors="replace").splitlines()):
            if line.startswith(RESULT_PREFIX):
                return Outcome.from_json(json.loads(line[len(RESULT_PREFIX) :]))
        last_error = next(
            (ln for ln in reversed(stderr.decode(errors="replace").splitlines()) if ln.strip()), ""
        )
        return Outcome("fail", f"the cell exited {returncode} without a result: {last_error}")

    def _keep_log(self, client: str, scenario: str, step: str | None, stderr: bytes) -> None:
        if self.log_dir is None or not stderr:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = f"{scenario}{'-' + step if step else ''}-{client}.log"
        (self.log_dir / name).write_bytes(stderr)

    # -- the whole matrix ----------------------------------------------------------

    def run(self, clients: list[str], scenarios: list[str], broker: str) -> Matrix:
        matrix = Matrix.empty(broker, self.bootstrap, clients, scenarios)
        runnable = []
        for client in clients:
            reason = unavailable_reason(client)
            for scenario in scenarios:
                if reason is not None:
                    matrix.set(scenario, client, Outcome("n/a", f"client unavailable: {reason}"))
                elif scenario != CROSS_CLIENT:
                    runnable.append((client, scenario))
        # Slow scenarios first, so the pool's tail is short.
        runnable.sort(key=lambda cell: -SCENARIOS[cell[1]].deadline_seconds)
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = {
                cell: pool.submit(self.run_cell, *cell, SCENARIOS[cell[1]].deadline_seconds)
                for cell in runnable
            }
            for (client, scenario), future in futures.items():
                matrix.set(scenario, client, future.result())
        if CROSS_CLIENT in scenarios:
            available = [c for c in clients if unavailable_reason(c) is None]
            self._cross_client(matrix, available)
        return matrix

    def _cross_client(self, matrix: Matrix, clients: list[str]) -> None:
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            produced = dict(
                zip(
                    clients,
                    pool.map(
                        lambda c: self.run_cell(
                            c, CROSS_CLIENT, CROSS_CLIENT_STEP_SECONDS, step="produce"
                        ),
                        clients,
                    ),
                    strict=True,
                )
            )
            sources = [
                {"producer": c, **produced[c].data} for c in clients if produced[c].status == "pass"
            ]

            def consume(client: str) -> Outcome:
                others = [s for s in sources if s["producer"] != client]
                return self.run_cell(
                    client, CROSS_CLIENT, CROSS_CLIENT_STEP_SECONDS, step="consume", sources=others
                )

            consumed = dict(zip(clients, pool.map(consume, clients), strict=True))
        matrix.set_cross_client(produced, consumed)


def selected(names: str | None, known: list[str], what: str) -> list[str]:
    """Parses a comma-separated selection, keeping the catalogue's order."""
    if not names:
        return list(known)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return [n for n in known if n in wanted]


ALL_CLIENTS = list(CLIENTS)
