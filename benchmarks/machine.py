"""What the machine was like during a run: CPUs, load, the disk kop writes to and its fsync.

Kept with the results because on a shared machine they explain figures: a busy CPU slows
every client and broker alike, and a slow fsync slows kop (which fsyncs before every
acknowledgement) but not Tansu's memory engine.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from importlib import metadata
from pathlib import Path

from benchmarks.stats import percentile

FSYNC_PROBE_WRITES = 50
FSYNC_PROBE_BYTES = 16 * 1024


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine() -> str:
    return f"{os.cpu_count()} CPUs ({cpu_model()}), {platform.platform()}"


def filesystem_of(path: Path, mounts_text: str | None = None) -> str:
    """The mount holding `path`, from /proc/mounts (fsync on a tmpfs would cost nothing)."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return "unknown"
    target = str(path.resolve())
    best: tuple[str, str, str] | None = None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount_point, fs_type = fields[:3]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) >= len(best[0])):
            best = (mount_point, fs_type, device)
    if best is None:
        return "unknown"
    return f"{best[1]} on {best[2]} (mounted at {best[0]})"


def fsync_latency(directory: Path, writes: int = FSYNC_PROBE_WRITES,
                  size: int = FSYNC_PROBE_BYTES) -> str:
    """Append `size` bytes and fsync, `writes` times, in `directory`: the p50 and p90 of the
    fsync alone, the floor under each acknowledgement kop gives one waiting client."""
    handle, name = tempfile.mkstemp(prefix="fsync-probe-", dir=directory)
    block = os.urandom(size)
    timings: list[float] = []
    try:
        for _ in range(writes):
            os.write(handle, block)
            started = time.perf_counter()
            os.fsync(handle)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(handle)
        os.unlink(name)
    timings.sort()
    return (f"p50 {percentile(timings, 0.5):.2f} ms, p90 {percentile(timings, 0.9):.2f} ms "
            f"({writes} fsyncs of {size // 1024} KiB appends)")


def package_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
