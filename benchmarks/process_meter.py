"""CPU seconds and peak resident memory of one running process, read from Linux's /proc.

Both brokers run as a single process (kop standalone holds its storage node and metadata store
in-process; Tansu is one Rust binary), so the broker's own figures are those of one pid, all
threads included. No psutil: /proc/<pid>/stat and /proc/<pid>/status carry everything needed.

Peak RSS is the kernel's high-water mark (VmHWM). Writing "5" to /proc/<pid>/clear_refs resets
it to the current RSS, which lets each workload report its own peak instead of the peak of
everything that ran before it; where the kernel refuses, the peak is the process's lifetime
peak and `peak_is_per_workload` says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


class ProcessGoneError(RuntimeError):
    """The measured process no longer exists (it crashed or was stopped)."""


def parse_cpu_seconds(stat_text: str) -> float:
    """User + system CPU seconds from the text of /proc/<pid>/stat.

    The second field (the command name) is in parentheses and may itself hold spaces or
    parentheses, so fields are counted from the last ")".
    """
    after_name = stat_text[stat_text.rindex(")") + 2:].split()
    # after_name[0] is field 3 (state); utime and stime are fields 14 and 15.
    user_ticks, system_ticks = int(after_name[11]), int(after_name[12])
    return (user_ticks + system_ticks) / _CLOCK_TICKS_PER_SECOND


def parse_status_kib(status_text: str, field: str) -> int:
    """A "Name:   1234 kB" line of /proc/<pid>/status, in bytes."""
    for line in status_text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) * 1024
    raise ValueError(f"/proc status has no {field} line")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_rss_bytes: int


class ProcessMeter:
    """    meter = ProcessMeter(pid)
    meter.start()              # reset the peak, remember the CPU seconds so far
    ...workload...
    usage = meter.stop()       # CPU seconds spent since start(), peak RSS since start()
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._proc = Path("/proc") / str(pid)
        self._cpu_at_start: float | None = None
        self.peak_is_per_workload = True

    def _read(self, name: str) -> str:
        try:
            return (self._proc / name).read_text()
        except (FileNotFoundError, ProcessLookupError) as exc:
            raise ProcessGoneError(f"process {self.pid} is gone") from exc

    def alive(self) -> bool:
        """False once the process has exited (a zombie awaiting its parent counts as exited)."""
        try:
            stat = self._read("stat")
        except ProcessGoneError:
            return False
        return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")

    def cpu_seconds(self) -> float:
        return parse_cpu_seconds(self._read("stat"))

    def rss_bytes(self) -> int:
        return parse_status_kib(self._read("status"), "VmRSS")

    def peak_rss_bytes(self) -> int:
        return parse_status_kib(self._read("status"), "VmHWM")

    def reset_peak(self) -> None:
        try:
            (self._proc / "clear_refs").write_text("5")
        except PermissionError:
            self.peak_is_per_workload = False
        except FileNotFoundError as exc:
            raise ProcessGoneError(f"process {self.pid} is gone") from exc

    def start(self) -> None:
        self.reset_peak()
        self._cpu_at_start = self.cpu_seconds()

    def stop(self) -> Usage:
        if self._cpu_at_start is None:
            raise RuntimeError("ProcessMeter.stop() without start()")
        usage = Usage(self.cpu_seconds() - self._cpu_at_start, self.peak_rss_bytes())
        self._cpu_at_start = None
        return usage
