"""Where kop standalone spends its CPU under load: py-spy sampling the running process.

    python -m benchmarks.profile [--seconds 15] [--out reports/bench/profile]

Starts kop standalone (as the benchmark does) and samples it with `py-spy record` (100 Hz,
the thread holding the GIL only, unless --all-threads) during three phases, each driven by the benchmark's own workloads:

- produce:        confluent-kafka, 1 KiB, acks=all, linger 5 ms, 1 partition, as fast as it goes
                  (big batches: the per-byte path);
- fetch:          confluent-kafka consumers reading that topic from offset 0, again and again
                  (catch-up reads from storage);
- small-requests: 10,000 records/s, no linger, with a tailing consumer (the latency workload:
                  many small produce requests and fetches woken by appends; the per-request path).

For each phase it writes the collapsed stacks (`<phase>.collapsed`, usable with flamegraph.pl
or speedscope) and `<phase>.md`: the functions with the most samples of their own (self) and
the most samples under them (inclusive), as shares of all samples. kop's code is not touched.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.brokers import REPO_ROOT, KopBroker
from benchmarks.plan import CONFLUENT, Scenario
from benchmarks.workloads import run_workload
from benchmarks.workloads.topics import create_topic, stored_records

SAMPLES_PER_SECOND = 100
DEFAULT_OUT = REPO_ROOT / "reports" / "bench" / "profile"
_LINE_NUMBER = re.compile(r":\d+\)$")


class ProfileError(RuntimeError):
    """py-spy is missing or could not sample the process."""


@dataclass(frozen=True)
class Stack:
    frames: tuple[str, ...]  # outermost first, as py-spy writes them
    samples: int


def parse_collapsed(text: str) -> list[Stack]:
    """Collapsed stacks ("frame;frame;frame count" per line), as py-spy's raw format and
    flamegraph.pl use them. Raises ValueError on a line that is not one."""
    stacks = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        frames, _, count = line.rpartition(" ")
        if not frames or not count.isdigit():
            raise ValueError(f"line {number} is not 'frame;...;frame count': {line[:80]!r}")
        stacks.append(Stack(tuple(frames.split(";")), int(count)))
    return stacks


def function_of(frame: str) -> str:
    """"Broker.produce (kop/broker.py:120)" -> "Broker.produce (kop/broker.py)": hot spots
    are counted per function, not per line."""
    return _LINE_NUMBER.sub(")", frame)


@dataclass(frozen=True)
class HotSpots:
    total_samples: int
    self_samples: list[tuple[str, int]]       # leaf function, samples
    inclusive_samples: list[tuple[str, int]]  # function anywhere on the stack, samples


def hot_spots(stacks: Iterable[Stack], top: int = 25) -> HotSpots:
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for stack in stacks:
        total += stack.samples
        functions = [function_of(frame) for frame in stack.frames]
        own[functions[-1]] += stack.samples
        for function in set(functions):  # recursion counts once per sample
            under[function] += stack.samples
    return HotSpots(total, own.most_common(top), under.most_common(top))


def markdown_profile(title: str, description: str, spots: HotSpots, gil_only: bool) -> str:
    def table(rows: list[tuple[str, int]]) -> list[str]:
        lines = ["| share | samples | function (file) |", "|---:|---:|---|"]
        for function, samples in rows:
            share = samples / spots.total_samples if spots.total_samples else 0.0
            lines.append(f"| {share:.1%} | {samples} | `{function}` |")
        return lines

    return "\n".join([
        f"# kop profile: {title}", "", description, "",
        f"{spots.total_samples} samples at {SAMPLES_PER_SECOND} Hz, "
        + ("of the thread holding the GIL (Python CPU; I/O waits and GIL-free C code are "
           "not in it)." if gil_only else "of every thread py-spy saw as active (it counts "
           "threads blocked in a queue or in write()/fsync() too)."), "",
        "## Self (the function itself was running)", "", *table(spots.self_samples), "",
        "## Inclusive (the function was on the stack)", "", *table(spots.inclusive_samples),
        "",
    ])


def record(pid: int, seconds: float, output: Path, drive: Callable[[], None],
           gil_only: bool = True) -> list[Stack]:
    """Sample `pid` with py-spy for `seconds` while `drive()` loads it. `gil_only` keeps the
    samples of the thread holding the GIL: Python's CPU. Without it, threads blocked in a
    queue or in write()/fsync() are sampled too (py-spy counts them as active)."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise ProfileError("py-spy is not installed (pip install py-spy)")
    command = [py_spy, "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_SECOND),
               "--format", "raw", "--duration", str(max(1, round(seconds))),
               "--output", str(output), *(["--gil"] if gil_only else [])]
    spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        drive()
    finally:
        messages, _ = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not output.exists():
        raise ProfileError(f"py-spy failed ({spy.returncode}): {messages.strip()}")
    return parse_collapsed(output.read_text())


@dataclass(frozen=True)
class Phase:
    name: str
    description: str
    drive: Callable[[str, float], None]  # (bootstrap, seconds)


def _produce(bootstrap: str, seconds: float) -> None:
    scenario = Scenario("produce", CONFLUENT, 1024, 1, seconds)
    create_topic(bootstrap, "profile-produce", 1)
    run_workload(scenario, bootstrap, "profile-produce")


def _fetch(bootstrap: str, seconds: float) -> None:
    """Reads the produce phase's topic from the start until `seconds` have passed."""
    stored = stored_records(bootstrap, "profile-produce", 1)
    ends = time.monotonic() + seconds
    while (remaining := ends - time.monotonic()) > 0.5:
        scenario = Scenario("consume", CONFLUENT, 1024, 1, remaining)
        run_workload(scenario, bootstrap, "profile-produce", records_to_read=stored)


def _small_requests(bootstrap: str, seconds: float) -> None:
    scenario = Scenario("latency", CONFLUENT, 1024, 1, seconds, rate=10_000)
    create_topic(bootstrap, "profile-small", 1)
    run_workload(scenario, bootstrap, "profile-small")


PHASES = (
    Phase("produce", "confluent-kafka producer, 1 KiB values, acks=all, linger 5 ms, "
                     "1 partition, as fast as the client goes.", _produce),
    Phase("fetch", "confluent-kafka consumers reading the produce phase's topic from offset 0 "
                   "(catch-up reads), one after another.", _fetch),
    Phase("small-requests", "10,000 records/s of 1 KiB with no linger, acks=all, and a "
                            "consumer tailing the partition (the latency workload).",
          _small_requests),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase (default 15)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--all-threads", action="store_true",
                        help="sample every active thread, not only the GIL holder")
    args = parser.parse_args(argv)
    gil_only = not args.all_threads
    args.out.mkdir(parents=True, exist_ok=True)
    broker = KopBroker(args.workdir)
    bootstrap = broker.start()
    try:
        for phase in PHASES:
            stacks = record(broker.pid, args.seconds, args.out / f"{phase.name}.collapsed",
                            lambda phase=phase: phase.drive(bootstrap, args.seconds), gil_only)
            report = args.out / f"{phase.name}.md"
            report.write_text(markdown_profile(phase.name, phase.description,
                                               hot_spots(stacks), gil_only))
            print(f"wrote {report}", flush=True)
    except ProfileError as exc:
        print(f"profile failed: {exc}", file=sys.stderr)
        return 1
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
