"""The workloads the benchmark drives through real Kafka clients, one module per kind.

Each workload takes a bootstrap address, a topic that already exists and a `Scenario`, runs
for the scenario's time, and returns an `Outcome`: how many records moved, how many payload
bytes, how long it took and, for latency runs, the end-to-end latencies. A workload that
cannot finish cleanly (records not acknowledged, records not read back) raises
`WorkloadError` instead of returning a flattering figure.
"""

from __future__ import annotations

from benchmarks.workloads.outcome import Outcome, WorkloadError
from benchmarks.workloads.runner import run_workload

__all__ = ["Outcome", "WorkloadError", "run_workload"]
