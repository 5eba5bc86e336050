"""What a workload returns, and the error it raises when it cannot give an honest figure."""

from __future__ import annotations

from dataclasses import dataclass


class WorkloadError(RuntimeError):
    """The workload did not complete: its figure would be wrong, so there is none."""


@dataclass(frozen=True)
class Outcome:
    records: int
    payload_bytes: int
    seconds: float
    # Sorted end-to-end latencies in milliseconds (latency workloads only).
    latencies_ms: tuple[float, ...] | None = None
    # Something odd the checks after the run noticed that does not void the figure.
    warning: str | None = None
